"""A pass added the way any new pass is: one file that declares what it consumes and produces,
its stage and its variants. It names no runtime and no other plugin's config; the composer
stacks it onto every runtime that takes its output. Registered by the test that uses it."""

from __future__ import annotations

import torch

from hone.config import NoConfig
from hone.passes.base import Pass
from hone.plugin import Artifact, BuildContext, Variant


class _DoubledThenHalved(torch.nn.Module):
    """Every output times 2, then times 0.5: exact in floating point, so the answers stand."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        return tuple(o * 2.0 * 0.5 for o in self.module(*args))


class ToyRewrite(Pass[NoConfig]):
    name = "test_toy_rewrite"
    description = "a toy rewrite (test plugin)"
    stage = "rewrite"
    consumes = ("torch",)
    produces = "torch"

    @classmethod
    def variants(cls, workload, hw, device, fmt="torch"):
        return [Variant(NoConfig(), "toy", "a toy rewrite (test plugin)", cost=0.25)]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        return Artifact("torch", _DoubledThenHalved(model.module), compute_dtype=model.compute_dtype,
                        notes={"outputs": "doubled then halved"})


class ToyBackendFailure(Pass[NoConfig]):
    """Asks the backend (torch.export) for something it refuses: a Linear fed the wrong width."""

    name = "test_toy_backend_failure"

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        torch.export.export(torch.nn.Linear(3, 4), (torch.zeros(2, 5),))
        raise AssertionError("unreachable: the export raises")


class ToyOwnBug(Pass[NoConfig]):
    """A bug in the plugin's own code."""

    name = "test_toy_own_bug"

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        settings: dict[str, int] = {}
        return settings["missing"]  # type: ignore[return-value]
