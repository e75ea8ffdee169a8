"""Unit labels from oneDNN/MKL verbose lines (captured on the Zen 4 dev machine) and GPU kernel names."""

from __future__ import annotations

import pytest

from hone.profiler import kernels
from hone.profiler.kernels import (
    classify_cpu_unit,
    gpu_unit,
    is_tensor_core_kernel,
    parse_mkl_verbose,
    parse_onednn_verbose,
    primitive_units,
    unit_for_op,
)
from skips import REQUIRES_BF16_CPU

# Real output of torch 2.13 (oneDNN v3.12, oneMKL 2024.0) on AMD EPYC Zen 4, 2 threads:
# fp32 Linear, then bf16 conv (autocast), bf16 Linear, fp32 conv at batch 8, int8 dynamic-quant Linear.
CAPTURED = """\
MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R) Architecture processors, Lnx 2.60GHz lp64 gnu_thread
MKL_VERBOSE SGEMM(T,N,32,16,64,0x7ffd6f43de90,0x562931074ec0,64,0x562931070980,64,0x7ffd6f43deb0,0x562931090b00,32) 7.47ms CNR:OFF Dyn:1 FastMM:1 TID:0  NThr:2
MKL_VERBOSE SGEMM_BATCH(N,N,0x7ffd6f43e9d8,0x7ffd6f43e9d4,0x7ffd6f43e9d0,0x7ffd6f43e9cc,0x7ffd6f43eab0,0x7ffd6f43ea08,0x7ffd6f43eb40,0x7ffd6f43ea18,0x7ffd6f43e9c8,0x7ffd6f43ebd0,0x7ffd6f43ea28,0x7ffd6f43e0d4,0x7ffd6f43e9dc) 11.66ms CNR:OFF Dyn:1 FastMM:1 TID:0  NThr:2
onednn_verbose,v1,info,oneDNN v3.12.0 (commit 80afa71049cd69a3df32adcccb623b12cd7baa22)
onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with Intel DL Boost and bfloat16 support
onednn_verbose,v1,primitive,info,template:operation,engine,primitive,implementation,prop_kind,memory_descriptors,attributes,auxiliary,problem_desc,exec_time
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:bf16::blocked:abcd::f0 dst:bf16:p:blocked:AcdB16a2b::f0,attr-scratchpad:user,,8x3x3x3,0.00292969
onednn_verbose,v1,primitive,exec,cpu,convolution,jit_bf16:avx512_core_bf16,forward_training,src:bf16:a:blocked:abcd::f0 wei:bf16:ap:blocked:AcdB16a2b::f0 bia:bf16:a:blocked:a::f0 dst:bf16:ap:blocked:aBcd16b::f0,attr-scratchpad:user,alg:convolution_direct,mb1_ic3oc8_ih32oh30kh3sh1dh0ph0_iw32ow30kw3sw1dw0pw0,7.46387
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_bf16,undef,src:bf16::blocked:ab::f0 wei:bf16::blocked:ba::f0 dst:bf16::blocked:ab::f0,attr-scratchpad:user attr-post-ops:sum,,16x64:64x32,0.0449219
onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx512_core,forward_training,src:f32:a:blocked:aBcd16b::f0 wei:f32:a:blocked:ABcd16b16a::f0 bia:f32:a:blocked:a::f0 dst:f32:a:blocked:aBcd16b::f0,attr-scratchpad:user,alg:convolution_direct,mb8_ic16oc32_ih32oh30kh3sh1dh0ph0_iw32ow30kw3sw1dw0pw0,1.521
onednn_verbose,v1,primitive,exec,cpu,reorder,simple:any,undef,src:s8::blocked:ba::f0 dst:s8::blocked:BA16a64b4a::f8:zpm2,attr-scratchpad:user,,256x256,0.144043
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_vnni,undef,src:u8::blocked:ab::f0 wei:s8::blocked:BA16a64b4a::f8:zpm2 bia:f32::blocked:ab::f0_mask2 dst:f32::blocked:ab::f0,attr-scratchpad:user attr-scales:src0:0:f32+wei:0:f32 attr-zero-points:src0:0:s32,,64x256:256x256,1.62793
onednn_verbose,v1,primitive,exec,cpu,gemm_api,,undef,src_s8::blocked:ab:f0 wei_s8::blocked:ab:f0 dst_s32::blocked:ab:f0,,,64x64:64x64,15.5049
some line the user's code printed
""".splitlines()


