"""Base class of every pass."""

from __future__ import annotations

from typing import ClassVar

from hone.plugin import Artifact, BuildContext, Plugin


class Pass(Plugin):
    """Transforms an Artifact of `input_format` into one of `output_format`.

    Subclasses write `apply_impl`; `apply` checks the formats so a mis-ordered recipe fails
    with a message instead of deep inside a backend.
    """

    input_format: ClassVar[str] = "torch"
    output_format: ClassVar[str] = "torch"

    def apply(self, model: Artifact, ctx: BuildContext) -> Artifact:
        if model.format != self.input_format:
            raise TypeError(f"pass {self.name} takes a {self.input_format} model, got {model.format}")
        out = self.apply_impl(model, ctx)
        if out.format != self.output_format:
            raise TypeError(f"pass {self.name} returned {out.format}, declared {self.output_format}")
        return out

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        raise NotImplementedError
