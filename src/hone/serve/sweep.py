"""The serving sweep: the top candidates behind a real server, over batching x processes x
threads (and each runtime's own serving knobs), driven by the bounded load generator.

For each (candidate, configuration) a server starts on a free loopback port, and the load
generator runs closed-loop concurrency levels (1, 2, 4, ...) until throughput stops rising
(the level after that shows the queueing: its p99 grows while throughput does not), then
Poisson arrivals at fractions of the capacity it found. Each point records throughput and
p50 / p90 / p99 latency including every queue. The chosen configuration is the one whose
point gives the most throughput with p99 within the target (`max_p99_ms`); when no point meets
it, the point with the lowest p99 is named as best effort, with by how much it misses.

What hone timed before, one synchronous call at a time, is kept beside it for each candidate
(`single_request`: batch / p50 from the sweep's own measurement), so the report shows what
serving changes. Timed work holds the machine's timing slot (search.exclusive), like every
candidate of a sweep. The whole sweep is bounded by `time_budget_s`: a configuration that no
longer fits is listed with the arithmetic, never started.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hone.errors import HoneError, InputError
from hone.serve.loadgen import Load, LoadPoint
from hone.serve.server import READY_TIMEOUT_S

SATURATION_GAIN = 0.05  # a level that adds less than this share of throughput adds no capacity
POISSON_FRACTIONS = (0.5, 0.8, 0.95)  # of the closed-loop capacity: light, busy, near the knee
STARTUP_GUESS_S = 15.0  # before the first server of a candidate has started


@dataclasses.dataclass(frozen=True)
class ServeSweepSettings:
    max_batch_sizes: tuple[int, ...] = (1, 8)
    max_delay_ms: float = 5.0
    # (worker processes, threads each); None: one process with every core, and one per core.
    layouts: tuple[tuple[int, int], ...] | None = None
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    poisson_fractions: tuple[float, ...] = POISSON_FRACTIONS
    level_seconds: float = 2.0
    level_requests: int = 4000
    warmup_seconds: float = 0.3
    max_p99_ms: float | None = None
    time_budget_s: float | None = 300.0
    top: int = 2  # candidates from a run's selection
    runtime_knobs: bool = True  # also each runtime's declared serving variants

    def __post_init__(self) -> None:
        if not self.max_batch_sizes or any(b < 1 for b in self.max_batch_sizes):
            raise InputError(f"serving max batch sizes must be positive, not {self.max_batch_sizes}")
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise InputError(f"concurrency levels must be positive, not {self.concurrency}")
        if self.max_p99_ms is not None and not self.max_p99_ms > 0:
            raise InputError(f"max_p99_ms must be positive, not {self.max_p99_ms}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise InputError(f"the serving sweep's time budget must be positive, not {self.time_budget_s}")
        if self.top < 1:
            raise InputError(f"the serving sweep needs at least one candidate, not {self.top}")
        if any(not 0 < f < 2 for f in self.poisson_fractions):
            raise InputError(f"Poisson fractions are shares of the capacity (0-2), not {self.poisson_fractions}")

    def to_dict(self) -> dict[str, Any]:
        """As JSON holds it (lists, not tuples): what the store gives back is equal to it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    max_batch_size: int
    max_delay_ms: float
    workers: int
    threads: int
    runtime_tag: str = ""  # the runtime's own knob, e.g. "streams2"
    runtime_config: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def tag(self) -> str:
        batching = f"batch<={self.max_batch_size} wait {self.max_delay_ms:g}ms" if self.max_batch_size > 1 else "no batching"
        return f"{batching}, {self.workers}x{self.threads} threads" + (f", {self.runtime_tag}" if self.runtime_tag else "")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ServingConfig":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclasses.dataclass(frozen=True)
class Candidate:
    """An artifact to serve: a label, its export directory, how to split its outputs per request,
    and what hone measured of it one call at a time (for comparison)."""

    label: str
    artifact: str
    output_batch_axes: dict[str, int | None] = dataclasses.field(default_factory=dict)
    # {"input_set", "batch_size", "p50_s", "throughput_per_s"} from the sweep; None: not measured.
    single_request: dict[str, Any] | None = None


