"""Builders of realistic synthetic runs for store and report tests: every status, two input sets,
timings chosen so that the speedups are round numbers (eager 100 ms vs inductor 50 ms -> 2.00x).

Test modules import it by name (pyproject puts tests/ on sys.path).
"""

from __future__ import annotations

import dataclasses

import pytest

from hone.bench.measurement import Measurement
from hone.config import Config, NoConfig
from hone.search.recipe import Recipe, Step
from hone.search.result import CandidateResult, Status
from hone.search.run import OptimizeResult, RunInfo
from hone.validate.verdict import MetricCheck, OutputCheck, Verdict

LONG_REASON = (
    "torch._dynamo.exc.Unsupported: call_function BuiltinVariable(setattr) "
    "[UserDefinedObjectVariable(Foo), ConstantVariable(str: 'x')] {} while tracing forward() "
    "of BertSelfAttention at modeling_bert.py:412"
)


@dataclasses.dataclass(frozen=True)
class FakeCompileConfig(Config):
    """A config with real fields (a tuple among them) to round-trip through the store."""

    mode: str = "default"
    sizes: tuple[int, ...] = (1, 8)
    freezing: bool = False


@dataclasses.dataclass(frozen=True)
class FakeCompileConfigV2(FakeCompileConfig):
    """The same plugin one version later: one more defaulted field."""

    cudagraphs: bool = False


class FakePlugin:
    name = "fake_compile"
    Config = FakeCompileConfig


class FakePluginV2:
    name = "fake_compile"
    Config = FakeCompileConfigV2


def teach_registry(monkeypatch: pytest.MonkeyPatch, plugin: type = FakePlugin) -> None:
    """Make hone.registry resolve `plugin.name` (and fail on every other name, as for a plugin
    that is not installed), whatever plugins exist in the tree today."""
    from hone.errors import InputError
    from hone.registry import PASSES, RUNTIMES

    def get(name: str) -> type:
        if name == plugin.name:
            return plugin
        raise InputError(f"unknown plugin {name!r}")

    for registry in (PASSES, RUNTIMES):
        monkeypatch.setattr(registry, "get", get)


def make_measurement(p50_s: float, batch_size: int = 1, spread: float = 0.01, **kw) -> Measurement:
    """Five times centred on p50_s (so p50 is exact), spread ±2*spread."""
    times = tuple(p50_s * (1 + spread * k) for k in (-2, -1, 0, 1, 2))
    kw = {"threads": 2, "timer": "perf_counter", "warmup_calls": 20, "build_s": 0.5,
          "first_call_s": 0.05, "peak_rss_bytes": 512 * 1024 * 1024, **kw}  # fmt: skip
    return Measurement(times_s=times, batch_size=batch_size, **kw)


def passing_verdict(max_err: float = 2e-7, dtype: str = "float32") -> Verdict:
    out = OutputCheck("last_hidden_state", max_err, max_err * 10, 0.999999, 1e-5, 1.3e-6, 0, True)
    return Verdict(True, f"max abs err {max_err:.1e} within atol 1e-05", dtype, (out,))


def make_recipe(label: str, runtime: str = "eager", passes: tuple[str, ...] = (), config: Config | None = None,
                compute_dtype: str = "float32", baseline: bool = False) -> Recipe:  # fmt: skip
    return Recipe(
        label=label,
        passes=tuple(Step(p, NoConfig()) for p in passes),
        runtime=Step(runtime, config if config is not None else NoConfig()),
        origin=f"planner: {label}",
        compute_dtype=compute_dtype,
        baseline=baseline,
    )


EAGER = make_recipe("eager", baseline=True)
INDUCTOR = make_recipe("inductor", "fake_compile", config=FakeCompileConfig(mode="max-autotune", sizes=(1, 8, 32)))
ORT_INT8 = make_recipe("ort-int8", "onnxruntime", ("onnx_export", "ort_static_quant"), compute_dtype="int8")
BF16 = make_recipe("bf16", "eager", ("bf16_autocast",), compute_dtype="bfloat16")
OPENVINO = make_recipe("openvino", "openvino", ("openvino_convert",))
TVM = make_recipe("tvm", "tvm")
TENSORRT = make_recipe("tensorrt", "tensorrt")
AOTI = make_recipe("aoti", "aoti")
DYNAMO = make_recipe("torchscript", "torchscript")

