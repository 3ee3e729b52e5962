"""HC-STVG: the official v1/v2 files, the v2 query file, and TubeDETR's preprocessed ``*_proc.json``.

Official files are dicts keyed by video file name, one sentence per video; ``sentence_id`` is the key's
position in the file (so it equals the ``video_id`` of TubeDETR's ``*_proc.json``), also for excluded or
skipped keys. ``st_frame`` is 1-based: the tube is ``[st_frame - 1, st_frame - 1 + len(bbox))`` in 0-based
frame ids and ``bbox[i]`` (``xywh``) lies on frame ``st_frame - 1 + i``; records keep
``annotation_frame_base=1`` and ``source_tube_end="inclusive"`` so protocols can reproduce evaluators that
read the numbers literally. HC-STVG clips last 20 s, and no file states the frame rate: ``fps = img_num / 20``
as in the reference evaluator. The segment is the whole clip ``[0, img_num)``. ``st_time``/``ed_time`` do not
enter the records: reversed times are an error, and an ``ed_time`` that does not end the tube the boxes span
(within :data:`TUBE_END_TOLERANCE`) is a ``box_count`` warning of the load report.

The query file (``{video_name: caption}``) has no ground truth and no video facts: records get ``tube=None``,
no boxes, and ``frame_count=0``, ``fps=0.0``, ``width=height=0``, ``segment=(0, 0)`` -- unknown until the
video is opened.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bridge_stg.annotations.errors import Where
from bridge_stg.annotations.parsing import (
    get_float,
    get_int,
    get_list,
    get_sentence,
    get_str,
    number_rows,
    read_only,
    tubedetr_entry_id,
    video_stem,
    write_json,
)
from bridge_stg.annotations.report import Collector
from bridge_stg.annotations.validate import DEFAULT_BOX_MARGIN, BoxField, SourceFields, check_record
from bridge_stg.ops.boxes import xywh_to_xyxy, xyxy_to_xywh
from bridge_stg.structures import SentenceRecord

CLIP_SECONDS = 20.0
V2_KEYS = ("img_size", "English")
# ed_time * fps may mark the tube's exclusive end or its last frame, and the release rounds its times: an ed_time
# within [end - 1 - tolerance, end + tolerance] frames agrees with a tube [start, end) of len(bbox) frames.
TUBE_END_TOLERANCE = 0.5
BOX_COUNT_FIX = ("give bbox one box per tube frame, from st_frame to the frame of ed_time (the tube is read from "
                 "the boxes), or correct ed_time")


def is_v2_entry(entry: dict) -> bool:
    return any(key in entry for key in V2_KEYS)


def _boxes_on_tube(rows: list, tube_start: int, where: Where, field: str) -> tuple[np.ndarray, np.ndarray]:
    boxes = xywh_to_xyxy(number_rows(rows, 4, where, field))
    frame_ids = np.arange(tube_start, tube_start + len(boxes), dtype=np.int64)
    return read_only(frame_ids), read_only(boxes)


def _list_field(name: str) -> BoxField:
    """Names the box of a tube frame in a per-tube-frame list such as ``bbox``."""

    def field(frame: int, index: int | None) -> str:
        return name if index is None else f"{name}[{index}]"

    return field


# -------------------------------------------------------------------------------------- official files


def read_hcstvg_official(
    data: dict,
    path: Path,
    collect: Collector,
    dataset: str,
    version: int,
    box_margin: float = DEFAULT_BOX_MARGIN,
) -> None:
    """Add a record per key of an official HC-STVG ``version`` (1 or 2) file to ``collect``."""
    for index, (name, entry) in enumerate(data.items()):
        where = Where(path, index, video_stem(name), (index,))
        collect.entry(where, _official_record, name, entry, where, dataset, version, box_margin, collect)


def _official_record(
    name: str, entry: Any, where: Where, dataset: str, version: int, box_margin: float, collect: Collector
) -> SentenceRecord:
    if not isinstance(entry, dict):
        raise where.error("<entry>", f"expected a JSON object, got {type(entry).__name__}")
    img_num = get_int(entry, "img_num", where)
    times = _times(entry, where, "st_time", "ed_time")
    if version == 2:
        query = get_sentence(entry, "English", where)
        height, width = _img_size(entry, where)
        size_fields = {"width": "img_size[1]", "height": "img_size[0]"}
    else:
        query = get_sentence(entry, "caption", where)
        width, height = get_int(entry, "width", where), get_int(entry, "height", where)
        size_fields = {}
    tube_start = get_int(entry, "st_frame", where) - 1
    frame_ids, boxes = _boxes_on_tube(get_list(entry, "bbox", where), tube_start, where, "bbox")
    rec = SentenceRecord(
        sentence_id=where.sentence_ids[0],
        dataset=dataset,
        video_id=video_stem(name),
        video_path=name,
        fps=img_num / CLIP_SECONDS,
        frame_count=img_num,
        width=width,
        height=height,
        segment=(0, img_num),
        tube=(tube_start, tube_start + len(boxes)),
        query=query,
        box_frame_ids=frame_ids,
        boxes_xyxy_px=boxes,
        annotation_frame_base=1,
        source_tube_end="inclusive",
    )
    fields = SourceFields(segment="img_num", tube="st_frame/bbox", boxes=_list_field("bbox"), fps="img_num",
                          frame_count="img_num", **size_fields)
    check_record(rec, where, fields, box_margin=box_margin)
    if times is not None:
        _flag_box_count(rec, times[1], where, collect)
    return rec


def _times(entry: dict, where: Where, start_key: str, end_key: str) -> tuple[float, float] | None:
    """(start, end) seconds of an entry that states both (None otherwise); reversed times are an error."""
    if start_key not in entry or end_key not in entry:
        return None
    start, end = get_float(entry, start_key, where), get_float(entry, end_key, where)
    if start > end:
        raise where.error(f"{start_key}/{end_key}", f"{start_key} {start:g} s is after {end_key} {end:g} s: the "
                                                    "entry's times are reversed")
    return start, end


def _flag_box_count(rec: SentenceRecord, ed_time: float, where: Where, collect: Collector) -> None:
    """Warn when ``ed_time`` does not end the tube that the boxes span (see :data:`TUBE_END_TOLERANCE`)."""
    assert rec.tube is not None
    start, end = rec.tube
    ed_frame = ed_time * rec.fps
    if end - 1 - TUBE_END_TOLERANCE <= ed_frame <= end + TUBE_END_TOLERANCE:
        return
    what = "boxes are missing" if ed_frame > end else "boxes lie past ed_time"
    collect.warn(where, "box_count", "bbox",
                 f"{end - start} boxes make the tube frames [{start}, {end}), but ed_time {ed_time:g} s is frame "
                 f"{ed_frame:.1f} at {rec.fps:g} fps: {what}", BOX_COUNT_FIX)


def _img_size(entry: dict, where: Where) -> tuple[int, int]:
    size = get_list(entry, "img_size", where)
    if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in size):
        raise where.error("img_size", f"expected [height, width] integers, got {size!r}")
    return size[0], size[1]


# ------------------------------------------------------------------------------------------ query file


def read_hcstvg_queries(data: dict, path: Path, collect: Collector, dataset: str) -> None:
    """Add a query-only record per key of ``{video_name: caption}`` data (``query_v2.json``)."""
    for index, (name, caption) in enumerate(data.items()):
        where = Where(path, index, video_stem(name), (index,))
        collect.entry(where, _query_record, name, caption, where, dataset)


def _query_record(name: str, caption: Any, where: Where, dataset: str) -> SentenceRecord:
    if not isinstance(caption, str):
        raise where.error("caption", f"expected the caption string, got {type(caption).__name__}")
    if not caption.strip():
        raise where.error("caption", "empty caption")
    return SentenceRecord(
        sentence_id=where.sentence_ids[0],
        dataset=dataset,
        video_id=video_stem(name),
        video_path=name,
        fps=0.0,
        frame_count=0,
        width=0,
        height=0,
        segment=(0, 0),
        tube=None,
        query=caption,
        annotation_frame_base=1,
        source_tube_end="inclusive",
    )


# -------------------------------------------------------------------------------- TubeDETR *_proc.json


def read_tubedetr_hcstvg(
    entries: list, path: Path, collect: Collector, dataset: str, box_margin: float = DEFAULT_BOX_MARGIN
) -> None:
    """Add a record per element of TubeDETR's preprocessed HC-STVG list (``*_proc.json``) to ``collect``.

    ``tube_start_frame`` there is the 1-based ``st_frame`` and ``tube_end_frame`` its exclusive end;
    ``trajectory`` holds one ``xywh`` box per tube frame. ``dataset`` ("hcstvg_v1"/"hcstvg_v2") cannot be told
    from the file.
    """
    seen: dict[int, int] = {}
    for index, entry in enumerate(entries):
        sid = entry.get("video_id") if isinstance(entry, dict) else None
        vid = entry.get("original_video_id") if isinstance(entry, dict) else None
        where = Where(path, index, video_stem(vid) if isinstance(vid, str) else "?",
                      (sid,) if type(sid) is int else ())
        collect.entry(where, _proc_record, entry, where, dataset, seen, box_margin)


def _proc_record(
    entry: Any, where: Where, dataset: str, seen: dict[int, int], box_margin: float
) -> SentenceRecord:
    sentence_id = tubedetr_entry_id(entry, where, seen)
    frame_count = get_int(entry, "frame_count", where)
    _times(entry, where, "tube_start_time", "tube_end_time")
    tube = (get_int(entry, "tube_start_frame", where) - 1, get_int(entry, "tube_end_frame", where) - 1)
    frame_ids, boxes = _boxes_on_tube(get_list(entry, "trajectory", where), tube[0], where, "trajectory")
    if len(boxes) != tube[1] - tube[0] and tube[1] > tube[0]:
        raise where.error("trajectory", f"{len(boxes)} boxes for a tube of {tube[1] - tube[0]} frames "
                                        f"(tube_start_frame..tube_end_frame)")
    rec = SentenceRecord(
        sentence_id=sentence_id,
        dataset=dataset,
        video_id=video_stem(get_str(entry, "original_video_id", where)),
        video_path=get_str(entry, "video_path", where),
        fps=frame_count / CLIP_SECONDS,
        frame_count=frame_count,
        width=get_int(entry, "width", where),
        height=get_int(entry, "height", where),
        segment=(0, frame_count),
        tube=tube,
        query=get_sentence(entry, "caption", where),
        box_frame_ids=frame_ids,
        boxes_xyxy_px=boxes,
        annotation_frame_base=1,
        source_tube_end="inclusive",
    )
    fields = SourceFields(segment="frame_count", tube="tube_start_frame/tube_end_frame",
                          boxes=_list_field("trajectory"), fps="frame_count")
    check_record(rec, where, fields, box_margin=box_margin)
    seen[sentence_id] = where.entry if where.entry is not None else -1
    return rec


# --------------------------------------------------------------------------------------------- writers


def write_hcstvg(records: Sequence[SentenceRecord], path: Path | str, version: int = 1) -> None:
    """Write ``records`` as an official HC-STVG ``version`` 1 or 2 file, keyed by ``video_path``.

    Records must have ``sentence_id`` ``0..N-1`` in order (ids are key positions), unique ``video_path`` whose
    stem is ``video_id``, segment ``[0, frame_count)``, ``fps == frame_count / 20`` (the format stores no
    frame rate) and one box on each tube frame and nowhere else. ``st_time``/``ed_time`` are written as ``tube
    start / fps`` and ``tube end / fps``; the reader ignores them.
    """
    if version not in (1, 2):
        raise ValueError(f"HC-STVG version must be 1 or 2, got {version!r}")
    payload: dict[str, dict] = {}
    for i, rec in enumerate(records):
        _check_writable(rec, i, payload)
        payload[rec.video_path] = _official_json(rec, version)
    write_json(Path(path), payload)


def _check_writable(rec: SentenceRecord, position: int, written: dict) -> None:
    def fail(problem: str) -> ValueError:
        return ValueError(f"sentence {rec.sentence_id} ({rec.video_id}): {problem}")

    if rec.sentence_id != position:
        raise fail(f"is record {position}; HC-STVG stores no ids (they are key positions), so records "
                   "must have sentence_id 0..N-1 in order")
    if rec.video_path in written:
        raise fail(f"video_path '{rec.video_path}' is used twice; HC-STVG holds one sentence per video file")
    if video_stem(rec.video_path) != rec.video_id:
        raise fail(f"video_id must be the stem of video_path '{rec.video_path}' (the reader derives it)")
    if rec.tube is None:
        raise fail("no tube; write query-only records with write_hcstvg_queries")
    if rec.segment != (0, rec.frame_count):
        raise fail(f"segment {rec.segment} is not the whole clip (0, {rec.frame_count})")
    if not math.isclose(rec.fps, rec.frame_count / CLIP_SECONDS, rel_tol=1e-9):
        raise fail(f"fps {rec.fps} is not frame_count / {CLIP_SECONDS:g} (HC-STVG clips are 20 s)")
    if not np.array_equal(rec.box_frame_ids, np.arange(*rec.tube)):
        raise fail("boxes must lie on exactly the tube frames")


def _official_json(rec: SentenceRecord, version: int) -> dict:
    assert rec.tube is not None
    entry: dict[str, Any] = {
        "bbox": xyxy_to_xywh(rec.boxes_xyxy_px).tolist(),
        "st_frame": int(rec.tube[0]) + 1,
        "st_time": rec.tube[0] / rec.fps,
        "ed_time": rec.tube[1] / rec.fps,
        "img_num": int(rec.frame_count),
    }
    if version == 2:
        entry.update({"English": rec.query, "img_size": [int(rec.height), int(rec.width)]})
    else:
        entry.update({"caption": rec.query, "width": int(rec.width), "height": int(rec.height)})
    return entry


def write_hcstvg_queries(records: Sequence[SentenceRecord], path: Path | str) -> None:
    """Write ``{video_path: query}`` (the ``query_v2.json`` format); ids must be ``0..N-1`` in order."""
    payload: dict[str, str] = {}
    for i, rec in enumerate(records):
        if rec.sentence_id != i or rec.video_path in payload or video_stem(rec.video_path) != rec.video_id:
            raise ValueError(f"sentence {rec.sentence_id} ({rec.video_id}): query files store only "
                             "video_path -> query, so records need sentence_id 0..N-1 in order, unique "
                             "video_path and video_id == stem of video_path")
        payload[rec.video_path] = rec.query
    write_json(Path(path), payload)
