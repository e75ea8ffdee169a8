"""Base class of every pass."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from hone.config import Config
from hone.plugin import C, Artifact, BuildContext, Plugin


@dataclasses.dataclass(frozen=True)
class BackOff:
    """A retry of a pass that gives up part of its gain to recover accuracy (search.fallback)."""

    config: Config
    tag: str  # the retry's part of the label ("prune-l1-15")
    was: str  # the part it replaces ("prune-l1-30")
    what: str  # what it gives up, in words
    # The expected accuracy loss of the retry relative to the pass's first attempt (first
    # order): a pruning ratio halved predicts half the metric drop.
    scale: float


class Pass(Plugin[C]):
    """Transforms an Artifact of one of `consumes` into one of `produces`, at its `stage`.

    Template method: subclasses write `apply_impl`, which returns the artifact with *its own*
    notes only. `apply` checks the formats (a mis-ordered recipe fails with a message instead of
    deep inside a backend), times the step, files its notes under the pass's name beside the
    earlier steps' (two quantizers in one chain never overwrite each other's), and turns a
    backend's exception into `Unsupported` with the backend's first line.
    """

    stage: ClassVar[str] = "rewrite"  # one of plugin.STAGES
    produces: ClassVar[str] = "torch"
    keeps: ClassVar[tuple[str, ...]] = ("*",)  # a pass carries its input's traits unless it says otherwise
    # True for passes that need calibration samples (the report warns when there are none).
    needs_calibration: ClassVar[bool] = False
    # True for passes that change what the model computes beyond rounding (pruning): the
    # artifact is marked approximate, and the task metric decides, as for quantized compute.
    approximates: ClassVar[bool] = False

    @classmethod
    def summary(cls, notes: dict) -> list[str]:
        """A few short lines of what this step did, from its notes, for reports (FLOPs a pruning
        removed, its recovery); reports never read a step's note keys themselves."""
        return []

    def back_off(self, attempt: int) -> BackOff | None:
        """The config of this pass's `attempt`-th retry (1, 2, ...) after its candidate missed the
        accuracy budget, or None where it has no (further) back-off. Quantization passes back
        off through their layers kept in float instead (search.fallback)."""
        return None

    def apply(self, model: Artifact, ctx: BuildContext) -> Artifact:
        if model.format not in self.consumes:
            raise TypeError(f"pass {self.name} takes {' or '.join(self.consumes)}, got {model.format}")
        out, seconds = self._guarded("apply", lambda: self.apply_impl(model, ctx))
        if out.format != self.produces:
            raise TypeError(f"pass {self.name} returned {out.format}, declared {self.produces}")
        out.notes = {**model.notes, self.name: {**out.notes, "seconds": round(seconds, 3)}}
        # Once approximated, a model stays so through every later step (an export, a quantizer).
        out.approximate = out.approximate or model.approximate or self.approximates
        return out

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        raise NotImplementedError
