"""hone's pick against each runtime's own defaults, measured in one script run.

    python benchmarks/peers.py MODEL > section.md     (minilm, digits-cnn, hf:resnet-50, hf:vit, hf:gpt2)

For one model, at every input set of its workload:
- eager fp32 (the unit);
- `torch.compile(model)` with defaults;
- ONNX Runtime: a default `InferenceSession` on the default dynamo export (`torch.onnx.export(...,
  dynamo=True)`, static shapes, one export per input set);
- ONNX Runtime `quantize_dynamic` with defaults on that export;
- OpenVINO: `convert_model` + `compile_model(..., "CPU")` with defaults (the precision it picked
  is read back: bf16 on bf16-capable CPUs);
- hone's pick under its default budget: the winner's saved artifact, loaded (`hone.load`);
- hone's own recipe for each runtime (`inductor`, `onnxruntime`, `openvino` in fp32, and
  `openvino-bf16`, OpenVINO's own default precision on bf16 CPUs), built by hone's build path
  (search.build.build_recipe: the same passes, runtime and settings as in a worker).

Each peer runs in a fresh interpreter of its own, as hone's candidates do: in one long-lived
process, the thread pools of ONNX Runtime, OpenVINO and Inductor's OpenMP code interfere (hone's
own bf16+inductor measured 16 ms there against 7.5 ms in its worker). There it is timed against
a fresh eager copy of the model in alternating windows (hone.bench.paired: 6 ABBA pairs), so
each speedup is a ratio taken seconds apart, with a 95 % interval, and the geometric mean over
the input sets. The score is the workload's metric on its eval set or, without one, the max
abs error against eager.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PEERS = ("torch.compile defaults", "onnxruntime defaults", "ort quantize_dynamic defaults", "openvino defaults")
# hone's plain recipe for each peer runtime, and the peer it answers.
HONE_PER_RUNTIME = {"inductor": "torch.compile defaults", "onnxruntime": "onnxruntime defaults",
                    "openvino": "openvino defaults", "openvino-bf16": "openvino defaults"}
EXACT_PEERS = ("torch.compile defaults", "onnxruntime defaults")  # fp32 in, fp32 out
EXACT_HONE = ("inductor", "onnxruntime", "openvino")
Predict = Callable[..., tuple]


# --- in the child: build one peer, time it against eager ---------------------------------------

def _numpy_runner(session_run, input_names: list[str]) -> Predict:
    import torch

    def call(*args):
        outputs = session_run({n: a.numpy() for n, a in zip(input_names, args)})
        return tuple(torch.from_numpy(o) for o in outputs)
    return call


def _build(label: str, flat, inputs: tuple, names: list[str], threads: int, work: Path, workload, pick: dict) -> tuple[Predict, str]:
    import torch

    if label == "torch.compile defaults":
        compiled = torch.compile(flat)
        compiled(*inputs)
        return compiled, ""
    if label in ("onnxruntime defaults", "ort quantize_dynamic defaults"):
        import onnxruntime as ort

        path = work / "model.onnx"
        torch.onnx.export(flat, inputs, str(path), input_names=names, dynamo=True)
        if label == "ort quantize_dynamic defaults":
            from onnxruntime.quantization import quantize_dynamic

            quantized = work / "model.int8.onnx"
            quantize_dynamic(str(path), str(quantized))
            path = quantized
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return _numpy_runner(lambda feed: session.run(None, feed), names), ""
    if label == "openvino defaults":
        import openvino as ov

        core = ov.Core()
        core.set_property("CPU", {"INFERENCE_NUM_THREADS": threads})
        compiled_ov = core.compile_model(ov.convert_model(flat, example_input=inputs), "CPU")
        request = compiled_ov.create_infer_request()

        def ov_call(*args):
            result = request.infer([a.numpy() for a in args])
            return tuple(torch.from_numpy(result[o]) for o in compiled_ov.outputs)
        return ov_call, f"picked {compiled_ov.get_property('INFERENCE_PRECISION_HINT')}"
    if label == "hone pick":
        import hone

        return hone.load(pick["dir"], threads=threads), "its saved artifact"
    from hone.hardware import probe
    from hone.plugin import BuildContext
    from hone.search.build import build_recipe
    from hone.search.compose import Composer

    recipe = Composer(workload, probe(measure_peaks=False), "cpu").parse(label).recipe
    ctx = BuildContext(inputs, names, flat.output_names, work, threads)
    runner, _, _ = build_recipe(recipe, flat, ctx)
    dtype = getattr(runner, "compute_dtype", None)
    return runner, f"hone's recipe{f', computes in {dtype}' if dtype and dtype != 'float32' else ''}"


def _quality(predict: Predict, workload, reference, inputs: tuple, label: str) -> str:
    from hone.validate.check import check_metric, eval_outputs
    from hone.validate.verdict import AccuracyBudget

    if workload.eval is not None and reference.eval_outputs is not None:
        produced = eval_outputs(predict, workload.eval, int(inputs[0].shape[0]), reference.output_names, reference.batch_axes)
        metric = check_metric(produced, reference.eval_outputs, workload.eval, reference.score, AccuracyBudget(), reference.batch_axes)
        return f"{metric.name} {metric.value:.4f}"
    outputs = predict(*inputs)
    err = max(float((o.float() - r.float()).abs().max()) for o, r in zip(outputs, reference.outputs[label]))
    return f"max abs err {err:.2g}"


def child(spec: str, label: str, picks: dict) -> None:
    """One peer at every input set, each paired with a fresh eager: one JSON line on stdout."""
    import torch

    from hone.bench.paired import paired
    from hone.bench.timers import timer_for
    from hone.models.spec import load_model
    from hone.models.workload import FlatIO
    from hone.validate.reference import compute_reference

    threads = torch.get_num_threads()
    workload = load_model(spec)
    reference = compute_reference(workload)
    timer = timer_for("cpu")
    out: dict = {"sets": {}}
    with tempfile.TemporaryDirectory(prefix="hone-peers-") as tmp, torch.inference_mode():
        for s in workload.input_sets:
            inputs = s.as_args()
            eager = FlatIO(workload.module.eval(), workload.input_names, reference.output_names).eval()
            try:
                work = Path(tmp) / s.label
                work.mkdir()
                predict, note = (lambda *a: eager(*a), "") if label == "eager fp32" else \
                    _build(label, eager, inputs, workload.input_names, threads, work, workload, picks.get(s.label, {}))
                predict(*inputs)
                pairing = paired(lambda: timer.time_call(lambda: eager(*inputs)), lambda: timer.time_call(lambda: predict(*inputs)))
                out["note"] = note
                out["sets"][s.label] = pairing.to_dict()
                out.setdefault("quality", _quality(predict, workload, reference, inputs, s.label))
            except Exception as exc:  # noqa: BLE001 - a row that says why
                out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"
                break
    print("PEER-RESULT " + json.dumps(out))


# --- in the parent: hone's run, then one child per peer ------------------------------------------

def _run_child(spec: str, label: str, picks: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", spec, label, json.dumps(picks)],
                          capture_output=True, text=True, timeout=1800)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PEER-RESULT ")), None)
    if line is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"sets": {}, "error": f"exit {proc.returncode}: {tail[:100]}"}
    return json.loads(line.removeprefix("PEER-RESULT "))


def main(spec: str) -> None:
    import torch

    import hone
    from hone.bench.paired import PairedSpeedup, combined

    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="hone-peers-store-") as tmp:
        started = time.perf_counter()
        result = hone.optimize(spec, store=Path(tmp) / "runs.db", progress=False)
        hone_wall = time.perf_counter() - started
        best = result.selection.best
        picks = {}
        if best is not None and not best.baseline:
            for s in result.run.input_sets:
                picks[s] = {"dir": str(result.export(Path(tmp) / "pick" / s, s))}
        labels = ["eager fp32", *PEERS, *(["hone pick"] if picks else []), *HONE_PER_RUNTIME]
        rows = {label: _run_child(spec, label, picks) for label in labels}

    sets = list(result.run.input_sets)
    print(f"#### {spec} ({', '.join(sets)}; {threads} threads; hone's default run took {hone_wall:.0f} s, "
          f"picked {best.label if best else 'nothing'})")
    print()
    print("| runtime | " + " | ".join(f"p50 {s}" for s in sets) + " | speedup over eager (95 %) | score | note |")
    print("|---|" + "---|" * len(sets) + "---|---|---|")
    speedups: dict[str, float] = {}
    for label, row in rows.items():
        name = f"hone pick: {best.label}" if label == "hone pick" else (f"hone {label}" if label in HONE_PER_RUNTIME else label)
        if len(row["sets"]) < len(sets):
            print(f"| {name} | " + " | ".join("-" for _ in sets) + f" | - | - | not timed: {row.get('error', '')} |")
            continue
        pairs = [PairedSpeedup.from_dict(row["sets"][s]) for s in sets]
        p50 = [sorted(p.candidate_p50_s)[len(p.candidate_p50_s) // 2] for p in pairs]
        speedup, low, high = combined(pairs)
        cell = "1.00x (the unit)" if label == "eager fp32" else f"{speedup:.2f}x ({low:.2f}-{high:.2f})"
        speedups[label] = 1.0 if label == "eager fp32" else speedup
        print(f"| {name} | " + " | ".join(f"{t * 1e3:.2f} ms" for t in p50) + f" | {cell} | {row.get('quality', '')} | "
              f"{row.get('note', '')} |")
    print()
    ov_note = rows.get("openvino defaults", {}).get("note", "")
    exact_peers = {k: speedups[k] for k in (*EXACT_PEERS, *(("openvino defaults",) if "f32" in ov_note else ())) if k in speedups}
    exact_hone = {k: speedups[k] for k in EXACT_HONE if k in speedups}
    if exact_peers and exact_hone:
        peer, mine = max(exact_peers, key=exact_peers.get), max(exact_hone, key=exact_hone.get)
        line = (f"- fastest exact peer: {peer} {exact_peers[peer]:.2f}x; hone's fastest exact recipe: {mine} "
                f"{exact_hone[mine]:.2f}x")
        if "hone pick" in speedups:
            line += f"; hone's pick {speedups['hone pick']:.2f}x = {speedups['hone pick'] / exact_peers[peer]:.2f}x the fastest exact peer"
        print(line)
    for mine, theirs in HONE_PER_RUNTIME.items():
        if mine == "openvino" and "bfloat16" in ov_note or mine == "openvino-bf16" and "bfloat16" not in ov_note:
            continue  # compare at the precision OpenVINO picked
        if mine in speedups and theirs in speedups:
            print(f"- hone {mine} {speedups[mine]:.2f}x against {theirs} {speedups[theirs]:.2f}x "
                  f"(ratio {speedups[mine] / speedups[theirs]:.2f})")
    print()
    print(f"hone's own report: {result.selection.why_best}")
    print()
    # What the default run reached, and how far each candidate got: a loss of hone's pick
    # against its own recipe for a runtime is explained here (left out by the budget or the
    # plateau, screened out, over the accuracy budget).
    reached: dict[str, list[str]] = {}
    for r in result.results:
        if not r.recipe.baseline:
            reached.setdefault(r.recipe.label, []).append(r.stage or r.status.value)
    print("hone's default run reached: " + ", ".join(f"{label} ({'/'.join(dict.fromkeys(how))})"
                                                      for label, how in reached.items()))
    left_out = [f"{label} ({why.split(':')[0]})" for label, why in result.run.pruned.items()]
    if left_out:
        print(f"left out: {', '.join(left_out)}")
    print()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))
    else:
        for model in sys.argv[1:] or ["minilm"]:
            main(model)
