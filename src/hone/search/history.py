"""What earlier runs in the store say about this one: failures that would only repeat, the
previous winner, which a new run of the same model on the same machine tries first, and the
evidence the prior orders and prunes the plan by (search.prior).

A failure repeats when nothing it depended on changed: the same recipe (its key: every step's
config), the same model (`model_identity`: its module structure, parameter shapes and input
specs, not its weights), the same machine (hardware fingerprint and device) and the same
library versions. Only failures that cost a worker and come back every time are remembered:
`unsupported` (a backend refused the model), `crashed`, `oom`. A wrong answer is not a failure
of this kind (the accuracy fallback retries it), nor is a timeout (it depends on --timeout), nor
a recipe the plan finds unavailable (that check is free and re-done every run).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any

from hone.search.result import CandidateResult, Status

from hone.search.prior import SIMILAR, Measured, similarity

if TYPE_CHECKING:
    from hone.models.workload import Workload
    from hone.search.planner import Plan
    from hone.search.recipe import Recipe
    from hone.store import Store

REPEATING = (Status.UNSUPPORTED, Status.CRASHED, Status.OOM)
RUNS_READ = 50  # the latest runs on this machine that are read for history


@dataclasses.dataclass(frozen=True)
class KnownFailure:
    status: Status
    reason: str
    run_id: int  # the run that measured it (not a later run that only repeated it)

    def result(self, recipe: "Recipe", input_set: str) -> CandidateResult:
        why = f"known from run {self.run_id} (same model, machine and library versions): {self.reason}"
        return CandidateResult(recipe, input_set, self.status, why, known_from=self.run_id)


@dataclasses.dataclass
class History:
    failures: dict[tuple[str, str], KnownFailure] = dataclasses.field(default_factory=dict)  # (recipe key, set)
    winner: str | None = None  # the recipe key that won the latest finished matching run
    winner_run: int | None = None
    # That recipe, rebuilt through the plugins, when it is a refinement of a planned one (an
    # accuracy fallback's `+keepN`): the plan does not hold it, so it is added.
    winner_recipe: "Recipe | None" = None
    # The prior's evidence: this model's latest finished run here, by recipe key; and other
    # models' with a similar op mix, by recipe label: [(similarity, speedup), ...].
    measured: dict[str, Measured] = dataclasses.field(default_factory=dict)
    # The previous winner's saved artifacts per input set ({"dir", "sha256"}), when that run had
    # the same library versions: a repeat run loads and re-times them instead of building again.
    winner_artifacts: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    similar: dict[str, list[tuple[float, float]]] = dataclasses.field(default_factory=dict)

    def known(self, recipe: "Recipe", input_set: str) -> KnownFailure | None:
        return self.failures.get((recipe.key, input_set))

    def incumbent(self) -> dict[str, Any] | None:
        """The previous winner, as search.select keeps it: {"key", "run"}, or None."""
        return {"key": self.winner, "run": self.winner_run} if self.winner else None

    def winner_first(self, plan: "Plan") -> "Plan":
        """The plan with the previous winner moved right after the baseline. A winner that was
        a refinement (`base+keepN`) is added there when its base is planned. Unchanged when
        neither is planned this time, or the winner is the baseline."""
        from hone.search.planner import PlannedRecipe

        items = list(plan)
        at = next((i for i, p in enumerate(items) if p.recipe.key == self.winner and not p.recipe.baseline), None)
        if at is not None:
            winner = items.pop(at)
        elif self.winner_recipe is not None and any(p.recipe.label == _base(self.winner_recipe.label) for p in items):
            winner = PlannedRecipe(self.winner_recipe)
        else:
            return plan
        origin = f"{winner.recipe.origin}; won run {self.winner_run} of this model here: tried first"
        winner = dataclasses.replace(winner, recipe=dataclasses.replace(winner.recipe, origin=origin))
        first = next((i + 1 for i, p in enumerate(items) if p.recipe.baseline), 0)
        items.insert(first, winner)
        plan[:] = items
        return plan


def _base(label: str) -> str:
    return label.split("+keep")[0]


def model_identity(workload: "Workload") -> str:
    """The model as far as failures depend on it: module types and parameter shapes in order,
    and the input specs. Weights are left out: retraining does not change what compiles."""
    module = workload.module
    body = {
        "modules": [f"{name}:{type(m).__module__}.{type(m).__qualname__}" for name, m in module.named_modules()],
        "parameters": [f"{name}:{tuple(p.shape)}:{p.dtype}" for name, p in module.named_parameters()],
        "buffers": [f"{name}:{tuple(b.shape)}:{b.dtype}" for name, b in module.named_buffers()],
        "inputs": {s.label: [str(t) for t in s.specs()] for s in workload.input_sets},
    }
    if "graph_sha256" in workload.provenance:  # a graph file's module holds no parameters: its graph tells models apart
        body["graph"] = workload.provenance["graph_sha256"]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def earlier_profile(db: "Store | None", model_id: str, fingerprint: str, device: str, versions: dict[str, str],
                    threads: int) -> tuple[int, dict] | None:
    """(run id, profile summary) of the latest run of this model on this machine, device, thread
    count and library versions that profiled it: the same eager model on the same machine
    spends its time the same way, so a repeat run plans from that profile instead of profiling
    again (its findings are stored with the run)."""
    if db is None:
        return None
    for run_id, _status, info in db.runs_on(fingerprint, RUNS_READ):
        profile = info.get("profile") or {}
        if (info.get("model_id") == model_id and info.get("device") == device and info.get("versions") == versions
                and info.get("threads") == threads and profile.get("findings") is not None and "reused_from_run" not in profile):
            return run_id, profile
    return None


def read_history(db: "Store | None", model_id: str, fingerprint: str, device: str, versions: dict[str, str],
                 current_run: int | None = None, op_mix: dict[str, float] | None = None,
                 settings: dict[str, Any] | None = None) -> History:
    """History from the latest RUNS_READ runs on this machine of the same model and device.
    Failures need the same library versions too; the winner is taken from the latest finished
    run whatever the versions (trying it first costs nothing if it has become slower). Finished
    runs of other models whose op mix (search.prior.op_mix) is similar to `op_mix` lend their
    speedups to the prior. `settings`: this run's (RunInfo.settings); a recipe an earlier run
    found over its accuracy budget counts against it only under the same budget, and an `oom`
    only under the same worker memory limit."""
    from hone.search.select import select

    settings = settings or {}

    history = History()
    if db is None:
        return history
    for run_id, status, info in db.runs_on(fingerprint, RUNS_READ):
        if run_id == current_run or info.get("device") != device:
            continue
        if info.get("model_id") != model_id:
            theirs = (info.get("profile") or {}).get("op_mix") or {}
            close = similarity(op_mix, theirs) if op_mix and theirs and status == "finished" else 0.0
            if close >= SIMILAR:
                for ranked in select(db.results(run_id), info.get("incumbent"), _constraints(info)).ranking:
                    if not ranked.recipe.baseline:
                        history.similar.setdefault(ranked.recipe.label, []).append((close, ranked.speedup))
            continue
        results = db.results(run_id)
        if history.winner is None and status == "finished":
            selection = select(results, info.get("incumbent"), _constraints(info))
            best = selection.best
            if best is not None:
                history.winner, history.winner_run = best.key, run_id
                if _base(best.label) != best.label:
                    history.winner_recipe = _resolved(db, run_id, best.key)
            same = info.get("versions") == versions
            same_budget = _setting(info, "accuracy_budget") == settings.get("accuracy_budget")
            history.measured = _measured(run_id, results, selection, same, same_budget or not settings)
            if best is not None and same:
                history.winner_artifacts = {
                    r.input_set: {"dir": r.artifact["dir"], "sha256": r.artifact["sha256"], "run": str(run_id)}
                    for r in results
                    if r.recipe.key == best.key and r.artifact and r.artifact.get("dir") and r.artifact.get("sha256")
                }
        if info.get("versions") != versions:
            continue
        same_memory = _setting(info, "memory_limit") == settings.get("memory_limit") or not settings
        for r in results:
            key = (r.recipe.key, r.input_set)
            if r.status is Status.OOM and not same_memory:
                continue  # under another worker memory limit it may fit
            if r.status in REPEATING and key not in history.failures and _cost_a_worker(r):
                original = r.known_from if r.known_from is not None else run_id
                reason = _original_reason(r)
                history.failures[key] = KnownFailure(r.status, reason, original)
    return history


def _setting(info: dict[str, Any], name: str) -> Any:
    return (info.get("settings") or {}).get(name)


def _constraints(info: dict[str, Any]):
    """The constraints a stored run selected with, so its winner is the one it reported."""
    from hone.search.constraints import Constraints

    return Constraints.from_dict((info.get("settings") or {}).get("constraints"))


def _measured(run_id: int, results: list[CandidateResult], selection, same_versions: bool,
              same_budget: bool = True) -> dict[str, Measured]:
    """`same_budget`: that run judged accuracy by this run's budget (else a miss proves nothing)."""
    ranked = {r.recipe.key: r for r in selection.ranking}
    top = selection.ranking[0] if selection.ranking else None
    best = top.speedup if top else None
    passed_bases = {_base(r.recipe.label) for r in results if r.ok and r.recipe.kept_float}
    by_key: dict[str, list[CandidateResult]] = {}
    for r in results:
        by_key.setdefault(r.recipe.key, []).append(r)
    found = {}
    for key, rs in by_key.items():
        label = rs[0].recipe.label
        missed = same_budget and any(r.status is Status.WRONG_ANSWER for r in rs) and label not in passed_bases
        mine = ranked.get(key)
        found[key] = Measured(run_id, mine.speedup if mine else None, best, sum(r.wall_s for r in rs), len(rs), missed,
                              same_versions, mine.high if mine else None, top.low if top else None)
    return found


def _resolved(db: "Store", run_id: int, key: str) -> "Recipe | None":
    """The stored recipe with its configs rebuilt by the plugins; None when one is gone."""
    try:
        return next((r.recipe for r in db.load_run(run_id).results if r.recipe.key == key), None)
    except Exception:  # noqa: BLE001 - a plugin of that run is no longer importable: no winner to add
        return None


def _cost_a_worker(result: CandidateResult) -> bool:
    """A result a worker produced (or one carried forward from such), not the plan's verdict that
    the recipe cannot run here: those come with no build and no worker time."""
    return result.known_from is not None or result.build is not None or result.wall_s > 0 or bool(result.log_tail)


def _original_reason(result: CandidateResult) -> str:
    prefix = "known from run "
    if result.known_from is not None and result.reason.startswith(prefix):
        return result.reason.split(": ", 1)[-1]
    return result.reason


def history_facts(history: History) -> dict[str, Any]:
    """What the run record keeps of the history it used."""
    return {"known_failures": len(history.failures), "previous_winner_run": history.winner_run,
            "measured_recipes": len(history.measured), "similar_model_recipes": len(history.similar)}
