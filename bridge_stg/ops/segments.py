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
