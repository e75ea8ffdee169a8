"""torch.export + AOTInductor: the model compiled ahead of time into a `.pt2` package (a shared
library with the weights inside), built in the worker and run through AOTInductor's loader, as
a deployment would run it. Per call, Python only enters the loader and checks the inputs' shapes
against the package's (~1 µs: the compiled code checks nothing, see `AotiRunner`).

The batch dimension is exported dynamic, so one package serves every batch size:
- torch.export specialises a dimension whose example size is 0 or 1, so an example of batch 1 is
  exported from a batch of 2 made of its rows repeated (the range still starts at 1).
- A model whose code fixes the batch (a reshape with a literal, a branch on the batch size) cannot
  be exported with a symbolic batch; it is exported at the example's batch instead, and the info
  says so (`dynamic_batch: False`, `static_batch_reason`). Data-dependent control flow cannot be
  exported at all: `Unsupported`, with the exporter's message.
- The loaded package is run once at batch N+1 during the build and compared with eager
  (`dynamic_batch_verified`): the range comes from the exporter's guards, this checks it.

Freezing: Inductor freezes only when grad is off while it compiles, so the compile runs under
no_grad. Frozen, the CPU linears become oneDNN `_linear_pointwise` calls on pre-packed weights
(`_frozen_param*` constants); unfrozen they are plain `addmm`. What the package calls is read
back from its generated wrapper (`extern_kernels`), and the CPU ISA it was built for from its
metadata (it is compiled with -march=native: a package is tied to machines with that ISA).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import re
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.plugin import Artifact, BuildContext, Claim, Variant
from hone.runtimes.base import Runner, Runtime
from hone.runtimes.inductor import _has_cxx_compiler
from hone.runtimes._batch import check_at_another_batch, first_line
from hone.runtimes._export import export_program

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

log = logging.getLogger(__name__)

PACKAGE = "model.pt2"
# hone's facts stored in the package's own metadata (AOTInductor keeps string pairs), so a
# loaded package still knows its batch range.
_META_DYNAMIC, _META_BATCH_MIN, _META_BATCH_MAX = "hone.dynamic_batch", "hone.batch_min", "hone.batch_max"
_META_INPUTS = "hone.inputs"
_EXTERN_CALL = re.compile(r"aoti_torch_(?:cpu|cuda|xpu|mps)_(\w+)\(")
_FUSED_KERNEL = re.compile(r"\b(cpp_fused_\w+|triton_\w+)\(")


@dataclasses.dataclass(frozen=True)
class AotiConfig(Config):
    # Export dim 0 of every input as one symbolic batch size; falls back to the example's batch
    # when the model's code fixes it.
    dynamic_batch: bool = True
    # Fold the weights in as constants (pre-packed for oneDNN on CPU).
    freezing: bool = True


class AotiRunner(Runner):
    """Runs a loaded package. The inputs are checked against the shapes it was exported for
    (read from its metadata): the compiled code does not check them (only with the
    AOTI_RUNTIME_CHECK_INPUTS environment variable), and a static-batch package given another
    batch returns outputs of its own batch, silently."""

    def __init__(self, model: Any, package: Path, device: str, info: dict[str, Any]):
        self.model = model  # torch._inductor's AOTICompiledModel
        self.package = package
        self.device = device
        self._info = info
        self._inputs = _input_specs(model.get_metadata())

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if self._inputs is not None:
            _check_inputs(inputs, *self._inputs)
        return tuple(self.model(*inputs))

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def serves(self, inputs: tuple[torch.Tensor, ...]) -> bool:
        # The package's own record of what it takes: a batch within its dynamic range (a static
        # package's range is its one batch), every input's dtype and shape after the batch.
        if self._inputs is None:  # a package hone did not build: only what it was built for
            return super().serves(inputs)
        try:
            _check_inputs(inputs, *self._inputs)
        except InputError:
            return False
        return True

    def save(self, directory: Path) -> list[str]:
        shutil.copyfile(self.package, Path(directory) / PACKAGE)
        return [PACKAGE]


class Aoti(Runtime[AotiConfig]):
    name = "aoti"
    Config = AotiConfig
    description = "torch.export + AOTInductor .pt2 package (dynamic batch), run through its loader"
    devices = ("cpu", "cuda")
    consumes = ("torch", "torch-quantized")  # torch.export lowers quantized graphs as Inductor does
    accepts_dtypes = ("*",)
    keeps = ("channels_last",)

    @classmethod
    def unavailable_here(cls, hw: "Hardware", device: str) -> str | None:
        # The package's wrapper is C++ on every device (CUDA kernels come from Triton, the host code does not).
        if not _has_cxx_compiler():
            return "AOTInductor compiles C++ and needs a C++ compiler (g++ or clang++) on PATH"
        return None

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        return [Variant(AotiConfig(), "aoti", "ahead-of-time compiled package, no Python per op, weights frozen",
                        cost=3.0, addresses={"overhead": Claim(0.5, "AOTInductor runs a compiled .so with no Python at all")})]

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        cfg = self.config
        module = model.module.to(ctx.device).eval()
        start = time.perf_counter()
        exported, batch = export_program(module, ctx.example_inputs, cfg.dynamic_batch)
        export_s = time.perf_counter() - start

        package = Path(tempfile.mkdtemp(prefix="aoti-", dir=ctx.workdir)) / PACKAGE
        metadata = _metadata(batch, ctx.example_inputs)
        start = time.perf_counter()
        try:
            with torch.no_grad():  # Inductor freezes only with grad off
                torch._inductor.aoti_compile_and_package(
                    exported, package_path=str(package),
                    inductor_configs={"freezing": cfg.freezing, "aot_inductor.metadata": metadata},
                )
        except Exception as exc:
            raise Unsupported(f"AOTInductor compilation failed: {first_line(exc)}") from exc
        compile_s = time.perf_counter() - start

        start = time.perf_counter()
        loaded = _load_package(package, ctx.device)
        info = {
            "backend": "aoti", **dataclasses.asdict(cfg), **batch,
            "export_s": round(export_s, 3), "compile_s": round(compile_s, 3),
            "load_s": round(time.perf_counter() - start, 3), **package_facts(package, loaded),
        }
        runner = AotiRunner(loaded, package, ctx.device, info)
        if batch["dynamic_batch"]:
            verified, message = check_at_another_batch(runner, module, ctx.example_inputs, ctx.output_names,
                                                       model.compute_dtype, ctx.output_batch_axes)
            info["dynamic_batch_verified"] = verified
            info["dynamic_batch_check"] = message
            if verified is False:
                log.warning("aoti package exported with a dynamic batch fails at another batch: %s", message)
        return runner

    def load(self, directory: Path, files: list[str], ctx: BuildContext) -> Runner:
        package = Path(directory) / files[0]
        loaded = _load_package(package, ctx.device)
        info = {"backend": "aoti", "loaded_from": files[0], **package_facts(package, loaded)}
        return AotiRunner(loaded, package, ctx.device, info)


def _metadata(batch: dict[str, Any], inputs: tuple[torch.Tensor, ...]) -> dict[str, str]:
    """What hone stores in the package: the batch range and every input's dtype and shape
    after the batch dimension."""
    low, high = batch["batch_range"]
    specs = [[str(t.dtype).removeprefix("torch."), list(t.shape[1:])] for t in inputs]
    return {_META_DYNAMIC: str(batch["dynamic_batch"]), _META_BATCH_MIN: str(low), _META_BATCH_MAX: str(high),
            _META_INPUTS: json.dumps(specs)}


def _input_specs(meta: dict[str, str]) -> "tuple[list[tuple[torch.dtype, torch.Size]], int, int | None] | None":
    """(dtype and trailing shape per input, lowest batch, highest batch or None) from the
    package's metadata; None for a package hone did not build."""
    if _META_INPUTS not in meta:
        return None
    specs = [(getattr(torch, dtype), torch.Size(shape)) for dtype, shape in json.loads(meta[_META_INPUTS])]
    high = meta[_META_BATCH_MAX]
    return specs, int(meta[_META_BATCH_MIN]), None if high == "None" else int(high)


