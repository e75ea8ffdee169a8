"""hone's pick against each runtime's own defaults, measured in one script run.

    python benchmarks/peers.py MODEL > section.md     (minilm, digits-cnn, hf:resnet-50, hf:vit, hf:gpt2)

For one model, at every input set of its workload, with the same timing harness (bench.measure)
and thread count for everyone:
- eager fp32 (the unit);
- `torch.compile(model)` with defaults;
- ONNX Runtime: a default `InferenceSession` on the default dynamo export (`torch.onnx.export(...,
  dynamo=True)`, static shapes, one export per input set);
- ONNX Runtime `quantize_dynamic` with defaults on that export;
- OpenVINO: `convert_model` + `compile_model(..., "CPU")` with defaults (the precision it picked
  is read back: bf16 on bf16-capable CPUs);
- hone's pick under its default budget: the winner's saved artifact, loaded and timed here;
- hone's own recipe for each runtime (`inductor`, `onnxruntime`, `openvino` in fp32, and
  `openvino-bf16`, OpenVINO's own default precision on bf16 CPUs), built in this process by
  hone's build path (search.build.build_recipe: the same passes, runtime and settings as in a
  worker), so only the runtime differs from its peer: the goal is hone's candidate at least as
  fast as the runtime's defaults, and hone's fastest exact candidate at least as fast as the
  fastest exact peer.
Each as speedup over the eager measured here (geometric mean over the input sets), with the
workload's metric (its eval set) or, without one, the max abs error against eager.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import hone
from hone.bench.measure import MeasureSettings, measure
from hone.hardware import probe
from hone.plugin import BuildContext
from hone.search.build import build_recipe
from hone.search.compose import Composer
from hone.bench.timers import timer_for
from hone.models.spec import load_model
from hone.models.workload import FlatIO
from hone.validate.check import check_metric, eval_outputs
from hone.validate.reference import compute_reference
from hone.validate.verdict import AccuracyBudget

SETTINGS = MeasureSettings()
# hone's plain recipe for each peer runtime: fp32 in, fp32 out, its defaults as hone sets them.
HONE_PER_RUNTIME = ("inductor", "onnxruntime", "openvino", "openvino-bf16")
EXACT = ("inductor", "onnxruntime", "openvino")  # hone's recipes that compute in fp32
Predict = Callable[..., tuple]


def _numpy_runner(session_run, input_names: list[str]) -> Predict:
    def call(*args):
        outputs = session_run({n: a.numpy() for n, a in zip(input_names, args)})
        return tuple(torch.from_numpy(o) for o in outputs)
    return call


def _peers(flat: FlatIO, inputs: tuple, input_names: list[str], threads: int, work: Path) -> dict[str, tuple[Predict, str]]:
    """label -> (predict, note) for one input set; a peer that fails is (None, why)."""
    found: dict[str, tuple[Predict | None, str]] = {}
    found["eager fp32"] = (lambda *a: flat(*a), "")
    try:
        compiled = torch.compile(flat)
        compiled(*inputs)
        found["torch.compile defaults"] = (compiled, "")
    except Exception as exc:  # noqa: BLE001 - a peer that cannot run is a row that says so
        found["torch.compile defaults"] = (None, f"{type(exc).__name__}: {str(exc)[:80]}")
    onnx_path = work / "model.onnx"
    try:
        import onnxruntime as ort

        torch.onnx.export(flat, inputs, str(onnx_path), input_names=input_names, dynamo=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        found["onnxruntime defaults"] = (_numpy_runner(lambda feed: session.run(None, feed), input_names), "")
        from onnxruntime.quantization import quantize_dynamic

        quantized = work / "model.int8.onnx"
        quantize_dynamic(str(onnx_path), str(quantized))
        qsession = ort.InferenceSession(str(quantized), options, providers=["CPUExecutionProvider"])
        found["ort quantize_dynamic defaults"] = (_numpy_runner(lambda feed: qsession.run(None, feed), input_names), "")
    except Exception as exc:  # noqa: BLE001
        found.setdefault("onnxruntime defaults", (None, f"{type(exc).__name__}: {str(exc)[:80]}"))
        found.setdefault("ort quantize_dynamic defaults", (None, f"{type(exc).__name__}: {str(exc)[:80]}"))
    try:
        import openvino as ov

        core = ov.Core()
        core.set_property("CPU", {"INFERENCE_NUM_THREADS": threads})
        compiled_ov = core.compile_model(ov.convert_model(flat, example_input=inputs), "CPU")
        precision = compiled_ov.get_property("INFERENCE_PRECISION_HINT")
        request = compiled_ov.create_infer_request()

        def ov_call(*args):
            result = request.infer([a.numpy() for a in args])
            return tuple(torch.from_numpy(result[o]) for o in compiled_ov.outputs)
        found["openvino defaults"] = (ov_call, f"picked {precision}")
    except Exception as exc:  # noqa: BLE001
        found["openvino defaults"] = (None, f"{type(exc).__name__}: {str(exc)[:80]}")
    return found


def _winner(run, input_set: str) -> tuple[Predict | None, str]:
    if run.selection.best is None:
        return None, "no candidate passed"
    try:
        return run.runner(input_set), "its saved artifact"
    except Exception as exc:  # noqa: BLE001 - a row that says why
        return None, f"{type(exc).__name__}: {str(exc)[:80]}"


def _hone_recipe(composer, label: str, flat, inputs: tuple, workload, reference, threads: int, workdir: Path):
    """hone's recipe `label`, built here as a worker builds it."""
    try:
        recipe = composer.parse(label).recipe
        workdir.mkdir(parents=True)
        ctx = BuildContext(inputs, workload.input_names, reference.output_names, workdir, threads)
        runner, _, _ = build_recipe(recipe, flat, ctx)
        dtype = getattr(runner, "compute_dtype", None)
        return runner, f"hone's recipe, built here{f'; computes in {dtype}' if dtype else ''}"
    except Exception as exc:  # noqa: BLE001 - a row that says why
        return None, f"{type(exc).__name__}: {str(exc)[:80]}"


