"""Apply a recipe: passes in order, then the runtime. Used by the worker (search.execute) and by
tests that build in-process; the winner is never rebuilt: its worker's saved artifact is loaded."""

from __future__ import annotations

import importlib
import time

import torch

from hone.models.workload import FlatIO
from hone.plugin import Artifact, BuildContext
from hone.registry import PASSES, RUNTIMES
from hone.runtimes.base import Runner
from hone.search.recipe import Recipe


def step_paths(recipe: Recipe) -> list[str]:
    """"module:Object" of each step, resolved in the parent so the worker imports exactly these."""
    return [PASSES.path(s.name) for s in recipe.passes] + [RUNTIMES.path(recipe.runtime.name)]


def _load(path: str) -> type:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def build_recipe(
    recipe: Recipe, module: torch.nn.Module, ctx: BuildContext, paths: list[str] | None = None
) -> tuple[Runner, Artifact, float]:
    """Returns the runner, the final artifact and the build time in seconds."""
    paths = paths or step_paths(recipe)
    artifact = source_artifact(module, ctx)
    start = time.perf_counter()
    for step, path in zip(recipe.passes, paths):
        artifact = _load(path)(step.config).apply(artifact, ctx)
    runner = _load(paths[-1])(recipe.runtime.config).build(artifact, ctx)
    return runner, artifact, time.perf_counter() - start


def source_artifact(module: torch.nn.Module, ctx: BuildContext) -> Artifact:
    """What the first step is given: the workload's module behind flat I/O, or, for a module
    that stands for a model file (an ONNX graph, a TorchScript archive), what it says the file
    is (`source_artifact(ctx)`, in the workload's source format)."""
    if callable(getattr(module, "source_artifact", None)):
        return module.source_artifact(ctx)
    flat = module if isinstance(module, FlatIO) else FlatIO(module, ctx.input_names, ctx.output_names)
    return Artifact("torch", flat.eval())
