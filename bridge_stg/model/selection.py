"""Query-guided selection (QGSL): which frames reach the spatial decoder, and which of their tokens.

Shapes: B batch, T sampled frames, F selected frames, V candidate tokens per frame, k kept tokens.
Temporal redundancy: training decodes P frames sampled inside the GT tube (with a box) and N frames outside the GT
span; inference decodes the frames of the predicted span (or all frames). Spatial redundancy: a frame keeps the
top ``ceil(keep_ratio * V)`` tokens by relevance to the bridging queries.
"""

from __future__ import annotations

import math

import torch


def _pick(candidates_BT: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """Up to ``count`` random True positions per row: indices ``[B, count]`` (-1 where a row has fewer)."""
    noise = torch.rand(candidates_BT.shape, generator=generator, device=candidates_BT.device)
    score = torch.where(candidates_BT, noise, torch.full_like(noise, -1.0))
    top = score.topk(min(count, candidates_BT.shape[1]), dim=1)
    idx = torch.where(top.values >= 0, top.indices, torch.full_like(top.indices, -1))
    return pad_missing(idx, count)


def pad_missing(idx: torch.Tensor, width: int) -> torch.Tensor:
    """Right-pad index rows ``[B, n]`` to ``[B, width]`` with -1, the "no index" marker."""
    if idx.shape[1] >= width:
        return idx
    return torch.cat([idx, idx.new_full((idx.shape[0], width - idx.shape[1]), -1)], dim=1)


def inside_span(span_B2: torch.Tensor, num_frames: int) -> torch.Tensor:
    """bool ``[B, T]``: frame t is inside ``[span0, span1)``."""
    t = torch.arange(num_frames, device=span_B2.device)
    return (t[None] >= span_B2[:, :1]) & (t[None] < span_B2[:, 1:])


def select_training_frames(box_mask_BT: torch.Tensor, span_B2: torch.Tensor, has_span_B: torch.Tensor,
                           frame_mask_BT: torch.Tensor, num_positive: int, num_negative: int,
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """P positives (frames with a GT box) and N negatives (valid frames outside the GT span) per sample.

    Returns sorted frame indices ``[B, P + N]`` (-1 padded) and their mask. Samples without a span (images) get no
    negatives; samples without boxes (temporal-only sources) get no positives.
    """
    pos = _pick(box_mask_BT & frame_mask_BT, num_positive, generator)
    outside = frame_mask_BT & ~inside_span(span_B2, box_mask_BT.shape[1]) & has_span_B[:, None]
    neg = _pick(outside, num_negative, generator) if num_negative > 0 else pos[:, :0]
    idx = torch.cat([pos, neg], dim=1)
    idx = torch.where(idx < 0, torch.full_like(idx, torch.iinfo(idx.dtype).max), idx).sort(dim=1).values
    idx = torch.where(idx == torch.iinfo(idx.dtype).max, torch.full_like(idx, -1), idx)
    return idx, idx >= 0


def select_inference_frames(span_B2: torch.Tensor, frame_mask_BT: torch.Tensor,
                            mode: str = "span") -> tuple[torch.Tensor, torch.Tensor]:
    """Frames of the predicted span (``mode="span"``) or every valid frame (``"all"``): ``[B, F]`` indices + mask."""
    chosen = frame_mask_BT if mode == "all" else frame_mask_BT & inside_span(span_B2, frame_mask_BT.shape[1])
    width = max(int(chosen.sum(1).max()), 1)
    order = torch.where(chosen, torch.arange(chosen.shape[1], device=chosen.device)[None], chosen.shape[1])
    idx = order.sort(dim=1).values[:, :width]
    mask = idx < chosen.shape[1]
    return torch.where(mask, idx, torch.full_like(idx, -1)), mask


def keep_count(num_tokens: int, keep_ratio: float) -> int:
    return max(1, math.ceil(keep_ratio * num_tokens))


def select_tokens(scores_BFV: torch.Tensor, token_mask_BFV: torch.Tensor,
                  keep_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``[B, F, k]`` of the top-scoring valid tokens per frame, and their mask (k from the widest frame)."""
    k = keep_count(scores_BFV.shape[-1], keep_ratio)
    masked = scores_BFV.masked_fill(~token_mask_BFV, float("-inf"))
    top = masked.topk(k, dim=-1)
    valid_counts = token_mask_BFV.sum(-1, keepdim=True)
    per_frame_k = torch.ceil(valid_counts.float() * keep_ratio).clamp(min=1).long()
    rank = torch.arange(k, device=scores_BFV.device)
    return top.indices, (rank < per_frame_k) & torch.isfinite(top.values)
