"""Temporal segments: half-open ``[start, end)`` intervals of frame ids."""

from __future__ import annotations

import numpy as np


def segment_iou(gt_start, gt_end, pred_start, pred_end):
    """tIoU of half-open segments on raw frame indices; 0 when they do not overlap.

    Accepts scalars or equally shaped arrays. Union is ``(te - ts) + (pe - ps) - overlap``, as the reference evaluator.
    """
    gt_start, gt_end, pred_start, pred_end = (np.asarray(x, dtype=np.float64) for x in
                                              (gt_start, gt_end, pred_start, pred_end))
    inter = np.minimum(gt_end, pred_end) - np.maximum(gt_start, pred_start)
    inter = np.maximum(inter, 0.0)
    union = (gt_end - gt_start) + (pred_end - pred_start) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou if iou.ndim else float(iou)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.max()
    return shifted - np.log(np.exp(shifted).sum())


def decode_span(start_logits: np.ndarray, end_logits: np.ndarray, max_len: int | None = None) -> tuple[int, int]:
    """The most likely span ``[s, e + 1)`` (frame_idx, half-open) under independent start and end distributions.

    Maximises ``log_softmax(start)[s] + log_softmax(end)[e]`` over ``s <= e`` (and ``e - s + 1 <= max_len`` frames
    when given), as TubeDETR. Ties go to the smallest ``s``, then the smallest ``e``. ``O(T^2)`` memory: fine for the
    few hundred frames a sample has.
    """
    start_T = np.asarray(start_logits, dtype=np.float64)
    end_T = np.asarray(end_logits, dtype=np.float64)
    if start_T.ndim != 1 or start_T.shape != end_T.shape or len(start_T) == 0:
        raise ValueError(f"start/end logits must be equal non-empty vectors, got {start_T.shape} and {end_T.shape}")
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be >= 1 frame, got {max_len}")
    T = len(start_T)
    length_TT = np.arange(T)[None, :] - np.arange(T)[:, None] + 1  # [s, e] -> e - s + 1
    allowed_TT = (length_TT >= 1) & (length_TT <= (T if max_len is None else max_len))
    score_TT = np.where(allowed_TT, _log_softmax(start_T)[:, None] + _log_softmax(end_T)[None, :], -np.inf)
    s, e = np.unravel_index(int(np.argmax(score_TT)), score_TT.shape)  # row-major: first maximum = earliest
    return int(s), int(e) + 1


def span_probabilities(logits_T3: np.ndarray) -> np.ndarray:
    """``[T, 3]`` probabilities from the temporal logits as span decoding reads them
    (:func:`~bridge_stg.ops.segments.decode_span`): start and end each a softmax over the T frames, inside a
    sigmoid per frame."""
    logits = np.asarray(logits_T3, dtype=np.float64).reshape(-1, 3)

    def softmax(x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max())
        return e / e.sum()

    inside = 1.0 / (1.0 + np.exp(-logits[:, 2]))
    return np.stack([softmax(logits[:, 0]), softmax(logits[:, 1]), inside], axis=-1)
