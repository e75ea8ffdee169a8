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
- hone's own candidate for each runtime (`inductor`, `onnxruntime`, `openvino`: fp32, exact), each
  from a `hone.optimize(..., recipes=[label])` run and its saved artifact timed here: the goal is
  hone's candidate at least as fast as the runtime's defaults, and hone's fastest exact
  candidate at least as fast as the fastest exact peer.
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
from hone.bench.timers import timer_for
from hone.models.spec import load_model
from hone.models.workload import FlatIO
from hone.validate.check import check_metric, eval_outputs
from hone.validate.reference import compute_reference
from hone.validate.verdict import AccuracyBudget

SETTINGS = MeasureSettings()
# hone's plain recipe for each peer runtime: fp32 in, fp32 out, its defaults as hone sets them.
HONE_PER_RUNTIME = ("inductor", "onnxruntime", "openvino")
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


def _hone_runner(run, input_set: str, note: str) -> tuple[Predict | None, str]:
    best = run.selection.best
    if best is None:
        return None, "no candidate passed"
    ranked = next((r for r in run.selection.ranking if r.recipe.key == best.key), None)
    if ranked is not None and ranked.recipe.baseline:
        candidate = next((r for r in run.selection.ranking if not r.recipe.baseline), None)
        figure = f"{candidate.speedup:.2f}x" if candidate is not None and candidate.speedup else "no figure"
        return None, f"slower than eager in hone's own run ({figure}): no artifact kept"
    try:
        return run.runner(input_set), note
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
    # hone's candidate per runtime, each the winner of its own run over eager (else it has no
    # artifact, and its row gives the speedup hone measured).
    per_runtime = {label: hone.optimize(spec, recipes=[label], store=False, progress=False) for label in HONE_PER_RUNTIME}
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
            hone_runs = {f"hone pick: {best.label}" if best else "hone pick": (result, "its saved artifact")}
            hone_runs.update({f"hone {label} (fp32)": (run, "hone's candidate, saved artifact")
                              for label, run in per_runtime.items()})
            for name, (run, note) in hone_runs.items():
                peers[name] = _hone_runner(run, s.label, note)
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
    hone_exact = {k: v for k, v in gm.items() if k.startswith("hone ") and k.endswith("(fp32)")}
    if exact_peers and hone_exact:
        peer, mine = max(exact_peers, key=exact_peers.get), max(hone_exact, key=hone_exact.get)
        print(f"- fastest exact peer: {peer} {exact_peers[peer]:.2f}x; hone's fastest exact candidate: {mine} "
              f"{hone_exact[mine]:.2f}x")
    for label in HONE_PER_RUNTIME:
        theirs = {"inductor": "torch.compile defaults", "onnxruntime": "onnxruntime defaults", "openvino": "openvino defaults"}[label]
        mine = f"hone {label} (fp32)"
        if mine in gm and theirs in gm:
            print(f"- {label}: hone's candidate {gm[mine]:.2f}x against the runtime's defaults {gm[theirs]:.2f}x")
    print()
    print(f"hone: {result.selection.why_best}")
    print()


if __name__ == "__main__":
    for model in sys.argv[1:] or ["minilm"]:
        main(model)