def candidate_from_export(directory: str | Path) -> Candidate:
    """An export directory as a serving candidate; what one call at a time gave comes from the
    p50 its manifest recorded at export (`timing`), when it has one."""
    from hone.export import verify

    directory = Path(directory).resolve()
    manifest = verify(directory)
    timing = manifest.get("timing") or {}
    single = None
    if timing.get("p50_s"):
        batch = int(timing.get("batch_size") or 1)
        single = {"input_set": f"bs{batch}, at export", "batch_size": batch, "p50_s": timing["p50_s"],
                  "throughput_per_s": batch / timing["p50_s"]}
    axes = (manifest.get("batch_axes") or {}).get("outputs") or {}
    return Candidate(manifest["recipe"].get("label") or manifest["recipe"]["runtime"]["name"], str(directory), axes, single)


def candidates_from_result(result: Any, top: int) -> tuple[list[Candidate], list[str]]:
    """The selection's top `top` recipes of a run that kept their artifacts (the winner first),
    each served from its build for the smallest input set (a build that serves other batch
    sizes serves every set; one that does not must take single requests), with what one call
    at a time gave there. Also why any of them cannot be served."""
    from hone.search.sweep import kept_keys

    by_key = {r.recipe.key: r.recipe.label for r in result.results}
    sets = sorted(result.run.input_sets or {r.input_set for r in result.results},
                  key=lambda label: _batch_of(result, label))
    found, why_not = [], []
    for key in kept_keys(result.selection, top):
        label = by_key[key]
        try:
            chosen, artifact = result.winner_artifact(sets[0] if sets else None, label)
        except HoneError as exc:
            why_not.append(f"{label}: {exc.message}")
            continue
        m = chosen.measurement
        single = None if m is None or not m.n else {
            "input_set": chosen.input_set, "batch_size": m.batch_size, "p50_s": m.p50,
            "throughput_per_s": m.batch_size / m.p50}
        found.append(Candidate(label, artifact["dir"], dict(result.run.output_batch_axes or {}), single))
    return found, why_not


def _batch_of(result: Any, label: str) -> int:
    for r in result.results:
        if r.input_set == label and r.measurement is not None:
            return r.measurement.batch_size
    return 1 << 30


@dataclasses.dataclass
class ConfigRun:
    candidate: str
    config: ServingConfig
    points: list[LoadPoint] = dataclasses.field(default_factory=list)
    startup_s: float | None = None
    error: str | None = None  # why this configuration has no points (the server failed)

    @property
    def capacity(self) -> float:
        """The most samples a second any clean closed-loop level gave."""
        return max((p.throughput_per_s for p in self.points if p.mode == "concurrency" and p.clean), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "config": dataclasses.asdict(self.config),
                "points": [p.to_dict() for p in self.points], "startup_s": self.startup_s, "error": self.error}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConfigRun":
        return cls(data["candidate"], ServingConfig.from_dict(data["config"]),
                   [LoadPoint.from_dict(p) for p in data.get("points", [])], data.get("startup_s"), data.get("error"))


@dataclasses.dataclass
class ServeSweep:
    settings: dict[str, Any]
    runs: list[ConfigRun]
    chosen: dict[str, Any] | None  # {"candidate", "config", "point", "meets_target"}
    why: str
    single_request: dict[str, dict[str, Any]]  # candidate label -> what one call at a time gave
    skipped: list[dict[str, str]]  # {"candidate", "config", "why"}
    wall_s: float
    best_effort: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "runs": [r.to_dict() for r in self.runs], "chosen": self.chosen,
                "why": self.why, "single_request": self.single_request, "skipped": self.skipped,
                "wall_s": self.wall_s, "best_effort": self.best_effort}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ServeSweep":
        return cls(data.get("settings", {}), [ConfigRun.from_dict(r) for r in data.get("runs", [])], data.get("chosen"),
                   data.get("why", ""), data.get("single_request", {}), data.get("skipped", []), data.get("wall_s", 0.0),
                   data.get("best_effort", False))


