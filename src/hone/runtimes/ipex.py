"""Intel Extension for PyTorch (IPEX): `ipex.optimize`, then TorchScript trace and freeze.

IPEX is retired upstream: its last release, 2.8, targets torch 2.8, and its CPU optimizations
now live in PyTorch itself: Inductor's CPU backend with freezing folds weights into the graph
and pre-packs them for oneDNN/MKL (the weight prepacking IPEX did), and the X86 quantizer of
PT2E gives oneDNN int8 kernels. hone runs those as `inductor` and `pt2e-int8`. This runtime
exists for a machine that still has IPEX with its matching torch, to compare against them.

The classic IPEX inference recipe: `ipex.optimize(model.eval(), dtype=..., weights_prepack=True)`
(folds conv/linear + batchnorm, replaces Linear/Conv with IPEX modules that hold oneDNN's
blocked weights), then `torch.jit.trace` and `torch.jit.freeze` (IPEX registers JIT fusion
passes that turn the traced graph into fused `ipex_prepack::` ops). `dtype="bfloat16"` casts
the weights of those layers to bf16 and runs the model under CPU autocast: a bf16 candidate,
validated at bf16 tolerance. What ran is read back:
the IPEX module types that replaced the model's layers and, after tracing, the ops of the
graph TorchScript executed.

An IPEX release refuses any torch but its own major.minor: importing it with another torch
prints an error and aborts the import. So availability compares the installed IPEX's version
with torch's from package metadata, without importing either, and explains what to use instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hone._optional import installed_version, release, require, torch_release_mismatch
from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.plugin import Artifact, BuildContext, Variant
from hone.runtimes.base import Runner, Runtime

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

DTYPES = ("float32", "bfloat16")
DISTRIBUTION = "intel-extension-for-pytorch"
LAST_RELEASE = (2, 8)  # IPEX's last release, 2.8.0, targets torch 2.8
FIRST_ON_PYPI = (2, 6)  # the oldest release the index still serves
RETIRED = (
    "IPEX is retired upstream; its CPU optimizations now live in Inductor's CPU backend (freezing, "
    "oneDNN weight prepacking) and the X86 quantizer (PT2E int8), which hone runs as `inductor` and "
    "`pt2e-int8`"
)
SAVED = "model.ipex.pt"


@dataclasses.dataclass(frozen=True)
class IpexConfig(Config):
    dtype: str = "float32"  # "bfloat16": bf16 weights for conv/linear and CPU autocast
    jit: bool = True  # trace and freeze after optimize (IPEX's fusions happen in the JIT)

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise InputError(f"ipex dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")


class IpexRunner(Runner):
    def __init__(self, module: Any, info: dict[str, Any], bf16: bool):
        self.module = module
        self._info = info
        self.bf16 = bf16
        self.compute_dtype = "bfloat16" if bf16 else None

    def infer_impl(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        with torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext():
            return self.module(*inputs)

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def save(self, directory: Path) -> list[str]:
        if not isinstance(self.module, torch.jit.ScriptModule):
            raise Unsupported("an ipex.optimize module (jit=False) has no saved form; jit=True saves TorchScript")
        torch.jit.save(self.module, str(directory / SAVED))
        return [SAVED]


class Ipex(Runtime[IpexConfig]):
    name = "ipex"
    Config = IpexConfig
    description = "Intel Extension for PyTorch: ipex.optimize + TorchScript freeze (retired upstream)"
    requires = ("intel_extension_for_pytorch",)
    devices = ("cpu",)
    keeps = ("channels_last",)

    @classmethod
    def available(cls, hw: "Hardware", device: str = "cpu") -> str | None:
        # The generic "not installed" line of `requires` would hide the point: where IPEX's
        # optimizations went, and which torch an IPEX needs. unavailable_here says both.
        if device not in cls.devices:
            return super().available(hw, device)
        return cls.unavailable_here(hw, device)

    @classmethod
    def unavailable_here(cls, hw: "Hardware", device: str) -> str | None:
        return ipex_unavailable(installed_version("torch") or hw.torch_version)

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if device != "cpu":
            return []
        # Offered wherever hone runs on a CPU: without IPEX the plan keeps them, `unsupported`
        # with the reason above, so a report says where IPEX's optimizations went.
        return [
            Variant(IpexConfig(), "ipex", "IPEX: oneDNN weight prepacking, TorchScript fusions", cost=2.0, stack=False),
            Variant(IpexConfig(dtype="bfloat16"), "ipex-bf16", "IPEX in bf16", cost=2.0, compute_dtype="bfloat16",
                    stack=False),
        ]

    def build_impl(self, model: Artifact, ctx: BuildContext) -> Runner:
        cfg = self.config
        ipex = _import_ipex()
        bf16 = cfg.dtype == "bfloat16"
        module = model.module.to("cpu").eval()
        try:
            optimized = ipex.optimize(module, dtype=torch.bfloat16 if bf16 else torch.float32,
                                      weights_prepack=True, inplace=False)
        except Exception as exc:  # noqa: BLE001 - IPEX raises many types; all mean "cannot optimize this"
            raise Unsupported(_one_line("ipex.optimize failed", exc)) from exc
        info: dict[str, Any] = {
            "backend": "ipex", **dataclasses.asdict(cfg), "ipex_version": ipex.__version__,
            "weights_prepack": True, "ipex_modules": ipex_modules(optimized),
        }
        runner_module: Any = optimized
        if cfg.jit:
            runner_module = _trace_and_freeze(optimized, ctx.example_inputs, bf16)
            info["jit_executed_ops"] = _executed_ops(runner_module, ctx.example_inputs, bf16)
        return IpexRunner(runner_module, info, bf16)

    def load(self, directory: Path, files: list[str], ctx: BuildContext) -> Runner:
        cfg = self.config
        ipex = _import_ipex()  # registers the ipex_prepack ops the saved graph calls
        module = torch.jit.load(str(directory / SAVED), map_location="cpu")
        info = {"backend": "ipex", **dataclasses.asdict(cfg), "ipex_version": ipex.__version__,
                "loaded_from": str(directory)}
        return IpexRunner(module, info, cfg.dtype == "bfloat16")


def _import_ipex() -> Any:
    reason = ipex_unavailable(installed_version("torch") or torch.__version__)
    if reason:  # never import a mismatched IPEX: its import aborts
        raise Unsupported(reason)
    return require("intel_extension_for_pytorch")


def ipex_unavailable(torch_version: str) -> str | None:
    """Why IPEX cannot run with this torch (not installed, or built for another torch), each
    reason with where its optimizations went and the pip line that would make it run; None
    when the installed IPEX matches."""
    if installed_version(DISTRIBUTION) is None:
        return f"intel_extension_for_pytorch is not installed. {RETIRED}. {install_hint(torch_version)}"
    return torch_release_mismatch(DISTRIBUTION, torch_version, f"{RETIRED}. {install_hint(torch_version)}")


def _trace_and_freeze(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], bf16: bool) -> Any:
    """IPEX's recipe: trace under the same autocast the runner uses, freeze, and run twice (the
    profiling executor applies IPEX's fusions on the first calls, not at freeze)."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    try:
        with torch.no_grad(), autocast:
            traced = torch.jit.freeze(torch.jit.trace(module, inputs, check_trace=False, strict=False))
            for _ in range(2):
                traced(*inputs)
    except Exception as exc:  # noqa: BLE001 - tracing raises many types; all mean "cannot trace"
        raise Unsupported(_one_line("TorchScript trace of the IPEX-optimized model failed", exc)) from exc
    return traced


