"""Runtimes that misbehave on purpose, to prove the sweep survives them.

They live outside hone's packages and are registered explicitly, as a user's plugin would be;
worker processes import this module by path (tests/ is on sys.path, and workers inherit it).
"""

from __future__ import annotations

import os
import sys
import time

import torch

from hone.errors import Unsupported
from hone.plugin import Artifact, BuildContext
from hone.registry import RUNTIMES
from hone.runtimes.base import ModuleRunner, Runner, Runtime
from hone.search.recipe import Recipe, Step


class _TestRuntime(Runtime):
    devices = ("cpu", "cuda")

    @classmethod
    def recipe(cls) -> Recipe:
        return Recipe(cls.name, (), Step(cls.name, cls.Config()), origin="test")


@RUNTIMES.register
class AbortRuntime(_TestRuntime):
    name = "test_abort"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        os.abort()


@RUNTIMES.register
class HangRuntime(_TestRuntime):
    name = "test_hang"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        time.sleep(3600)
        raise AssertionError("unreachable")


@RUNTIMES.register
class RaiseRuntime(_TestRuntime):
    name = "test_raise"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        raise ValueError("deliberate failure in build")


@RUNTIMES.register
class OomRuntime(_TestRuntime):
    name = "test_oom"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        raise MemoryError("deliberate")


@RUNTIMES.register
class UnsupportedRuntime(_TestRuntime):
    name = "test_unsupported"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        print("backend chatter before an expected refusal", file=sys.stderr, flush=True)
        raise Unsupported("op aten::frobnicate has no kernel here")


class _Affine(torch.nn.Module):
    """Every output of `module` times `scale` plus `offset`."""

    def __init__(self, module: torch.nn.Module, scale: float = 1.0, offset: float = 0.0):
        super().__init__()
        self.module, self.scale, self.offset = module, scale, offset

    def forward(self, *args):
        return tuple(o * self.scale + self.offset for o in self.module(*args))


@RUNTIMES.register
class WrongRuntime(_TestRuntime):
    """Fast and wrong: adds 1 to every output."""

    name = "test_wrong"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        return ModuleRunner(_Affine(model.module, offset=1.0))


@RUNTIMES.register
class NanRuntime(_TestRuntime):
    name = "test_nan"

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        return ModuleRunner(_Affine(model.module, offset=float("nan")))


@RUNTIMES.register
class PerturbedEagerRuntime(_TestRuntime):
    """Eager with every output scaled by 1.001: far below anything a user would notice, far
    above fp32's tolerance. Labelled `eager`, it plays a harness that corrupts its control."""

    name = "test_perturbed_eager"

    @classmethod
    def recipe(cls) -> Recipe:
        return Recipe("eager", (), Step(cls.name, cls.Config()), origin="test")

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        return ModuleRunner(_Affine(model.module, scale=1.001))
