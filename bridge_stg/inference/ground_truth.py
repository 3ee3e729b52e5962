"""A ground-truth tube for one grounded video (``bridge-stg-ground --gt-json``), and how a prediction compares.

The file is small JSON: the span as half-open original frame ids and, optionally, boxes by frame id (``xyxy`` in
pixels of the original frame)::

    {"span_frames": [120, 250], "boxes": {"120": [10, 20, 110, 220], "121": [12, 20, 112, 221]}}

Numpy only: it is read before the model is loaded, so that a bad file fails at once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bridge_stg.ops.boxes import make_valid_xyxy, paired_box_iou
from bridge_stg.ops.segments import segment_iou

GT_KEYS = ("span_frames", "boxes")
GT_FORMAT_HELP = ('{"span_frames": [start, end_exclusive], "boxes": {"<frame_id>": [x1, y1, x2, y2], ...}} '
                  "(0-based original frame ids, pixels of the original frame; boxes optional)")


class GroundTruthError(ValueError):
    """A ground-truth file that cannot be used; the message names the file, the field and the expected format."""


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """A GT span ``[start, end)`` (original frame ids) and boxes ``{frame id: xyxy px}`` (any frames)."""

    span_frames: tuple[int, int]
    boxes: dict[int, np.ndarray] = field(default_factory=dict)

    def span_s(self, fps: float) -> tuple[float, float]:
        return self.span_frames[0] / fps, self.span_frames[1] / fps

    def to_json(self) -> dict[str, Any]:
        return {"span_frames": list(self.span_frames),
                "boxes": {str(f): [float(v) for v in b] for f, b in sorted(self.boxes.items())}}


def read_gt_json(path: str | Path) -> GroundTruth:
    """Read and check a ground-truth file (module docstring); any problem raises :class:`GroundTruthError` in one
    line naming the file and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise GroundTruthError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise GroundTruthError(f"{path}: cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise GroundTruthError(f"{path}: not JSON ({err.msg} at line {err.lineno} column {err.colno}); expected "
                               f"{GT_FORMAT_HELP}") from None
    return parse_ground_truth(data, str(path))


def parse_ground_truth(data: Any, where: str = "ground truth") -> GroundTruth:
    """:class:`GroundTruth` from parsed JSON; ``where`` names the source in errors."""
    def fail(problem: str) -> GroundTruthError:
        return GroundTruthError(f"{where}: {problem}; expected {GT_FORMAT_HELP}")

    if not isinstance(data, dict):
        raise fail(f"the top level is a {type(data).__name__}, not an object")
    unknown = sorted(set(data) - set(GT_KEYS))
    if unknown:
        raise fail(f"unknown key(s) {unknown}")
    span = data.get("span_frames")
    if not (isinstance(span, list) and len(span) == 2 and all(_is_int(v) for v in span)):
        raise fail(f"span_frames must be two integers, got {span!r}")
    start, end = int(span[0]), int(span[1])
    if not 0 <= start < end:
        raise fail(f"span_frames [{start}, {end}] is not a half-open span with 0 <= start < end")
    boxes_in = data.get("boxes", {})
    if not isinstance(boxes_in, dict):
        raise fail(f"boxes must be an object of frame id -> box, got a {type(boxes_in).__name__}")
    boxes: dict[int, np.ndarray] = {}
    for key, box in boxes_in.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit()):
            raise fail(f"boxes key {key!r} is not a frame id (a non-negative integer in a string)")
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            raise fail(f"boxes[{key!r}] must be 4 finite numbers x1, y1, x2, y2, got {box!r}")
        boxes[int(key)] = make_valid_xyxy(np.asarray(box, dtype=np.float64))
    return GroundTruth((start, end), boxes)


def compare(span_frames: tuple[int, int], boxes_by_frame: dict[int, np.ndarray], gt: GroundTruth) -> dict[str, Any]:
    """How a predicted tube (its span and its boxes by frame) compares with ``gt``, on every frame:

    ``tiou`` (half-open spans on frame ids, the metric's definition); ``viou`` = sum of box IoUs over the frames in
    both spans / frames in their union, as the dense protocols score (``None`` unless ``gt`` has a box on every frame
    of its span); ``mean_box_iou`` over the GT boxes inside the predicted span and ``box_frames`` their count (the
    spatial quality where both have a box; ``None`` without such frames)."""
    (ps, pe), (gs, ge) = span_frames, gt.span_frames
    out: dict[str, Any] = {"tiou": float(segment_iou(gs, ge, ps, pe))}
    frames = [f for f in sorted(gt.boxes) if f in boxes_by_frame]
    ious = paired_box_iou(np.array([gt.boxes[f] for f in frames]).reshape(-1, 4),
                          make_valid_xyxy(np.array([boxes_by_frame[f] for f in frames]).reshape(-1, 4)))
    out["mean_box_iou"] = float(ious.mean()) if frames else None
    out["box_frames"] = len(frames)
    if all(f in gt.boxes for f in range(gs, ge)):
        inside = [iou for f, iou in zip(frames, ious) if gs <= f < ge]
        union = max(pe, ge) - min(ps, gs) if min(pe, ge) > max(ps, gs) else (pe - ps) + (ge - gs)
        out["viou"] = float(sum(inside) / union) if union > 0 else 0.0
    else:
        out["viou"] = None
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
