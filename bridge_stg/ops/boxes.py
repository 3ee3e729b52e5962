"""Box conversions and IoU. Names carry the format: ``xyxy`` corners, ``xywh`` corner + size, ``cxcywh`` centre + size;
``_px`` absolute pixels, ``01`` normalised to the frame."""

from __future__ import annotations

import numpy as np


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:4]], axis=-1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([boxes[..., :2], boxes[..., 2:4] - boxes[..., :2]], axis=-1)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Centre + size -> corners, in the unit of the input (``01`` or ``_px``)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([boxes[..., :2] - boxes[..., 2:4] / 2, boxes[..., :2] + boxes[..., 2:4] / 2], axis=-1)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """Corners -> centre + size, in the unit of the input (``01`` or ``_px``)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([(boxes[..., :2] + boxes[..., 2:4]) / 2, boxes[..., 2:4] - boxes[..., :2]], axis=-1)


def make_valid_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Sort each box's corners so that ``x1 <= x2`` and ``y1 <= y2`` (a degenerate prediction becomes a valid box).

    No clipping to the frame: the reference evaluator does not clip, and clipping would change IoU.
    """
    b = np.asarray(boxes, dtype=np.float64)
    return np.stack([np.minimum(b[..., 0], b[..., 2]), np.minimum(b[..., 1], b[..., 3]),
                     np.maximum(b[..., 0], b[..., 2]), np.maximum(b[..., 1], b[..., 3])], axis=-1)


def paired_box_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """IoU of ``a[i]`` with ``b[i]`` (shapes ``[..., 4]``), continuous coordinates, area ``(x2-x1)*(y2-y1)``.

    Inputs must already be valid (``x1 <= x2``); zero-area pairs give 0, never NaN.
    """
    a = np.asarray(a_xyxy, dtype=np.float64)
    b = np.asarray(b_xyxy, dtype=np.float64)
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    safe = np.where(union > 0, union, 1.0)
    return np.where(union > 0, inter / safe, 0.0)
