"""Readers for the extra multi-task sources: temporal-only grounding and image referring expressions.

* Charades-STA text files (``{train,test}.txt``): one sentence per line, ``<video_id> <start_s> <end_s>##<sentence>``;
  frame rate, frame count and size come from probing each video once.
* Referring expressions as JSON lines (a RefCOCO-style layout, one object per sentence):
  ``{"image": "COCO_train2014_000000581857.jpg", "bbox": [x, y, w, h], "sentence": "...", "width": 640,
  "height": 480}`` — converted from RefCOCO's own release outside this project (its ``refs(*).p`` files are
  pickles, which this project never loads).

Both produce :class:`~bridge_stg.structures.SentenceRecord` s: temporal-only records have no boxes, image records
are one-frame "videos" with one box.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bridge_stg.data.video_io import probe_video
from bridge_stg.structures import SentenceRecord


def read_charades_sta(path: str | Path, video_dir: str | Path, dataset: str = "charades") -> list[SentenceRecord]:
    path, video_dir = Path(path), Path(video_dir)
    records: list[SentenceRecord] = []
    infos = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        head, sep, sentence = line.partition("##")
        parts = head.split()
        if not sep or len(parts) != 3 or not sentence.strip():
            raise ValueError(f"{path}:{n}: expected '<video_id> <start_s> <end_s>##<sentence>', got {line!r}")
        vid, start_s, end_s = parts[0], float(parts[1]), float(parts[2])
        if not end_s > start_s >= 0:
            raise ValueError(f"{path}:{n} (video {vid}): the span {start_s}-{end_s} s must satisfy 0 <= start < end")
        if vid not in infos:
            infos[vid] = probe_video(video_dir / f"{vid}.mp4")
        info = infos[vid]
        start = min(int(round(start_s * info.fps)), info.frame_count - 1)
        end = min(max(int(round(end_s * info.fps)), start + 1), info.frame_count)
        records.append(SentenceRecord(
            sentence_id=len(records), dataset=dataset, video_id=vid, video_path=f"{vid}.mp4", fps=info.fps,
            frame_count=info.frame_count, width=info.width, height=info.height, segment=(0, info.frame_count),
            tube=(start, end), query=sentence.strip()))
    return records


def read_referring_jsonl(path: str | Path, dataset: str = "refcoco") -> list[SentenceRecord]:
    path = Path(path)
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            x, y, w, h = (float(v) for v in item["bbox"])
            image, sentence = str(item["image"]), str(item["sentence"])
            width, height = int(item["width"]), int(item["height"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{n}: expected an object with image, bbox [x, y, w, h], sentence, width, "
                             f"height ({err!r})") from None
        if not sentence.strip():
            raise ValueError(f"{path}:{n} ({image}): empty sentence {sentence!r}: a query needs words to ground; "
                             "correct or remove the line")
        if w <= 0 or h <= 0 or not np.isfinite([x, y, w, h]).all():
            raise ValueError(f"{path}:{n} ({image}): bbox {item['bbox']} must have positive finite width and height")
        records.append(SentenceRecord(
            sentence_id=len(records), dataset=dataset, video_id=Path(image).stem, video_path=image, fps=1.0,
            frame_count=1, width=width, height=height, segment=(0, 1), tube=(0, 1), query=sentence,
            box_frame_ids=np.zeros(1, dtype=np.int64), boxes_xyxy_px=np.array([[x, y, x + w, y + h]])))
    return records