def _check_inputs(
    inputs: tuple[torch.Tensor, ...], specs: list[tuple[torch.dtype, torch.Size]], low: int, high: int | None
) -> None:
    """Every call goes through this, so it is kept to ~1 µs: no formatting unless it fails."""
    if len(inputs) != len(specs):
        raise InputError(f"the AOTInductor package takes {len(specs)} inputs, got {len(inputs)}")
    batch = inputs[0].shape[0]
    if batch < low or (high is not None and batch > high):
        accepted = f"{low}" if low == high else f"{low} to {high if high is not None else 'any'}"
        raise InputError(f"the AOTInductor package takes batch {accepted}, got {batch}")
    for i, (tensor, (dtype, rest)) in enumerate(zip(inputs, specs)):
        shape = tensor.shape
        if tensor.dtype is not dtype or shape[1:] != rest or shape[0] != batch:
            raise InputError(f"AOTInductor package input {i} must be {str(dtype).removeprefix('torch.')}"
                             f"[batch, {', '.join(map(str, rest))}], got {str(tensor.dtype).removeprefix('torch.')}"
                             f"{list(shape)}")


def _load_package(package: Path, device: str) -> Any:
    index = torch.device(device).index
    try:
        return torch._inductor.aoti_load_package(str(package), device_index=-1 if index is None else index)
    except Exception as exc:
        raise Unsupported(f"AOTInductor could not load {package.name}: {first_line(exc)}") from exc


def package_facts(package: Path, loaded: Any) -> dict[str, Any]:
    """Read back from the package: its size, the device and ISA it was built for, the batch
    range hone stored in it, whether the weights were frozen, and the kernels its wrapper calls."""
    meta = loaded.get_metadata()
    constants = loaded.get_constant_fqns()
    facts: dict[str, Any] = {
        "package_bytes": package.stat().st_size,
        "package_device": meta.get("AOTI_DEVICE_KEY"),
        "weights_frozen": any(name.startswith("_frozen_param") for name in constants),
        "constants": len(constants),
    }
    if meta.get("AOTI_CPU_ISA"):
        facts["package_cpu_isa"] = meta["AOTI_CPU_ISA"]
    if _META_DYNAMIC in meta:
        upper = meta[_META_BATCH_MAX]
        facts["package_dynamic_batch"] = meta[_META_DYNAMIC] == "True"
        facts["package_batch_range"] = [int(meta[_META_BATCH_MIN]), None if upper == "None" else int(upper)]
    facts.update(_wrapper_calls(package))
    return facts


def _wrapper_calls(package: Path) -> dict[str, Any]:
    """The generated wrapper's calls: library kernels (oneDNN linear, addmm, SDPA) by count, and
    how many fused kernels Inductor generated. Absent when the package has no wrapper source."""
    with zipfile.ZipFile(package) as archive:
        sources = [archive.read(n).decode(errors="replace") for n in archive.namelist() if n.endswith("wrapper.cpp")]
    if not sources:
        return {}
    externs = collections.Counter(m for source in sources for m in _EXTERN_CALL.findall(source))
    fused = {m for source in sources for m in _FUSED_KERNEL.findall(source)}
    return {"extern_kernels": dict(externs.most_common()), "fused_kernels": len(fused)}


