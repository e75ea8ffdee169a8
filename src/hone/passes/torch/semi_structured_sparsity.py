"""2:4 semi-structured sparsity: in every group of four weights along a Linear layer's input,
the two smallest are zeroed and the layer's weight becomes a `SparseSemiStructuredTensor`,
which CUTLASS or cuSPARSELt multiply on sparse tensor cores (about half the math).

Those kernels exist only on CUDA GPUs of compute capability 8.0 and up (Ampere onwards), so the
recipe is proposed everywhere and, anywhere else, reported unavailable with that reason; it is
never attempted on a CPU. Layers whose shape the kernels do not take (rows a multiple of 32,
columns of 64, in half precision) stay dense and are listed. The model computes in float16.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING

import torch

from hone.config import Config
from hone.errors import Unsupported
from hone.passes.base import Pass
from hone.passes.torch._gates import cuda_capability_gate, cuda_capability_now
from hone.plugin import Artifact, BuildContext, Claim, Variant

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

MIN_CAPABILITY = (8, 0)
NEEDS = "2:4 semi-structured sparsity needs a CUDA GPU with compute capability 8.0 or higher (sparse tensor cores)"
# The strictest of torch's CUTLASS and cuSPARSELt shape constraints for float16 weights.
ROW_MULTIPLE, COL_MULTIPLE = 32, 64


def two_of_four_mask(weight: torch.Tensor) -> torch.Tensor:
    """True where a weight survives: the two largest by magnitude in each group of four
    consecutive weights along the input (last) dimension."""
    out_features, in_features = weight.shape
    groups = weight.abs().reshape(out_features, in_features // 4, 4)
    keep = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(out_features, in_features)


def fits_kernels(layer: torch.nn.Linear) -> bool:
    out_features, in_features = layer.weight.shape
    return out_features % ROW_MULTIPLE == 0 and in_features % COL_MULTIPLE == 0


class SparseLinear(torch.nn.Module):
    """A Linear whose weight is 2:4 sparse in float16: its input is cast to float16 for the
    sparse kernel and its output back, so the layers around it stay as they were."""

    def __init__(self, layer: torch.nn.Linear, device: str):
        super().__init__()
        from torch.sparse import to_sparse_semi_structured

        with torch.no_grad():
            weight = layer.weight.to(device, torch.float16)
            self.weight = torch.nn.Parameter(to_sparse_semi_structured(weight * two_of_four_mask(weight)),
                                             requires_grad=False)
            self.bias = None if layer.bias is None else torch.nn.Parameter(
                layer.bias.to(device, torch.float16), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x.to(torch.float16), self.weight, self.bias).to(x.dtype)


@dataclasses.dataclass(frozen=True)
class SemiStructuredConfig(Config):
    pass


class SemiStructuredSparsity(Pass[SemiStructuredConfig]):
    name = "semi_structured_sparsity"
    Config = SemiStructuredConfig
    description = "2:4 sparse Linear weights on sparse tensor cores (CUTLASS / cuSPARSELt), CUDA sm80+"
    # cpu is listed so that a CPU run reaches unavailable_here and reports the capability reason.
    devices = ("cpu", "cuda")
    stage = "prune"
    approximates = True
    # A tensor-subclass weight: eager runs it; a compiler's support is not assumed.
    produces = "torch-eager-only"

    @classmethod
    def unavailable_here(cls, hw: "Hardware", device: str) -> str | None:
        return cuda_capability_gate(hw, device, MIN_CAPABILITY, NEEDS)

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if workload is not None and workload.eval is None:
            return []  # half the weights go: only a task metric can accept it
        return [Variant(SemiStructuredConfig(), "sparse-2to4", "2:4 sparse weights on sparse tensor cores",
                        compute_dtype="float16", cost=0.5,
                        addresses={"compute": Claim(0.5, "half the multiply-adds of each sparse layer")},
                        pays_for=("compute",))]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        reason = cuda_capability_now(ctx.device, MIN_CAPABILITY, NEEDS)
        if reason:
            raise Unsupported(reason)
        module = copy.deepcopy(model.module).to(ctx.device)
        sparse, dense = [], []
        for name, layer in list(module.named_modules()):
            if not isinstance(layer, torch.nn.Linear):
                continue
            if not fits_kernels(layer):
                dense.append(f"{name} ({layer.in_features} in x {layer.out_features} out)")
                continue
            parent_name, _, child = name.rpartition(".")
            setattr(module.get_submodule(parent_name), child, SparseLinear(layer, ctx.device))
            sparse.append(name)
        if not sparse:
            raise Unsupported(f"no Linear layer has a shape the 2:4 kernels take "
                              f"(rows a multiple of {ROW_MULTIPLE}, columns of {COL_MULTIPLE})")
        notes = {"sparse_layers": len(sparse), "dense_layers": dense, "pattern": "2:4", "dtype": "float16"}
        return Artifact(self.produces, module, compute_dtype="float16", notes=notes)
