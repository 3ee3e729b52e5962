"""Referring expressions as JSON lines (a RefCOCO-style layout): image grounding as one-frame videos.

One object per line: ``{"image": "COCO_train2014_000000581857.jpg", "bbox": [x, y, w, h], "sentence": "...",
"width": 640, "height": 480}``, converted from RefCOCO's own release outside this project (its ``refs(*).p`` files
are pickles, which this project never loads). Each record is a one-frame "video" whose span is that frame and whose
one box is the target; sentence ids count the file's non-blank lines, so skipping never renumbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bridge_stg.annotations.errors import Where
from bridge_stg.annotations.load import ReadOptions
from bridge_stg.annotations.parsing import VideoFilter
from bridge_stg.annotations.report import Collector, LoadReport
from bridge_stg.ops.boxes import xywh_to_xyxy
from bridge_stg.structures import SentenceRecord

FIELDS = "image, bbox [x, y, w, h], sentence, width, height"


def read_referring_jsonl(path: Path, dataset: str, options: ReadOptions) -> tuple[list[SentenceRecord], LoadReport]:
    """Records of a referring-expression JSON-lines file (``options.exclude_videos`` matches image names)."""
    report = LoadReport(path=path, dataset=dataset, file_format="referring_jsonl", has_boxes=True)
    collect = Collector(report, VideoFilter(tuple(options.exclude_videos)), options.skip_invalid)
    numbered = [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    for sentence_id, (line_no, line) in enumerate(numbered):
        where = Where(path, sentence_id, "?", (sentence_id,))
        item = collect.attempt(where, _parse, where, f"line {line_no}", line)
        if item is None:  # skipped (skip_invalid): still an entry of the file
            collect.entry_seen()
            continue
        where = Where(path, sentence_id, Path(str(item.get("image", "?"))).stem, (sentence_id,))
        collect.entry(where, _record, where, f"line {line_no}", item, dataset)
    return collect.finish()


def _parse(where: Where, field: str, line: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except ValueError as err:
        raise where.error(field, f"not a JSON object ({err})", fix="one JSON object per line") from None
    if not isinstance(item, dict):
        raise where.error(field, f"expected a JSON object with {FIELDS}, got {type(item).__name__}",
                          fix="one JSON object per line")
    return item


def _record(where: Where, field: str, item: dict[str, Any], dataset: str) -> SentenceRecord:
    try:
        box_xywh = np.array([float(v) for v in item["bbox"]])
        image, sentence = str(item["image"]), str(item["sentence"])
        width, height = int(item["width"]), int(item["height"])
    except (ValueError, KeyError, TypeError) as err:
        raise where.error(field, f"expected an object with {FIELDS} ({err!r})") from None
    if not sentence.strip():
        raise where.error(field, f"empty sentence {sentence!r}: a query needs words to ground")
    if box_xywh.shape != (4,) or not np.isfinite(box_xywh).all() or (box_xywh[2:] <= 0).any():
        raise where.error(field, f"bbox {item['bbox']} must be [x, y, w, h] with positive finite width and height")
    return SentenceRecord(
        sentence_id=where.sentence_ids[0], dataset=dataset, video_id=Path(image).stem, video_path=image, fps=1.0,
        frame_count=1, width=width, height=height, segment=(0, 1), tube=(0, 1), query=sentence,
        box_frame_ids=np.zeros(1, dtype=np.int64), boxes_xyxy_px=xywh_to_xyxy(box_xywh[None]))