SETS = {"bs1": 1, "bs8": 8}
EAGER_P50 = {"bs1": 0.010, "bs8": 0.100}


def make_results() -> list[CandidateResult]:
    """Every status, at both input sets; inductor is 2x eager and wins."""
    results = []
    for s, bs in SETS.items():
        base = EAGER_P50[s]
        results += [
            CandidateResult(EAGER, s, Status.OK, "reference", passing_verdict(0.0),
                            make_measurement(base, bs), {"torch": "2.13.0"}, wall_s=3.0,
                            build={"index": 0, "built_for": "bs1", "build_s": 0.5, "reused": s != "bs1"}),
            CandidateResult(INDUCTOR, s, Status.OK, "max abs err 2.0e-07", passing_verdict(2e-7),
                            make_measurement(base / 2, bs, build_s=12.0, first_call_s=3.0),
                            {"mode": "max-autotune", "tf32": False, "steps": {}}, wall_s=20.0,
                            # one build at bs1, reused at bs8; the winner's artifact
                            build={"index": 0, "built_for": "bs1", "build_s": 12.0, "reused": s != "bs1"},
                            summary=["autotuned 14 kernels"],
                            artifact={"dir": "/runs/artifacts/run-1/inductor/build0-bs1", "sha256": "ab" * 32,
                                      "checksums": {"model.pt2": "cd" * 32}, "files": ["model.pt2"],
                                      "input_sets": ["bs1", "bs8"]}),
            CandidateResult(
                ORT_INT8, s, Status.OK, "top1 within budget",
                Verdict(True, "top1 0.978 (-0.003) within budget 0.01", "int8",
                        metric=MetricCheck("top1", 0.978, 0.981, 0.01, True), tensor_check_advisory=True),
                make_measurement(base * 0.8, bs, spread=0.04,
                                 noise_warning="IQR 8% of median after the 10 s cap" if s == "bs8" else None),
                {"providers": ["CPUExecutionProvider"]}, wall_s=9.0,
            ),
            CandidateResult(
                BF16, s, Status.WRONG_ANSWER, "output last_hidden_state: max abs err 3.1e-01 > atol 1.6e-02",
                Verdict(False, "output last_hidden_state: max abs err 3.1e-01 > atol 1.6e-02", "bfloat16",
                        (OutputCheck("last_hidden_state", 0.31, 0.5, 0.97, 1.6e-2, 1.6e-2, 0, False),)),
                make_measurement(base * 0.4, bs), wall_s=4.0,
            ),
            CandidateResult(OPENVINO, s, Status.CRASHED, "killed by signal SIGSEGV",
                            log_tail="Traceback (most recent call last):\n  ...\nSegmentation fault", wall_s=1.5),
            CandidateResult(TVM, s, Status.TIMEOUT, "exceeded the 600 s timeout", wall_s=600.0),
            CandidateResult(TENSORRT, s, Status.UNSUPPORTED,
                            "tensorrt is not installed (pip install 'hone[tensorrt]')"),
            CandidateResult(AOTI, s, Status.OOM, "MemoryError while compiling", wall_s=30.0),
            CandidateResult(DYNAMO, s, Status.CRASHED, LONG_REASON, log_tail=LONG_REASON, wall_s=2.0),
        ]  # fmt: skip
    return results


def make_info(**overrides) -> RunInfo:
    data = dict(
        model="minilm",
        workload="all-MiniLM-L6-v2",
        task="sentence-embedding",
        device="cpu",
        threads=2,
        input_sets={
            "bs1": ["input_ids: int64[1, 128]", "attention_mask: int64[1, 128]"],
            "bs8": ["input_ids: int64[8, 128]", "attention_mask: int64[8, 128]"],
        },
        output_names=["last_hidden_state"],
        hardware={"cpu_name": "AMD EPYC 9R14 96-Core Processor", "physical_cores": 2, "flags": ["avx512f"],
                  "peaks": {"fp32_gflops": 210.5}},  # fmt: skip
        fingerprint="zen4-2c-1f3a9b",
        versions={"torch": "2.13.0", "onnxruntime": "1.22.0"},
        settings={"timeout_s": 600, "accuracy_budget": 0.01},
    )
    data.update(overrides)
    return RunInfo(**data)


def make_optimize_result(results: list[CandidateResult] | None = None, **info) -> OptimizeResult:
    return OptimizeResult.from_results(make_info(**info), make_results() if results is None else results)
