"""The torch records that data, model and loss exchange: the collated batch the models read and what they return.

They live below all three packages (this module imports torch and nothing else of the project), so that the collator
(:mod:`bridge_stg.data.collate`) builds a :class:`GroundingBatch`, the models read it and return a
:class:`BridgeSTGOutput` or a :class:`CoupledOutput`, and the criterion (:mod:`bridge_stg.loss.criterion`) reads both,
without one of those packages importing another. The models never weigh losses; the criterion does.

Shape legend: B batch, L padded sequence length, T sampled frames (padded to the batch max), C = T/2 chunks, V visual
tokens per chunk (the candidate tokens of a decoded frame are its chunk's), K bridge tokens, P vision patches of the
whole batch, N chunks of the whole batch (the sum of C over samples), F decoded frames, Ld decoder layers, d decoder
width.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch


@dataclass
class GroundingBatch:
    """A collated batch. Positions index the padded sequence (``L``); -1 marks padding in position tensors.

    ``model_inputs`` is exactly what ``Qwen2(_5)VLForConditionalGeneration.forward`` takes: ``input_ids [B, L]``,
    ``attention_mask [B, L]``, ``mm_token_type_ids [B, L]``, ``pixel_values_videos [P, 3*2*14*14]``,
    ``video_grid_thw [N, 3]``, ``second_per_grid_ts [N]`` (Qwen2.5-VL only), ``labels [B, L]`` (``with_answers``).
    ``span`` is ``[start, end)`` in sampled-frame indices, ``(0, 0)`` where ``has_span`` is False.
    """

    model_inputs: dict[str, torch.Tensor]
    frame_query_pos: torch.Tensor  # long [B, C]
    chunk_mask: torch.Tensor  # bool [B, C]
    bridge_pos: torch.Tensor  # long [B, K]
    video_token_pos: torch.Tensor  # long [B, C, V], row-major over the chunk's (H/28, W/28) token grid
    video_token_mask: torch.Tensor  # bool [B, C, V]
    grid_hw: torch.Tensor  # long [B, 2]: LLM token grid (H/28, W/28) of every chunk of the sample
    query_mask: torch.Tensor  # bool [B, L]: the sentence's tokens in the prompt
    span: torch.Tensor  # long [B, 2]
    has_span: torch.Tensor  # bool [B]
    boxes_cxcywh01: torch.Tensor  # float32 [B, T, 4]
    box_mask: torch.Tensor  # bool [B, T]
    frame_mask: torch.Tensor  # bool [B, T]
    meta: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.meta)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> GroundingBatch:
        """A copy with every tensor on ``device`` (``meta`` is shared)."""

        def move(x: Any) -> Any:
            return x.to(device, non_blocking=non_blocking) if isinstance(x, torch.Tensor) else x

        values = {f.name: move(getattr(self, f.name)) for f in fields(self) if f.name != "model_inputs"}
        return GroundingBatch(model_inputs={k: move(v) for k, v in self.model_inputs.items()}, **values)


@dataclass
class BridgeSTGOutput:
    """What :class:`~bridge_stg.model.bridge_stg.BridgeSTG` returns (never a loss)."""

    temporal_logits: torch.Tensor  # [B, T, 3]: start, end, inside logits per sampled frame
    frame_mask: torch.Tensor  # bool [B, T]: real (not padded) frames
    decoded_frames: torch.Tensor  # long [B, F]: indices into T of the frames the spatial decoder saw (-1: padding)
    decoded_mask: torch.Tensor  # bool [B, F]
    boxes_cxcywh01: torch.Tensor  # [Ld, B, F, 4] per decoder layer (the last is the prediction), in [0, 1]
    objectness_logits: torch.Tensor  # [Ld, B, F]
    token_logits: torch.Tensor | None = None  # [B, F, V] relevance of every candidate token (before top-k)
    token_centers01: torch.Tensor | None = None  # [B, F, V, 2] (x, y) centre of each candidate token's cell
    token_mask: torch.Tensor | None = None  # bool [B, F, V]
    token_cell01: torch.Tensor | None = None  # [B, 2] (w, h) of one token cell
    bridge_pooled: torch.Tensor | None = None  # [B, d] pooled bridging query (contrastive anchor)
    frame_embeddings: torch.Tensor | None = None  # [B, T, d] per-frame features (contrastive keys)
    lm_loss: torch.Tensor | None = None  # scalar, when the batch carried text answers
    query_motion_B2: torch.Tensor | None = None  # [B, 2] the motion the sentence describes, read from the text alone
    span_idx: torch.Tensor | None = None  # long [B, 2] predicted span [start, end) in T, decoded in eval mode only
    stats: dict[str, float] = field(default_factory=dict)  # visual_tokens, decoder_tokens, frames_decoded (per sample)


@dataclass
class CoupledOutput:
    """What :class:`~bridge_stg.model.coupled.CoupledBaseline` returns: the LM loss of its text answers, which is its
    whole objective (:class:`~bridge_stg.loss.criterion.CoupledCriterion` passes it through, unweighted)."""

    lm_loss: torch.Tensor  # scalar: mean next-token cross-entropy of the answer tokens
    stats: dict[str, float] = field(default_factory=dict)  # answer_tokens (per sample)
