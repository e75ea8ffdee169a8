"""hf_attention: switch the transformers models inside the artifact to another attention
implementation (`eager`: matmul, softmax, matmul written out; `sdpa`: one
torch.nn.functional.scaled_dot_product_attention call, which on CPU runs the flash-attention
kernel and never holds the L x L score matrix).

transformers 5.x picks `sdpa` by default wherever the architecture supports it (hone's loaders:
hf.py's AutoModel.from_config and minilm.py's from_pretrained both get it), so the variant is
planned only where a model runs eager attention: a user's model loaded with
attn_implementation="eager", or an architecture loaded before it gained SDPA. The other
direction (sdpa -> eager) is a config, not a planned candidate: it saves nothing, but the
memory benchmark (benchmarks/attention_memory.py) needs both sides.

The notes say which SDPA backend ran (flash, memory-efficient, math, ...), read from the
profiler's op names on one forward of the example inputs."""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING

from hone.config import Config
from hone.errors import InputError, Unsupported
from hone.passes.base import Pass
from hone.passes.torch._attention import attn_implementation, backend_notes, pretrained_models, sdpa_backends
from hone.plugin import Artifact, BuildContext, Claim, Variant

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

IMPLEMENTATIONS = ("sdpa", "eager")


@dataclasses.dataclass(frozen=True)
class HfAttentionConfig(Config):
    implementation: str = "sdpa"

    def validate(self) -> None:
        if self.implementation not in IMPLEMENTATIONS:
            raise InputError(f"attention implementation {self.implementation!r} is not one of {', '.join(IMPLEMENTATIONS)}")


class HfAttention(Pass[HfAttentionConfig]):
    name = "hf_attention"
    Config = HfAttentionConfig
    description = "switch transformers models between eager and SDPA attention"
    requires = ("transformers",)
    devices = ("cpu", "cuda")
    stage = "rewrite"

    @classmethod
    def variants(cls, workload: "Workload | None", hw: "Hardware | None", device: str, fmt: str = "torch") -> list[Variant]:
        if workload is None:
            return []
        models = [m for m in pretrained_models(workload.module) if _can_switch_to_sdpa(m)]
        if not any(attn_implementation(m) == "eager" for m in models):
            return []  # no transformers model, or already on SDPA/flash attention: nothing to switch
        return [Variant(
            HfAttentionConfig("sdpa"), "hf-attn-sdpa", "transformers attention through scaled_dot_product_attention",
            cost=0.2,
            addresses={
                "memory": Claim(0.6, "fused attention never writes the L x L scores and probabilities out"),
                "overhead": Claim(0.3, "one attention op per layer instead of matmul, scale, mask, softmax, matmul"),
            },
        )]

    def apply_impl(self, model: Artifact, ctx: BuildContext) -> Artifact:
        want = self.config.implementation
        # A copy: the switch writes the model's config, which the caller's model shares (the
        # reference and every other candidate built in this process run that model).
        module = copy.deepcopy(model.module)
        models = pretrained_models(module)
        if not models:
            raise Unsupported("hf_attention: no transformers PreTrainedModel inside this model")
        switched = []
        for m in models:
            before = attn_implementation(m)
            if before == want:
                continue
            m.set_attn_implementation(want)  # recurses into sub-models; warns instead of raising
            if attn_implementation(m) != want:
                raise Unsupported(
                    f"hf_attention: {type(m).__name__} cannot switch its attention from {before} to {want}"
                    " (it does not dispatch through transformers' AttentionInterface)"
                )
            switched.append(f"{type(m).__name__}: {before} -> {want}")
        if not switched:
            raise Unsupported(f"hf_attention: every transformers model here already uses {want} attention")
        module.to(ctx.device).eval()
        notes = {"attn_implementation": want, "switched": switched,
                 **backend_notes(sdpa_backends(module, ctx.example_inputs, ctx.device))}
        return Artifact("torch", module, compute_dtype=model.compute_dtype, notes=notes)


def _can_switch_to_sdpa(model) -> bool:
    """The architecture has an SDPA path and dispatches through the AttentionInterface, so
    set_attn_implementation really changes what runs (transformers' own check)."""
    can_set = getattr(type(model), "_can_set_attn_implementation", None)
    return bool(getattr(model, "_supports_sdpa", False)) and callable(can_set) and bool(can_set())
