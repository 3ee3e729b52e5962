"""Floating-point operations of one training sample, forward and backward.

Forward (a multiply-add is 2 FLOPs):

* **Matmuls**: ``2 x tokens x weights`` of every Linear a token passes (weights counted on the meta-built model).
  Vision: every patch through the patch embedding and the ViT blocks, every merged token (4 patches) through the
  merger. LLM: every token of the sequence through every decoder layer (LoRA's A and B included). The LM head does not
  run: Bridge-STG reads layer states, never vocabulary logits.
* **Attention** (scores and the weighted sum): ``4 x queries x keys x width`` per layer. LLM: causal over the
  sequence of L tokens, ``4 x q_dim x L(L+1)/2``. Vision: each 2-frame chunk is its own one-step video, so attention
  stays inside a chunk: full over the chunk's patches in every Qwen2-VL block and in Qwen2.5-VL's full-attention
  blocks; over 112x112-px windows (64 patches) in Qwen2.5-VL's other blocks.
* **Heads**: an upper bound of ``2 x visual tokens x head parameters`` (under 0.5 % of the total).

Backward, by the rule of the usual ``6 N D`` accounting: a layer whose **weights train** costs 2x its forward (the
input gradient and the weight gradient); a frozen layer that gradients must **pass through** costs 1x (input
gradient only); a frozen part with nothing trainable below it costs 0. So: the vision tower 2x when trained, else 0
(it is the first stage); the LLM 2x with ``llm=full``, 1x otherwise (gradients must reach the LoRA weights and the
grounding-token rows at its input) plus 2x LoRA's own matmuls; the heads 2x.

Gradient checkpointing recomputes the forward of every checkpointed layer once more during backward (the LLM, and
the vision tower when it trains); that is reported as ``recompute`` and counted in the time estimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bridge_stg.model.config import BridgeSTGConfig
from bridge_stg.plan.model_size import ModelShape, ParameterCounts
from bridge_stg.plan.tokens import MERGE, SampleTokens


@dataclass(frozen=True)
class SampleFlops:
    vision_forward: float
    llm_forward: float
    heads_forward: float
    backward: float
    recompute: float

    @property
    def forward(self) -> float:
        return self.vision_forward + self.llm_forward + self.heads_forward

    @property
    def model(self) -> float:
        """Forward + backward (what model-FLOPs utilisation counts)."""
        return self.forward + self.backward

    @property
    def executed(self) -> float:
        """Model FLOPs plus the checkpointing recompute (what the GPU runs)."""
        return self.model + self.recompute

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "forward": self.forward, "model": self.model, "executed": self.executed}


def vision_forward(shape: ModelShape, tokens: SampleTokens) -> float:
    """Vision tower + merger forward FLOPs of one sample."""
    p, chunk = tokens.patches, tokens.patches_per_chunk
    matmul = 2 * p * (shape.patch_embed_params + shape.vision_matmul_params)
    merger = 2 * (p // MERGE ** 2) * shape.merger_matmul_params
    windowed = shape.vision_depth - shape.vision_full_blocks
    window = min(shape.vision_window_patches, chunk) if windowed else 0
    attention = 4 * p * shape.vision_q_dim * (shape.vision_full_blocks * chunk + windowed * window)
    return float(matmul + merger + attention)


def llm_forward(shape: ModelShape, sequence: int) -> float:
    """LLM decoder forward FLOPs over one sequence (LoRA included, no LM head)."""
    matmul = 2 * sequence * (shape.llm_matmul_params + shape.lora_params)
    attention = shape.layers * 4 * shape.q_dim * sequence * (sequence + 1) / 2
    return float(matmul + attention)


def sample_flops(cfg: BridgeSTGConfig, counts: ParameterCounts, shape: ModelShape,
                 tokens: SampleTokens) -> SampleFlops:
    """Forward, backward and recompute FLOPs of one sample (module docstring)."""
    vision = vision_forward(shape, tokens)
    llm = llm_forward(shape, tokens.sequence)
    lora = 2.0 * tokens.sequence * shape.lora_params
    heads = 2.0 * tokens.visual * counts.heads
    backbone = cfg.backbone
    vision_trains = not backbone.freeze_vision
    if backbone.llm == "full":
        llm_backward = 2 * llm
    else:
        llm_backward = (llm - lora) + 2 * lora
    backward = (2 * vision if vision_trains else 0.0) + llm_backward + 2 * heads
    recompute = (llm + (vision if vision_trains else 0.0)) if backbone.gradient_checkpointing else 0.0
    return SampleFlops(vision, llm, heads, backward, recompute)