def test_onednn_lines_parse_kind_impl_dtype_and_time():
    found = parse_onednn_verbose(CAPTURED)
    assert [k.kind for k in found] == ["reorder", "convolution", "matmul", "convolution", "reorder", "matmul", "gemm_api"]
    conv = found[1]
    assert (conv.impl, conv.dtype, conv.time_ms, conv.unit) == ("jit_bf16:avx512_core_bf16", "bf16", 7.46387, "oneDNN avx512 bf16")
    assert found[5].dtype == "int8" and found[5].unit == "oneDNN avx512 VNNI (int8)"
    assert found[6].dtype == "int8" and found[6].unit == "oneDNN implementation not reported"


def test_older_onednn_formats_parse():
    v2 = "dnnl_verbose,exec,cpu,convolution,jit:avx2,forward_inference,src_f32::blocked:aBcd8b:f0,,alg:convolution_direct,mb1_ic8oc8,0.1"
    v0 = "mkldnn_verbose,exec,inner_product,ref:any,forward_inference,fsrc:nc,,mb1ic8oc8,0.5"
    (a,), (b,) = parse_onednn_verbose([v2]), parse_onednn_verbose([v0])
    assert (a.kind, a.unit, a.dtype) == ("convolution", "oneDNN avx2", "f32")
    assert (b.kind, b.unit) == ("inner_product", "oneDNN reference (slow path)")


def test_mkl_lines_take_the_isa_from_the_banner():
    found = parse_mkl_verbose(CAPTURED)
    assert [(k.impl, k.dtype, k.time_ms) for k in found] == [("SGEMM", "f32", 7.47), ("SGEMM_BATCH", "f32", 11.66)]
    assert found[0].unit == "MKL sgemm (generic dispatch)"  # this AMD CPU: the banner names no ISA
    intel = "MKL_VERBOSE Intel(R) MKL 2020.0 Product build 20191122 for Intel(R) 64 architecture Intel(R) Advanced Vector Extensions 512 (Intel(R) AVX-512) enabled processors, Lnx 2.50GHz lp64 intel_thread"
    calls = [intel, "MKL_VERBOSE SGEMM(N,N,64,16,64,0x1,0x2,64,0x3,64,0x4,0x5,64) 15.78us CNR:OFF Dyn:1 FastMM:1 TID:0  NThr:2",
             "MKL_VERBOSE GEMM_BF16BF16F32(N,N,8,8,8,0x1,0x2,8,0x3,8,0x4,0x5,8) 1.5ms CNR:OFF Dyn:1 FastMM:1 TID:0  NThr:2"]  # fmt: skip
    sgemm, bf16 = parse_mkl_verbose(calls)
    assert sgemm.unit == "MKL sgemm (avx512)" and sgemm.time_ms == pytest.approx(0.01578)
    assert (bf16.dtype, bf16.unit) == ("bf16", "MKL gemm_bf16bf16f32 (avx512)")


@pytest.mark.parametrize(
    ("impl", "unit"),
    [
        ("brg:avx512_core_amx", "AMX"),
        ("brgconv:avx512_core_amx_fp16", "AMX"),
        ("brgconv:avx512_core_bf16", "avx512 bf16"),
        ("avx512_core_bf16", "avx512 bf16"),
        ("jit_int8:avx512_core_vnni", "avx512 VNNI (int8)"),
        ("brg_conv_fwd:avx512_core", "avx512"),
        ("jit:avx2", "avx2"),
        ("ref:any", kernels.REFERENCE),
        ("simple:any", kernels.REFERENCE),
        ("gemm:ref", kernels.REFERENCE),
        ("jit:uni", "jit (ISA chosen at run time)"),
    ],
)
def test_classify_cpu_unit(impl, unit):
    assert classify_cpu_unit(impl) == unit


def test_primitive_units_per_dtype_and_aten_lookup():
    units = primitive_units(CAPTURED)
    assert units["gemm"] == "MKL sgemm_batch (generic dispatch)"  # the most time among MKL calls
    bf16 = primitive_units(CAPTURED, "bfloat16")
    assert bf16 == {"reorder": "oneDNN jit (ISA chosen at run time)", "convolution": "oneDNN avx512 bf16", "matmul": "oneDNN avx512 bf16"}
    fp32 = primitive_units(CAPTURED, "torch.float32")
    assert unit_for_op("aten::addmm", fp32) == "MKL sgemm_batch (generic dispatch)"
    assert unit_for_op("aten::addmm", bf16) == "oneDNN avx512 bf16"
    assert unit_for_op("aten::convolution", fp32) == "oneDNN avx512"
    assert unit_for_op("aten::gelu", fp32) == ""


