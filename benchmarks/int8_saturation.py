"""int8 on a CPU without VNNI: the accuracy lost to 16-bit saturation, and what 7 bits restore.

Without VNNI, x86 int8 GEMM kernels multiply u8 x s8 pairs with VPMADDUBSW, which adds each
pair into a saturating 16-bit lane; full-range operands clip. Each int8 recipe is built twice,
as hone proposes it where VNNI exists (full range) and where it does not (7-bit weights: ONNX
Runtime's reduce_range per channel, 7-bit pt2e weights, NNCF's overflow fix), and compared with
eager fp32 on the same inputs (mean per-sample cosine of the first output).

On a machine with VNNI the AVX2 path can be reproduced two ways (the figures in
docs/BENCHMARKS.md come from both):
  - an emulated AVX2-only CPU for every backend (qemu-user from Debian's `qemu-user`; Inductor
    must not compile for the host's ISA):
      TORCHINDUCTOR_CPP_MARCH=znver3 qemu-x86_64 -cpu EPYC-Milan-v1 .venv/bin/python benchmarks/int8_saturation.py
  - oneDNN's own AVX2 kernels, natively (pt2e only: ONNX Runtime and OpenVINO ignore the knob):
      ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/int8_saturation.py pt2e-int8

    python benchmarks/int8_saturation.py [LABEL ...] [--minilm]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' tiny models and harness

from harness import build  # noqa: E402
from tiny_models import TinyConv, tiny_mlp  # noqa: E402

from hone.models.workload import InputSet, Workload, normalize_outputs  # noqa: E402
from hone.registry import PASSES  # noqa: E402
from hone.search.recipe import Recipe  # noqa: E402

LABELS = ("ort-int8-dynamic", "ort-int8-static", "openvino-int8", "pt2e-int8")


def recipes(saturating: bool) -> dict[str, Recipe]:
    """The int8 recipes exactly as hone proposes them on a CPU with VNNI (full range) or on
    one whose int8 dot products saturate (the 7-bit settings)."""
    import dataclasses

    from hone.hardware import probe

    here = probe(measure_peaks=False)
    flags = here.flags - {"avx512_vnni", "avx_vnni"} if saturating else here.flags | {"avx512_vnni"}
    hw = dataclasses.replace(here, flags=frozenset(flags), arch="x86_64")
    workload = Workload("any", torch.nn.Identity(), [InputSet("bs1", {"x": torch.zeros(1, 1)})])
    proposed = {r.label: r for cls in PASSES for r in cls.propose(workload, hw, "cpu")}
    return {label: proposed[label] for label in LABELS}


def models(minilm: bool):
    model, x = tiny_mlp()
    torch.manual_seed(1)
    yield "tiny MLP (32-64-10)", model, (x,), (torch.randn(64, 32),)
    torch.manual_seed(0)
    yield "tiny conv", TinyConv().eval(), (torch.randn(2, 3, 8, 8),), (torch.randn(16, 3, 8, 8),)
    if minilm:
        import hone

        workload = hone.load_model("minilm", batch_sizes=(8,))
        inputs = workload.input_sets[0].as_args()
        calibration = tuple(workload.calibration[n][:32] for n in workload.input_names)
        yield "MiniLM (bs8, 128 tokens)", workload.module, inputs, calibration


def cosine(got: torch.Tensor, want: torch.Tensor) -> float:
    if got.dim() >= 2:  # per sample, averaged: what embedding_cosine reports
        return float(torch.nn.functional.cosine_similarity(got.double().flatten(1), want.double().flatten(1)).mean())
    return float(torch.nn.functional.cosine_similarity(got.double().flatten(), want.double().flatten(), dim=0))


def main(argv: list[str]) -> None:
    only = [a for a in argv if not a.startswith("--")]
    print(f"torch CPU capability: {torch.backends.cpu.get_cpu_capability()}", flush=True)
    print("| model | recipe | cosine, full range | cosine, as proposed without VNNI | build s |\n|---|---|---|---|---|",
          flush=True)
    for name, model, inputs, calibration in models("--minilm" in argv):
        with torch.no_grad():
            want = next(iter(normalize_outputs(model(*inputs)).values()))
        for label in LABELS:
            if only and label not in only:
                continue
            scores, took = [], 0.0
            for saturating in (False, True):
                start = time.perf_counter()
                try:
                    runner, _, named, _ = build(recipes(saturating)[label], model, inputs, calibration=calibration)
                    scores.append(f"{cosine(runner(*named.values())[0], want):.5f}")
                except Exception as exc:  # noqa: BLE001 - a figure per cell, whatever fails
                    scores.append(f"failed: {type(exc).__name__}")
                took += time.perf_counter() - start
            print(f"| {name} | {label} | {scores[0]} | {scores[1]} | {took / 2:.0f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
