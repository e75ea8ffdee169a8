"""The GPU side of "am I using tensor cores?", checked on CPU with the profiler's event shapes."""

from __future__ import annotations

from types import SimpleNamespace

from hone.profiler.count import OpCall
from hone.profiler.join import TimedCall, join
from hone.profiler.roofline import aggregate, call_stats
from hone.profiler.timing import OpEvent, _kernel_names


def _event(name, kernels=(), children=()):
    return SimpleNamespace(name=name, kernels=[SimpleNamespace(name=k) for k in kernels], cpu_children=list(children))


def test_kernel_names_include_nested_calls():
    copy = _event("aten::copy_", ["void at::native::elementwise_kernel<128, 4>"])
    to_copy = _event("aten::_to_copy", children=[copy])
    assert _kernel_names(to_copy) == ("void at::native::elementwise_kernel<128, 4>",)


def _call(name, dtype):
    return OpCall(name=name, flops=2e9, bytes=1e7, dtype=dtype, shapes="[4096, 4096]", out_shape=(4096, 4096), out_bytes=0, out_dtype=dtype)


def test_fp16_gemm_reports_tensor_cores_and_fp32_simt_does_not():
    fp16 = _call("aten::mm", "float16")
    fp32 = _call("aten::addmm", "float32")
    events = [[
        OpEvent("aten::mm", 1e-3, ("sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_kernel__5x_cublas",)),
        OpEvent("aten::addmm", 2e-3, ("ampere_sgemm_128x64_tn",)),
    ]]  # fmt: skip
    joined = join([fp16, fp32], events)
    assert [t.kernels for t in joined.calls] == [events[0][0].kernels, events[0][1].kernels]
    stats = call_stats(joined.calls, None, device="cuda")
    assert stats[0].unit == "tensor core"
    assert stats[1].unit == "CUDA cores (SIMT)"
    by_type = {s.name: s for s in aggregate(stats, None, device="cuda")}
    assert by_type["aten::mm"].unit == "tensor core"


def test_cpu_calls_have_no_gpu_unit():
    stats = call_stats([TimedCall(_call("aten::addmm", "float32"), 1e-3, True)], None, device="cpu")
    assert stats[0].unit == ""
