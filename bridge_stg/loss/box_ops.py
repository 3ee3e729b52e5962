"""Differentiable box operations for the losses (torch). The numpy twins for metrics live in
:mod:`bridge_stg.ops.boxes`, which stays torch-free.

Formats: ``cxcywh`` centre + size, ``xyxy`` corners; any consistent unit (the losses use ``01``). Shapes ``[..., 4]``.
"""

from __future__ import annotations

import torch


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def paired_generalized_box_iou(a_xyxy: torch.Tensor, b_xyxy: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """GIoU of ``a[i]`` with ``b[i]`` (``[..., 4] -> [...]``), in ``[-1, 1]``.

    Boxes must be valid (``x1 <= x2``, ``y1 <= y2``). ``eps`` floors the union and enclosure areas so that
    degenerate boxes stay finite (two identical points give GIoU 0, not NaN); larger areas are exact.
    """
    area_a = (a_xyxy[..., 2] - a_xyxy[..., 0]) * (a_xyxy[..., 3] - a_xyxy[..., 1])
    area_b = (b_xyxy[..., 2] - b_xyxy[..., 0]) * (b_xyxy[..., 3] - b_xyxy[..., 1])
    inter_wh = (torch.minimum(a_xyxy[..., 2:], b_xyxy[..., 2:]) - torch.maximum(a_xyxy[..., :2], b_xyxy[..., :2]))
    inter = inter_wh.clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    hull_wh = torch.maximum(a_xyxy[..., 2:], b_xyxy[..., 2:]) - torch.minimum(a_xyxy[..., :2], b_xyxy[..., :2])
    hull = hull_wh.clamp(min=0).prod(-1)
    return inter / union.clamp(min=eps) - (hull - union) / hull.clamp(min=eps)