def _executed_ops(traced: Any, inputs: tuple[torch.Tensor, ...], bf16: bool) -> dict[str, int]:
    """Op kinds of the graph TorchScript last executed (after IPEX's fusion passes), IPEX's and
    oneDNN's first: `ipex_prepack::linear_run` is a prepacked linear really running."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.no_grad(), autocast:
        traced(*inputs)
    graph = torch.jit.last_executed_optimized_graph()
    kinds = Counter(node.kind() for node in graph.nodes() if not node.kind().startswith("prim::"))
    return dict(sorted(kinds.items(), key=lambda item: (not item[0].startswith(("ipex", "torch_ipex")), item[0])))


def ipex_modules(module: torch.nn.Module) -> dict[str, int]:
    """Module types IPEX put in place of the model's layers (e.g. _IPEXLinear): the evidence
    that optimize() prepacked them."""
    found = Counter(type(m).__name__ for m in module.modules() if type(m).__module__.startswith("intel_extension"))
    return dict(sorted(found.items()))


def install_hint(torch_version: str) -> str:
    """The pip line for the IPEX release that matches this torch, or why there is none."""
    wanted = release(torch_version)
    if wanted and FIRST_ON_PYPI <= wanted <= LAST_RELEASE:
        return f"To run it: pip install {DISTRIBUTION}=={wanted[0]}.{wanted[1]}.0 (matches torch {torch_version})"
    last = f"{LAST_RELEASE[0]}.{LAST_RELEASE[1]}"
    return (f"No IPEX release supports torch {torch_version}: the last, {last}.0, needs torch {last} "
            f"(pip install torch=={last}.* {DISTRIBUTION}=={last}.0)")


def _one_line(what: str, exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{what}: {type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:500]