def default_layouts(cores: int) -> tuple[tuple[int, int], ...]:
    """One process with every core (one forward at a time, all threads on it) and one process
    per core (several forwards at once, one thread each), and halfway between on larger machines."""
    layouts = [(1, cores)]
    if cores >= 4:
        layouts.append((2, cores // 2))
    if cores > 1:
        layouts.append((cores, 1))
    return tuple(layouts)


def configs_for(runtime_name: str, runtime_config: dict[str, Any], settings: ServeSweepSettings,
                cores: int) -> list[ServingConfig]:
    """The configurations to try for one artifact: batching x layouts x the runtime's knobs."""
    found = []
    for workers, threads in settings.layouts or default_layouts(cores):
        knobs: list[tuple[str, dict[str, Any]]] = [("", {})]
        if settings.runtime_knobs:
            knobs += serving_knobs(runtime_name, runtime_config, threads)
        for batch in settings.max_batch_sizes:
            for tag, overrides in knobs:
                found.append(ServingConfig(batch, settings.max_delay_ms, workers, threads, tag, overrides))
    return found


def serving_knobs(runtime_name: str, runtime_config: dict[str, Any], threads: int) -> list[tuple[str, dict[str, Any]]]:
    """What the artifact's runtime declares worth trying when served by a process of `threads`
    threads (Runtime.serving_variants)."""
    from hone.registry import RUNTIMES

    if runtime_name not in RUNTIMES.names():
        return []
    runtime = RUNTIMES.get(runtime_name)
    return list(runtime.serving_variants(runtime.Config.from_dict(runtime_config), threads))


Progress = Callable[[str], None]


def run_serving_sweep(candidates: list[Candidate], settings: ServeSweepSettings, log_dir: str | Path,
                      cores: int, progress: Progress = lambda line: None, price: Any = None) -> ServeSweep:
    """Serve each candidate in each configuration and drive it; choose by `settings.max_p99_ms`.
    `price` (hone.cost.Price): this machine's, to say what the chosen configuration costs."""
    from hone.export import read_manifest
    from hone.search.exclusive import timing_slot

    if not candidates:
        raise HoneError("the serving sweep has no candidate with a saved artifact to serve")
    started = time.monotonic()
    deadline = None if settings.time_budget_s is None else started + settings.time_budget_s
    plans: list[tuple[Candidate, list[ServingConfig]]] = []
    for candidate in candidates:
        runtime = read_manifest(candidate.artifact)["recipe"]["runtime"]
        plans.append((candidate, configs_for(runtime["name"], runtime["config"], settings, cores)))
    runs: list[ConfigRun] = []
    skipped: list[dict[str, str]] = []
    startup: dict[str, float] = {}
    # Interleaved: every candidate's first configuration before any second, so a budget that
    # runs out leaves each candidate measured in its most likely configurations.
    order = [(c, cfg) for i in range(max(len(p[1]) for p in plans)) for c, cfgs in plans if i < len(cfgs)
             for cfg in [cfgs[i]]]
    log_dir = Path(log_dir)
    for index, (candidate, config) in enumerate(order):
        estimate = _estimate_s(settings, startup.get(candidate.label, STARTUP_GUESS_S))
        if deadline is not None and time.monotonic() + estimate > deadline:
            left = max(0.0, deadline - time.monotonic())
            skipped.append({"candidate": candidate.label, "config": config.tag,
                            "why": f"needs about {estimate:.0f} s, {left:.0f} s of the serving sweep's "
                                   f"{settings.time_budget_s:g} s left"})
            continue
        progress(f"serving {candidate.label} ({config.tag}) [{index + 1}/{len(order)}]")
        # A server that is not ready by the end of the budget would only overrun it.
        ready_s = READY_TIMEOUT_S if deadline is None else max(30.0, min(READY_TIMEOUT_S, deadline - time.monotonic()))
        with timing_slot(f"serving sweep: {candidate.label}"):
            run = _run_config(candidate, config, settings, log_dir / f"serve-{index + 1:02d}.log", progress, ready_s)
        runs.append(run)
        if run.startup_s is not None:
            startup[candidate.label] = run.startup_s
    chosen, why, best_effort = choose(runs, settings.max_p99_ms, {c.label: c.single_request for c in candidates})
    if chosen is not None and price is not None:
        why += _cost_note(chosen, price, {c.label: c.single_request for c in candidates})
    return ServeSweep(settings.to_dict(), runs, chosen, why,
                      {c.label: c.single_request for c in candidates if c.single_request}, skipped,
                      time.monotonic() - started, best_effort)


def _cost_note(chosen: dict[str, Any], price: Any, single: dict[str, dict[str, Any] | None]) -> str:
    """What the chosen configuration costs per 1M inferences at this machine's price, and what
    one call at a time would (recorded in `chosen` too)."""
    from hone.cost.arithmetic import fmt_usd, usd_per_million

    chosen["usd_per_million"] = usd_per_million(chosen["point"]["throughput_per_s"], price.usd_per_hour)
    where = f"priced as {price.instance}" if price.instance else f"at ${price.usd_per_hour:.4g}/h"
    note = f"; {fmt_usd(chosen['usd_per_million'])} / 1M {where}"
    base = single.get(chosen["candidate"])
    if base and base.get("throughput_per_s"):
        note += f" ({fmt_usd(usd_per_million(base['throughput_per_s'], price.usd_per_hour))} one call at a time)"
    return note


def _estimate_s(settings: ServeSweepSettings, startup_s: float) -> float:
    levels = min(len(settings.concurrency), 5) + len(settings.poisson_fractions)
    return startup_s + levels * (settings.level_seconds + settings.warmup_seconds) + 2.0


def _run_config(candidate: Candidate, config: ServingConfig, settings: ServeSweepSettings, log_path: Path,
                progress: Progress, ready_timeout_s: float) -> ConfigRun:
    from hone.serve.loadgen import drive
    from hone.serve.protocol import encode_request
    from hone.serve.server import Server, ServerConfig, example_inputs

    run = ConfigRun(candidate.label, config)
    try:
        server_config = ServerConfig.for_artifact(
            candidate.artifact, output_batch_axes=candidate.output_batch_axes, label=candidate.label, port=0,
            max_batch_size=config.max_batch_size, max_delay_ms=config.max_delay_ms, workers=config.workers,
            threads=config.threads, runtime_config=config.runtime_config, max_request_rows=1,
            queue_capacity=4096,
        )
        with Server(server_config, log_path, ready_timeout_s) as server:
            run.startup_s = server.startup_s
            bodies = _bodies(example_inputs(server_config, rows=None), encode_request)

            def level(load: Load) -> LoadPoint:
                point = drive(server.url, bodies, load)
                run.points.append(point)
                progress(f"  {point.describe()}")
                if not server.alive():
                    raise HoneError(f"the server died during {load.describe()}: {server.log_tail()}")
                return point

            best = 0.0
            flat = 0
            for concurrency in settings.concurrency:
                point = level(_load(settings, "concurrency", concurrency))
                if point.throughput_per_s > best * (1 + SATURATION_GAIN):
                    best, flat = point.throughput_per_s, 0
                else:
                    flat += 1  # no more capacity: this level queues
                if flat >= 2 or not point.clean:
                    break
            if run.capacity > 0:
                for fraction in settings.poisson_fractions:
                    level(_load(settings, "poisson", fraction * run.capacity))
    except HoneError as exc:
        run.error = exc.message
        progress(f"  failed: {run.error.splitlines()[0]}")
    return run


def _bodies(inputs: dict[str, Any], encode: Callable[[dict[str, Any]], bytes]) -> list[bytes]:
    """One request per example sample, so consecutive requests differ."""
    rows = min(a.shape[0] for a in inputs.values())
    return [encode({n: a[i:i + 1] for n, a in inputs.items()}) for i in range(max(rows, 1))]


def _load(settings: ServeSweepSettings, mode: str, level: float) -> Load:
    return Load(mode, level, max_requests=settings.level_requests, max_seconds=settings.level_seconds,
                warmup_seconds=settings.warmup_seconds)


def choose(runs: list[ConfigRun], max_p99_ms: float | None,
           single: dict[str, dict[str, Any] | None]) -> tuple[dict[str, Any] | None, str, bool]:
    """The point with the most throughput whose p99 meets the target (any, without one); else the
    lowest p99 as best effort. Only clean points count (every request answered 200)."""
    points = [(run, p) for run in runs for p in run.points if p.clean and p.p99_s is not None]
    if not points:
        return None, "no configuration answered every request of any load level", False
    meeting = [(r, p) for r, p in points if max_p99_ms is None or p.p99_s * 1e3 <= max_p99_ms]  # type: ignore[operator]
    best_effort = not meeting
    run, point = (max(meeting, key=lambda rp: rp[1].throughput_per_s) if meeting
                  else min(points, key=lambda rp: rp[1].p99_s))  # type: ignore[arg-type,return-value]
    target = f" (target {max_p99_ms:g} ms)" if max_p99_ms is not None else ""
    why = f"{run.candidate}, {run.config.tag}, at {point.describe()}{target}"
    if best_effort:
        why += f": no point met the target; the lowest p99 misses it by {point.p99_s * 1e3 / max_p99_ms - 1:.0%}"  # type: ignore[operator]
    base = single.get(run.candidate)
    if base and base.get("throughput_per_s"):
        why += (f"; {point.throughput_per_s / base['throughput_per_s']:.2f}x the {base['throughput_per_s']:.4g}/s "
                f"of one call at a time ({base['input_set']}, p50 {base['p50_s'] * 1e3:.3g} ms)")
    chosen = {"candidate": run.candidate, "config": dataclasses.asdict(run.config), "point": point.to_dict(),
              "meets_target": not best_effort}
    return chosen, why, best_effort
