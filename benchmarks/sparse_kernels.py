"""Does any runtime here use unstructured zeros? OpenVINO's CPU plugin has one sparse path:
`CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE`, which packs int8 fully-connected weights whose share
of zeros reaches the rate (it targets AMX's int8 tiles). ONNX Runtime's CPU provider has no
sparse-weight GEMM (its sparse ops are contrib ops a converter never emits), so it is not in
the table. Prints a BENCHMARKS.md section.

    python benchmarks/sparse_kernels.py [MODEL] [--sparsities 0.5,0.8,0.9]   (default: minilm)

For each sparsity, every Linear's smallest weights are zeroed (hone's magnitude_sparsity
pass), the model is converted to OpenVINO IR, quantized to int8 by NNCF (hone's
`nncf-int8` settings: the transformer model type when the model has attention) and compiled
twice: with the sparse-weights rate at the sparsity (the plugin decompresses layers at least
that sparse) and with it at 1.0 (off, the plugin's default). The two compiled models run in
one process in alternating windows (hone.bench.paired), so the speedup is sparse-on over
sparse-off, seconds apart. The fp32 rows show the property does nothing without int8.
"""

from __future__ import annotations

import argparse
import datetime
import time


def _timer(compiled, feed):
    request = compiled.create_infer_request()

    def call() -> float:
        started = time.perf_counter()
        request.infer(feed)
        return time.perf_counter() - started

    return call


def _cpu() -> str:
    from hone.hardware import probe

    hw = probe(measure_peaks=False)
    units = sorted(f for f in hw.flags if f in ("avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16"))
    return f"{hw.cpu_name} ({', '.join(units) or 'no VNNI or AMX units'})"


def section(spec: str, sparsities: list[float]) -> str:
    import nncf
    import openvino as ov
    import torch

    from hone.bench.paired import PairedSpeedup
    from hone.models import load_model
    from hone.passes.openvino.nncf_quantize import has_attention
    from hone.passes.torch.magnitude_sparsity import MagnitudeSparsity, MagnitudeSparsityConfig
    from hone.plugin import Artifact

    threads = torch.get_num_threads()
    workload = load_model(spec)
    core = ov.Core()
    lines = [
        f"### OpenVINO's sparse int8 weights on `{spec}`",
        "",
        f"- machine: {_cpu()}, {threads} threads; openvino {ov.__version__}; date {datetime.date.today().isoformat()}",
        f"- command: `python benchmarks/sparse_kernels.py {spec} --sparsities {','.join(map(str, sparsities))}`",
        "",
        "| sparsity | precision | input set | p50 rate off | p50 rate on | on / off speedup (95 %) |",
        "|---|---|---|---|---|---|",
    ]
    started = time.perf_counter()
    for sparsity in sparsities:
        sparse = MagnitudeSparsity(MagnitudeSparsityConfig(sparsity)).apply_impl(
            Artifact("torch", workload.module, compute_dtype=torch.float32), None).module
        for input_set in workload.input_sets:
            args = input_set.as_args()
            feed = {name: t.numpy() for name, t in input_set.tensors.items()}
            model = ov.convert_model(sparse, example_input=args)
            for precision in ("fp32", "int8"):
                if precision == "int8":
                    transformer = nncf.ModelType.TRANSFORMER if has_attention(model) else None
                    model = nncf.quantize(model, nncf.Dataset([feed]), subset_size=1, model_type=transformer)
                base = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
                off = core.compile_model(model, "CPU", {**base, "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE": 1.0})
                on = core.compile_model(model, "CPU", {**base, "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE": sparsity})
                p: PairedSpeedup = _paired(_timer(off, feed), _timer(on, feed))
                low, high = p.interval()
                lines.append(f"| {sparsity:.0%} | {precision} | {input_set.label} | {p.eager_p50 * 1e3:.2f} ms | "
                             f"{_median(p.candidate_p50_s) * 1e3:.2f} ms | {p.speedup:.2f}x ({low:.2f}-{high:.2f}) |")
                print(lines[-1], flush=True)
    lines += ["", f"whole run {time.perf_counter() - started:.0f} s"]
    return "\n".join(lines)


def _paired(off, on):
    from hone.bench.paired import paired

    for _ in range(5):  # both compiled models warm before the first window
        off(), on()
    return paired(off, on, measure_s=16.0, pairs=8)


def _median(values) -> float:
    import statistics

    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="minilm")
    parser.add_argument("--sparsities", default="0.5,0.8,0.9")
    args = parser.parse_args()
    print(section(args.model, [float(s) for s in args.sparsities.split(",")]))


if __name__ == "__main__":
    main()
