"""The eager fp32 candidate is the sweep's control.

It runs the very module the reference ran, in a worker, through the same validation as every
candidate. If it fails against its own reference (beyond the run-to-run difference the
reference recorded), the fault is in the harness (how outputs are sliced, joined, compared,
scored), not in any candidate: every verdict of the run would be suspect, so the run stops here
with the check and output that failed, before another candidate spends the budget.
"""

from __future__ import annotations

from hone.errors import HarnessError
from hone.search.result import CandidateResult, Status
from hone.validate.verdict import Verdict

CONTROL_HINT = ("the same module passed in this process; please report it with the model's output shapes "
                "(declare EvalSet(batch_axes=...) if an output's batch axis was inferred wrong)")


def check_control(results: list[CandidateResult]) -> None:
    """Raise HarnessError if the eager control was rejected at any input set."""
    for result in results:
        if result.status is Status.WRONG_ANSWER:
            raise HarnessError(
                f"the eager fp32 control failed validation against its own reference at input set "
                f"{result.input_set}: {failed_check(result.verdict, result.reason)}; the harness, not a candidate, "
                "is at fault, so the run stops and nothing is selected",
                hint=CONTROL_HINT,
            )


def failed_check(verdict: Verdict | None, reason: str) -> str:
    """Which check failed, on which output, in words."""
    if verdict is None:
        return reason
    for check in verdict.outputs:
        if check.nonfinite:
            return f"NaN/Inf check on output {check.name!r} ({reason})"
        if not check.passed and not verdict.tensor_check_advisory:
            return f"tensor check on output {check.name!r} ({reason})"
    if verdict.metric is not None and not verdict.metric.passed:
        return f"task metric {verdict.metric.name} on the eval set ({reason})"
    return reason
