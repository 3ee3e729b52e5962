"""What the model returns. The model never computes a loss; :mod:`bridge_stg.loss.criterion` does.

Shape legend: B batch, T sampled frames, F frames sent to the spatial decoder, V candidate visual tokens per decoded
frame, Ld decoder layers, d decoder width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class BridgeSTGOutput:
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
    stats: dict[str, float] = field(default_factory=dict)  # visual_tokens, decoder_tokens, frames_decoded (per sample)