TENSOR_CORE_KERNELS = [
    "ampere_fp16_s16816gemm_fp16_128x128_ldg8_f2f_stages_32x5_nn",
    "ampere_bf16_s16816gemm_bf16_64x64_ldg8_f2f_stages_64x5_tn",
    "volta_fp16_s884gemm_fp16_128x128_ldg8_f2f_nn",
    "turing_fp16_s1688gemm_fp16_256x128_ldg8_f2f_tn",
    "ampere_int8_i16832gemm_int8_256x128_ldg16_stages_64x3_nt",
    "sm80_xmma_gemm_f16f16_f16f32_f32_nn_n_tilesize128x256x32_stage3_warpsize2x4x1_tensor16x8x16_kernel",
    "sm80_xmma_gemm_f32f32_tf32f32_f32_nn_n_tilesize128x128x16_stage4_warpsize2x2x1_tensor16x8x8_kernel",
    "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_warpgroupsize2x1x1_execute_segment_k_off_kernel__5x_cublas",
    "cutlass3x_sm90_tensorop_gemm_bf16_bf16_f32_bf16_bf16_128x256x64_1x2x1_0_tnn_align8_warpspecialized_cooperative_epi_tma",
    "void cutlass::Kernel<cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_64x64_64x4_nn_align8>(Params)",
    "sm80_xmma_fprop_implicit_gemm_indexed_f16f16_f16f32_f32_nhwckrsc_nhwc_tilesize128x128x32_stage4_warpsize2x2x1_g1_tensor16x8x16_kernel",
    "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128, 128, 4, false, false, cutlass::bfloat16_t>>(Flash_fwd_params)",
    "fmha_cutlassF_bf16_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel<cutlass::bfloat16_t>::Params)",
    "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x64x128_4x1x1_kernel0_0",
    "sm90_gmma_gemm_e4m3e4m3_bf16f32_f32_tn_n_tile128x128x128_kernel",
]
SIMT_KERNELS = [
    "ampere_sgemm_128x64_nn",
    "volta_sgemm_128x64_tn",
    "maxwell_sgemm_128x128_nt",
    "sm90_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize128x128x8_stage3_warpsize2x2x1_ffma_aligna4_alignc4_execute_kernel__5x_cublas",
    "sm80_xmma_gemm_f32f32_f32f32_f32_nn_n_tilesize64x64x8_stage3_warpsize1x2x1_ffma_aligna4_alignc4_execute_kernel__5x_cublas",
    "void cutlass::Kernel<cutlass_80_simt_sgemm_128x128_8x4_nn_align1>(Params)",
    "void gemv2T_kernel_val<int, int, float, float, float, float, 128, 16, 4, 4, false, false>(params)",
    "implicit_convolve_sgemm",
    "fmha_cutlassF_f32_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel<float>::Params)",
    "void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl>(int, float*)",
    "void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<c10::BFloat16, float>(int, float)",
    "triton_poi_fused_add_gelu_0",
]


@pytest.mark.parametrize("name", TENSOR_CORE_KERNELS)
def test_tensor_core_kernel_names(name):
    assert is_tensor_core_kernel(name)


@pytest.mark.parametrize("name", SIMT_KERNELS)
def test_simt_kernel_names(name):
    assert not is_tensor_core_kernel(name, "bfloat16" if "BFloat16" in name else None)


def test_dtype_settles_generic_triton_matmul_and_gpu_unit():
    assert is_tensor_core_kernel("triton_tem_fused_mm_0", "bfloat16")
    assert not is_tensor_core_kernel("triton_tem_fused_mm_0", "float32")
    assert gpu_unit(["ampere_sgemm_128x64_nn", "triton_poi_fused_add_0"], "float32") == kernels.SIMT
    assert gpu_unit(["vectorized_elementwise_kernel", TENSOR_CORE_KERNELS[0]], "float16") == kernels.TENSOR_CORE
    assert gpu_unit([], "float16") == ""


BF16_LINEAR = """
import torch
lin, x = torch.nn.Linear(64, 32).bfloat16(), torch.randn(16, 64, dtype=torch.bfloat16)
with torch.inference_mode():
    lin(x)
"""


def test_live_bf16_linear_names_a_unit(hardware):
    if not hardware.has_bf16:
        pytest.skip(REQUIRES_BF16_CPU)
    units = primitive_units(kernels.run_with_cpu_verbose(BF16_LINEAR), "bfloat16")
    assert unit_for_op("aten::linear", units).startswith("oneDNN ")
