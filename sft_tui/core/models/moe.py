"""The mixture-of-experts part of a model's shape: how many experts a sparse layer holds and how many a token uses.

All experts' weights are resident in memory; a token's activations and FLOPs follow only
the `experts_per_token` experts its router picks (top-k), plus the router itself and any
shared expert every token goes through. `ModelSpec.moe` is None for dense models.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MoeShape:
    """The sparse MLP of a mixture-of-experts decoder (mixtral, qwen3_moe, gpt_oss, ...)."""

    num_experts: int  # experts per sparse layer (all resident)
    experts_per_token: int  # top-k: experts each token is routed to
    expert_intermediate_size: int  # hidden size of one expert's MLP
    shared_expert_intermediate_size: int = 0  # an always-on shared expert (0 = none)
    expert_bias: bool = False  # biases on the experts' projections (gpt_oss)
    router_bias: bool = False
    sparse_layers: tuple[int, ...] = ()  # which decoder layers are sparse; () = every layer
    fused_experts: bool = False  # experts stored as fused 3-D parameters (peft cannot put per-expert LoRA on them)

    def is_sparse(self, layer: int) -> bool:
        """Whether decoder layer `layer` (0-based) has the expert MLP (else a dense MLP of the model's intermediate_size)."""
        return not self.sparse_layers or layer in self.sparse_layers
