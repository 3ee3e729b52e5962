"""Consistency checks of one sentence record, reported in terms of the source file's fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bridge_stg.annotations.errors import Where
from bridge_stg.structures import SentenceRecord

DEFAULT_BOX_MARGIN = 0.1
# (frame id, index among the record's boxes or None) -> the source field holding that box
BoxField = Callable[[int, int | None], str]


@dataclass(frozen=True)
class SourceFields:
    """The source field behind each record field, for messages. ``boxes(frame_id, index)`` names the box of a
    frame (``index``: its position among the record's boxes, None for a frame without a box)."""

    segment: str
    tube: str
    boxes: BoxField
    fps: str = "fps"
    frame_count: str = "frame_count"
    width: str = "width"
    height: str = "height"


def check_record(
    record: SentenceRecord,
    where: Where,
    fields: SourceFields,
    *,
    box_margin: float = DEFAULT_BOX_MARGIN,
    boxes_loaded: bool = True,
) -> None:
    """Raise :class:`AnnotationError` unless ``record`` is self-consistent.

    Checks: positive fps, frame count and frame size; a non-empty segment inside ``[0, frame_count]``; a
    non-empty tube inside the segment; finite boxes with ``x1 <= x2``, ``y1 <= y2`` and no coordinate more
    than ``box_margin`` times the frame size beyond the frame; when ``boxes_loaded``, a box on every tube
    frame. Query-only records (no tube) are not checked here.
    """
    if record.tube is None:
        return
    _check_video(record, where, fields)
    segment = _check_span(record.segment, where, fields.segment)
    if segment[0] < 0 or segment[1] > record.frame_count:
        raise where.error(fields.segment, f"segment [{segment[0]}, {segment[1]}) lies outside the video's "
                                          f"frames [0, {record.frame_count})")
    tube = _check_span(record.tube, where, fields.tube)
    if tube[0] < segment[0] or tube[1] > segment[1]:
        raise where.error(fields.tube, f"tube [{tube[0]}, {tube[1]}) lies outside the segment "
                                       f"[{segment[0]}, {segment[1]})")
    _check_boxes(record, where, fields.boxes, box_margin)
    if boxes_loaded:
        _check_tube_covered(record, where, fields.boxes)


def _check_video(record: SentenceRecord, where: Where, fields: SourceFields) -> None:
    if not record.fps > 0:
        raise where.error(fields.fps, f"frame rate {record.fps} is not positive")
    if record.frame_count <= 0:
        raise where.error(fields.frame_count, f"frame count {record.frame_count} is not positive")
    if record.width <= 0:
        raise where.error(fields.width, f"frame width {record.width} is not positive")
    if record.height <= 0:
        raise where.error(fields.height, f"frame height {record.height} is not positive")


def _check_span(span: tuple[int, int], where: Where, field: str) -> tuple[int, int]:
    start, end = span
    if end < start:
        raise where.error(field, f"end before start: [{start}, {end}) (half-open, 0-based frame ids)")
    if end == start:
        raise where.error(field, f"empty span [{start}, {end}) (half-open, 0-based frame ids)")
    return start, end


def _check_boxes(record: SentenceRecord, where: Where, field: BoxField, margin: float) -> None:
    boxes = record.boxes_xyxy_px
    if len(boxes) == 0:
        return

    def fail(bad: np.ndarray, problem: str) -> None:
        i = int(np.flatnonzero(bad)[0])
        frame = int(record.box_frame_ids[i])
        box = [round(float(v), 3) for v in boxes[i]]
        raise where.error(field(frame, i),
                          f"{problem} on frame {frame}: xyxy {box} ({int(bad.sum())} such boxes)")

    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        fail(~finite, "non-finite (NaN or infinite) box value")
    reversed_ = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if reversed_.any():
        fail(reversed_, "box with negative width or height")
    w, h = record.width, record.height
    lo = np.array([-margin * w, -margin * h, -margin * w, -margin * h])
    hi = np.array([(1 + margin) * w, (1 + margin) * h, (1 + margin) * w, (1 + margin) * h])
    outside = ((boxes < lo) | (boxes > hi)).any(axis=1)
    if outside.any():
        fail(outside, f"box far outside the {w}x{h} frame (more than {margin:.0%} of its size beyond it)")


def _check_tube_covered(record: SentenceRecord, where: Where, field: BoxField) -> None:
    """Box frame ids are sorted and unique, so the tube is covered when it holds ``te - ts`` of them."""
    assert record.tube is not None
    ts, te = record.tube
    if np.searchsorted(record.box_frame_ids, te) - np.searchsorted(record.box_frame_ids, ts) == te - ts:
        return
    frames = np.arange(ts, te, dtype=np.int64)
    missing = np.setdiff1d(frames, record.box_frame_ids)
    target = "" if record.target_id is None else f" of target {record.target_id}"
    raise where.error(field(int(missing[0]), None),
                      f"no box{target} on {len(missing)} of the {len(frames)} tube frames [{ts}, {te}), "
                      f"first missing: {missing[:5].tolist()}")
