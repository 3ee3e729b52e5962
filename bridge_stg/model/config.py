"""Every switch of the Bridge-STG model, typed. Hydra configs map onto these dataclasses one to one.

The ablations of DESIGN.md are single fields: plain learnable decoder queries instead of bridging queries
(``bridge.enabled=false``), single- vs multi-layer bridging (``backbone_layers`` / ``decoder.layer_injection``),
temporal context in the bridge, negatives (``selection.num_negative``), token selection (``selection.keep_ratio``),
decoder depth and width, the box head, LoRA rank or full fine-tuning, a frozen vision tower.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class BackboneConfig:
    """The MLLM: a local Qwen2-VL / Qwen2.5-VL checkpoint directory and how it is trained."""

    path: str = ""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"
    gradient_checkpointing: bool = False
    freeze_vision: bool = True
    llm: Literal["lora", "full", "frozen"] = "lora"
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class TemporalHeadConfig:
    num_layers: int = 2  # bidirectional transformer layers over chunks (the LLM is causal: chunk c cannot see c+1)
    num_heads: int = 4
    motion_cue: bool = True  # concatenate the difference to the previous chunk's feature
    relevance_pooling: bool = True  # add each chunk's visual tokens pooled by their relevance to the bridging query
    position_cue: bool = True  # add where the bridging query finds the target per chunk, and its chunk-to-chunk shift
    query_conditioning: bool = True  # the pooled bridging query modulates every chunk (FiLM)
    text_pooling: bool = True  # ... plus the attention-pooled LLM states of the sentence's tokens
    motion_matching: bool = True  # the target's displacement projected on motion directions the query predicts
    motion_probes: int = 4


@dataclass(frozen=True)
class BridgeConfig:
    enabled: bool = True  # False: plain learnable decoder queries (the "no bridge" ablation)
    temporal_context: bool = True  # add the mean frame-query state inside the span (GT in training, predicted after)
    sentence: bool = True  # add the attention-pooled sentence token states to every bridging query


@dataclass(frozen=True)
class SelectionConfig:
    num_positive: int = 4  # P frames sampled inside the GT tube (training)
    num_negative: int = 2  # N frames sampled outside it (training); 0 = the "no negatives" ablation
    inference_frames: Literal["span", "all"] = "span"  # frames decoded at inference
    keep_ratio: float = 0.5  # fraction of a frame's visual tokens kept; 1.0 = the "no token selection" ablation
    feature_layer: int = -1  # LLM layer whose video-token states are the visual features


@dataclass(frozen=True)
class DecoderConfig:
    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 256
    dropout: float = 0.0
    layer_injection: Literal["multi", "last"] = "multi"  # decoder layer l gets the bridging queries of layer S[l]
    box_head: Literal["token_anchored", "detr"] = "token_anchored"
    relevance_prior: bool = True  # token_anchored: the soft arg-max adds the tokens' relevance to the bridging queries


ModelKind = Literal["bridge_stg", "coupled"]


@dataclass(frozen=True)
class BridgeSTGConfig:
    """``kind``: ``bridge_stg`` (the decoupled model) or ``coupled`` (the baseline whose LLM writes span and boxes as
    text, :mod:`bridge_stg.model.coupled`; it reads ``backbone`` and ``num_bridge_tokens`` only)."""

    kind: ModelKind = "bridge_stg"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    num_bridge_tokens: int = 4  # K
    backbone_layers: tuple[int, ...] = (-3, -2, -1)  # S, indices of LLM decoder layers (negative: from the end)
    decoder_dim: int = 128  # d
    temporal: TemporalHeadConfig = field(default_factory=TemporalHeadConfig)
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        """A model built without the config builder is checked too; the message starts with the field's path."""
        problem = self.problem()
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")

    def problem(self) -> tuple[str, str] | None:
        """The first invalid value as (field path, what is wrong and the fix), or None."""
        if not self.backbone_layers:
            return "backbone_layers", "empty: list at least one LLM layer, e.g. [-1]"
        for key, value in (("num_bridge_tokens", self.num_bridge_tokens), ("decoder.num_layers",
                                                                           self.decoder.num_layers)):
            if value < 1:
                return key, f"must be >= 1, got {value}"
        if not 0 < self.selection.keep_ratio <= 1:
            return "selection.keep_ratio", f"must be in (0, 1] (1 keeps every token), got {self.selection.keep_ratio}"
        if self.selection.num_positive < 1 or self.selection.num_negative < 0:
            return "selection.num_positive", (f"must be >= 1 and selection.num_negative >= 0, got "
                                              f"{self.selection.num_positive} and {self.selection.num_negative}")
        for key, heads in (("decoder.num_heads", self.decoder.num_heads),
                           ("temporal.num_heads", self.temporal.num_heads)):
            if heads < 1 or self.decoder_dim % heads:
                return key, f"({heads}) must divide decoder_dim ({self.decoder_dim})"
        if self.backbone.llm == "lora" and self.backbone.lora_rank < 1:
            return "backbone.lora_rank", f"must be >= 1 with backbone.llm=lora, got {self.backbone.lora_rank}"
        return None
