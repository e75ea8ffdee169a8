"""Base class of every pass."""

from __future__ import annotations

from typing import ClassVar

from hone.plugin import C, Artifact, BuildContext, Plugin


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

    def apply(self, model: Artifact, ctx: BuildContext) -> Artifact:
        if model.format not in self.consumes:
            raise TypeError(f"pass {self.name} takes {' or '.join(self.consumes)}, got {model.format}")
        out, seconds = self._guarded("apply", lambda: self.apply_impl(model, ctx))
        if out.format != self.produces:
            raise TypeError(f"pass {self.name} returned {out.format}, declared {self.produces}")
        out.notes = {**model.notes, self.name: {**out.notes, "seconds": round(seconds, 3)}}
        return out

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        raise NotImplementedError
