"""The text answer of the coupled baseline: the LLM writes the span and the boxes itself. Pure: no torch.

Format (one line; indices are SAMPLED-frame indices, i.e. rows of the sample's ``frames``)::

    span 4-9; 4:(120,340,560,780) 5:(118,338,561,779) 6:(...)

* ``span s-l``: the span's FIRST and LAST sampled frame, both inclusive. Internally spans are half-open
  ``[s, e)``, so ``l = e - 1`` is written and :func:`parse_answer` returns ``(s, l + 1)``. An inclusive last index
  is what a model (and a reader) writes naturally, and it makes an empty span unwritable.
* ``i:(x1,y1,x2,y2)``: the box on sampled frame ``i``, corners normalised to integers in ``0..1000`` as Qwen2-VL
  grounding writes them (``round(1000 * v)``, corners clipped to the frame). One item per frame carrying a box, in
  ascending frame order, separated by single spaces. The quantisation error is at most 0.0005 per coordinate.

:func:`parse_answer` is tolerant of whitespace and nothing else: anything that is not exactly this grammar, an index
outside the clip, a last index before the first, a coordinate above 1000, an inverted box, a repeated frame or no box
at all makes the answer malformed (``None``), which the evaluation counts and scores as a miss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from bridge_stg.ops.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh

COORD_SCALE = 1000
_HEAD = re.compile(r"\s*span\s*(\d+)\s*-\s*(\d+)\s*;(.*)", re.DOTALL)
_ITEM = r"(\d+)\s*:\s*\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)"
_ITEMS = re.compile(rf"\s*{_ITEM}(?:\s+{_ITEM})*\s*", re.DOTALL)
_ONE_ITEM = re.compile(_ITEM)


@dataclass(frozen=True, eq=False)
class ParsedAnswer:
    """A well-formed answer. ``span_idx`` is half-open ``[s, e)``; ``frame_idx [N]`` (int64, ascending, unique) are
    the frames with a box and ``boxes_cxcywh01 [N, 4]`` (float32) their boxes, normalised to the frame."""

    span_idx: tuple[int, int]
    frame_idx: np.ndarray
    boxes_cxcywh01: np.ndarray


def format_answer(span_idx: tuple[int, int], boxes_cxcywh01: np.ndarray, box_mask: np.ndarray) -> str:
    """The answer text of a half-open span ``[s, e)`` and the boxes ``[T, 4]`` of the frames where ``box_mask [T]``.

    Raises ``ValueError`` for an empty or negative span, mismatched lengths or no box at all (nothing to write).
    """
    start, end = int(span_idx[0]), int(span_idx[1])
    boxes = np.asarray(boxes_cxcywh01, dtype=np.float64).reshape(-1, 4)
    mask = np.asarray(box_mask, dtype=bool).reshape(-1)
    if not 0 <= start < end:
        raise ValueError(f"span {span_idx} is empty or negative; an answer needs 0 <= start < end")
    if len(boxes) != len(mask):
        raise ValueError(f"{len(boxes)} boxes but {len(mask)} mask entries")
    if not mask.any():
        raise ValueError("no frame carries a box: nothing to write")
    items = [f"{i}:({','.join(str(v) for v in _quantise(boxes[i]))})" for i in np.flatnonzero(mask)]
    return f"span {start}-{end - 1}; " + " ".join(items)


def parse_answer(text: str, num_frames: int) -> ParsedAnswer | None:
    """The answer in ``text`` for a clip of ``num_frames`` sampled frames, or ``None`` when it is malformed (module
    docstring). Leading/trailing whitespace is ignored; the text must hold nothing but the answer."""
    head = _HEAD.fullmatch(text)
    if head is None or _ITEMS.fullmatch(head.group(3)) is None:
        return None
    first, last = int(head.group(1)), int(head.group(2))
    if not first <= last < num_frames:
        return None
    items = [tuple(int(v) for v in m.groups()) for m in _ONE_ITEM.finditer(head.group(3))]
    frames = np.array([it[0] for it in items], dtype=np.int64)
    corners = np.array([it[1:] for it in items], dtype=np.float64) / COORD_SCALE
    if frames.max() >= num_frames or len(np.unique(frames)) != len(frames) or not _valid_corners(corners):
        return None
    order = np.argsort(frames)
    return ParsedAnswer((first, last + 1), frames[order], xyxy_to_cxcywh(corners[order]).astype(np.float32))


def max_answer_chars(num_frames: int) -> int:
    """An upper bound on the length of any answer :func:`format_answer` writes for ``num_frames`` frames (a bound on
    its token count too for byte-level tokenizers, which never emit more tokens than characters)."""
    digits = len(str(max(num_frames - 1, 0)))
    header = len("span -; ") + 2 * digits
    item = digits + len(":(,,,) ") + 4 * len(str(COORD_SCALE))
    return header + num_frames * item


def _quantise(box_cxcywh: np.ndarray) -> list[int]:
    corners = np.clip(cxcywh_to_xyxy(box_cxcywh), 0.0, 1.0)
    return [int(v) for v in np.rint(corners * COORD_SCALE)]


def _valid_corners(corners_N4: np.ndarray) -> bool:
    x1, y1, x2, y2 = corners_N4.T
    return bool((corners_N4 >= 0).all() and (corners_N4 <= 1).all() and (x2 >= x1).all() and (y2 >= y1).all())