def _quality(predict: Predict, workload, reference, label: str, inputs: tuple) -> str:
    if workload.eval is not None and reference.eval_outputs is not None:
        produced = eval_outputs(predict, workload.eval, int(inputs[0].shape[0]), reference.output_names, reference.batch_axes)
        metric = check_metric(produced, reference.eval_outputs, workload.eval, reference.score, AccuracyBudget(), reference.batch_axes)
        return f"{metric.name} {metric.value:.4f}"
    outputs = predict(*inputs)
    err = max(float((o.float() - r.float()).abs().max()) for o, r in zip(outputs, reference.outputs[label]))
    return f"max abs err {err:.2g}"


def main(spec: str) -> None:
    threads = torch.get_num_threads()
    workload = load_model(spec)
    reference = compute_reference(workload)
    flat = FlatIO(workload.module.eval(), workload.input_names, reference.output_names).eval()

    started = time.perf_counter()
    result = hone.optimize(spec, store=False, progress=False)
    hone_wall = time.perf_counter() - started
    best = result.selection.best
    hw = probe(measure_peaks=False)
    composer = Composer(workload, hw, "cpu")
    timer = timer_for("cpu")
    p50: dict[str, dict[str, float]] = {}
    notes: dict[str, str] = {}
    quality: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="hone-peers-") as tmp, torch.inference_mode():
        for s in workload.input_sets:
            inputs = s.as_args()
            work = Path(tmp) / s.label
            work.mkdir()
            peers = _peers(flat, inputs, workload.input_names, threads, work)
            peers[f"hone pick: {best.label}" if best else "hone pick"] = _winner(result, s.label)
            for label in HONE_PER_RUNTIME:
                peers[f"hone {label}"] = _hone_recipe(composer, label, flat, inputs, workload, reference, threads,
                                                      work / label)
            for label, (predict, note) in peers.items():
                notes.setdefault(label, note)
                if predict is None:
                    continue
                predict(*inputs)
                m = measure(lambda: predict(*inputs), timer, batch_size=int(inputs[0].shape[0]), threads=threads, settings=SETTINGS)
                p50.setdefault(label, {})[s.label] = m.p50
                quality.setdefault(label, _quality(predict, workload, reference, s.label, inputs))

    sets = [s.label for s in workload.input_sets]
    eager = p50["eager fp32"]
    print(f"#### {spec} ({', '.join(sets)}; {threads} threads; hone's default run took {hone_wall:.0f} s)")
    print()
    print("| runtime | " + " | ".join(f"p50 {s}" for s in sets) + " | speedup (geomean) | score | note |")
    print("|---|" + "---|" * len(sets) + "---|---|---|")
    for label, note in notes.items():
        times = p50.get(label, {})
        if len(times) < len(sets):
            print(f"| {label} | " + " | ".join("-" for _ in sets) + f" | - | - | not timed: {note} |")
            continue
        gm = math.exp(sum(math.log(eager[s] / times[s]) for s in sets) / len(sets))
        print(f"| {label} | " + " | ".join(f"{times[s] * 1e3:.2f} ms" for s in sets) + f" | {gm:.2f}x | {quality[label]} | {note} |")
    print()
    gm = {label: math.exp(sum(math.log(eager[s] / times[s]) for s in sets) / len(sets))
          for label, times in p50.items() if len(times) == len(sets)}
    exact_peers = {k: v for k, v in gm.items() if k in ("torch.compile defaults", "onnxruntime defaults")
                   or (k == "openvino defaults" and "f32" in notes[k])}
    hone_exact = {k: v for k, v in gm.items() if k in {f"hone {label}" for label in EXACT}}
    if exact_peers and hone_exact:
        peer, mine = max(exact_peers, key=exact_peers.get), max(hone_exact, key=hone_exact.get)
        print(f"- fastest exact peer: {peer} {exact_peers[peer]:.2f}x; hone's fastest exact recipe: {mine} "
              f"{hone_exact[mine]:.2f}x; hone's pick {gm.get(f'hone pick: {best.label}' if best else '', 0):.2f}x "
              f"({gm.get(f'hone pick: {best.label}' if best else '', 0) / exact_peers[peer]:.2f}x the fastest exact peer)")
    ov_mine = "hone openvino-bf16" if "bfloat16" in notes.get("openvino defaults", "") else "hone openvino"
    for mine, theirs in (("hone inductor", "torch.compile defaults"), ("hone onnxruntime", "onnxruntime defaults"),
                         (ov_mine, "openvino defaults")):
        if mine in gm and theirs in gm:
            print(f"- {mine} {gm[mine]:.2f}x against {theirs} {gm[theirs]:.2f}x ({gm[mine] / gm[theirs]:.2f})")
    print()
    print(f"hone: {result.selection.why_best}")
    print()


if __name__ == "__main__":
    for model in sys.argv[1:] or ["minilm"]:
        main(model)
