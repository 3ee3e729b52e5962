"""Small hand-written annotation payloads of every supported format (tests write them into ``tmp_path``).

Box rule of the VidOR / TubeDETR samples (so expectations can be computed by hand): target ``t`` on frame
``f`` has ``xyxy = (10 + f, 5 + t, 30 + f, 25 + t)``, i.e. ``xywh = (10 + f, 5 + t, 20, 20)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from bridge_stg.structures import SentenceRecord


def box_xyxy(tid: int, frame: int) -> list[float]:
    return [10.0 + frame, 5.0 + tid, 30.0 + frame, 25.0 + tid]


def _vidor_entry(tid: int, frame: int) -> dict:
    x1, y1, x2, y2 = box_xyxy(tid, frame)
    bbox = {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2}
    return {"tid": tid, "bbox": bbox, "generated": 0, "tracker": "none"}


# Item 0 holds sentences 0 (question, target 1), 1 (question, target 2), 2 (caption, target 1);
# item 1 holds sentence 3 (caption, target 0), its tube ending at frame_count (VidSTG's exclusive end).
VIDSTG_ITEMS: list[dict] = [
    {
        "vid": "1001", "fps": 30.0, "frame_count": 20, "width": 100, "height": 50,
        "used_segment": {"begin_fid": 2, "end_fid": 15},
        "used_relation": {"subject_tid": 1, "object_tid": 2, "predicate": "watch",
                          "begin_fid": 4, "end_fid": 9},
        "temporal_gt": {"begin_fid": 4, "end_fid": 9},
        "subject/objects": [{"tid": 1, "category": "adult"}, {"tid": 2, "category": "dog"}],
        "captions": [{"description": "the adult watches the dog.", "type": "person", "target_id": 1}],
        "questions": [
            {"description": "who watches the dog?", "type": "person", "target_id": 1},
            {"description": "what is watched by the adult?", "type": "other", "target_id": 2},
        ],
    },
    {
        "vid": "1002", "fps": 25, "frame_count": 10, "width": 64, "height": 48,
        "used_segment": {"begin_fid": 0, "end_fid": 9},
        "temporal_gt": {"begin_fid": 0, "end_fid": 10},
        "captions": [{"description": "a child runs.", "type": "person", "target_id": 0}],
        "questions": [],
    },
]

# VidOR boxes: video 1001 tid 1 on frames 3..10, tid 2 on frames 4..8, a distractor tid 5 on frame 4;
# video 1002 tid 0 on every frame. Only 1001 states a video_path.
VIDOR_TRACKS = {"1001": {1: range(3, 11), 2: range(4, 9), 5: range(4, 5)}, "1002": {0: range(0, 10)}}
VIDOR_LOCATIONS = {"1001": "training/0000", "1002": "validation/0001"}


def vidor_file(vid: str) -> dict:
    frame_count = {"1001": 20, "1002": 10}[vid]
    trajectories: list[list[dict]] = [[] for _ in range(frame_count)]
    for tid, frames in VIDOR_TRACKS[vid].items():
        for f in frames:
            trajectories[f].append(_vidor_entry(tid, f))
    payload: dict[str, Any] = {"video_id": vid, "frame_count": frame_count, "trajectories": trajectories,
                               "relation_instances": []}
    if vid == "1001":
        payload["video_path"] = "0000/1001.mp4"
    return payload


def tubedetr_vidstg() -> dict:
    """TubeDETR's preprocessed form: two sentences of video 1001 (ids 7 and 3, in that order)."""
    base = {"original_video_id": "1001", "frame_count": 20, "fps": 30.0, "width": 100, "height": 50,
            "start_frame": 2, "end_frame": 15, "tube_start_frame": 4, "tube_end_frame": 9,
            "video_path": "0000/1001.mp4", "type": "person"}
    videos = [
        {**base, "caption": "who watches the dog?", "target_id": 1, "video_id": 7, "qtype": "interrogative"},
        {**base, "caption": "the dog sits.", "target_id": 2, "video_id": 3, "qtype": "declarative"},
    ]
    trajectories = {"1001": {str(t): {str(f): {"bbox": [10.0 + f, 5.0 + t, 20.0, 20.0]} for f in frames}
                             for t, frames in ((1, range(4, 10)), (2, range(3, 9)))}}
    return {"videos": videos, "trajectories": trajectories}


# HC-STVG v1: key 0 has a 3-frame tube from st_frame 5 (0-based frames 4..6); key 1 is an .mkv clip.
HCSTVG_V1: dict[str, dict] = {
    "55_vfjywN5CN0Y.mp4": {
        "bbox": [[10, 20, 30, 40], [11, 21, 30, 40], [12.5, 22, 30, 40]],
        "st_frame": 5, "st_time": 0.8, "ed_time": 1.3, "img_num": 100,
        "caption": "The man in black walks to the door.", "width": 320, "height": 240,
    },
    "7_aBcD.mkv": {
        "bbox": [[0, 0, 5, 5], [1, 1, 5, 5]],
        "st_frame": 1, "st_time": 0.0, "ed_time": 0.5, "img_num": 40,
        "caption": "The woman sits down.", "width": 64, "height": 48,
    },
}


def hcstvg_v2() -> dict[str, dict]:
    out = {}
    for name, entry in HCSTVG_V1.items():
        entry = dict(entry)
        entry["English"] = entry.pop("caption")
        entry["img_size"] = [entry.pop("height"), entry.pop("width")]
        out[name] = entry
    return out


def hcstvg_proc() -> list[dict]:
    """TubeDETR's ``*_proc.json`` for HC-STVG_V1 (``tube_start_frame`` = st_frame, exclusive end)."""
    out = []
    for index, (name, entry) in enumerate(HCSTVG_V1.items()):
        out.append({"original_video_id": name[:-4], "frame_count": entry["img_num"], "width": entry["width"],
                    "height": entry["height"], "tube_start_frame": entry["st_frame"],
                    "tube_end_frame": entry["st_frame"] + len(entry["bbox"]), "video_path": name,
                    "caption": entry["caption"], "video_id": index, "trajectory": entry["bbox"]})
    return out


HCSTVG_QUERIES = {"3_5MxjqHfkWFI.mkv": "The man in blue stands up.", "20_D8Vhxbho1fY.mp4": "The boy jumps."}


def assert_records_equal(got: Sequence[SentenceRecord], want: Sequence[SentenceRecord]) -> None:
    """Same records: every field equal, boxes to float precision, frame ids and dtypes exact."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for f in dataclasses.fields(SentenceRecord):
            a, b = getattr(g, f.name), getattr(w, f.name)
            if f.name == "boxes_xyxy_px":
                assert a.dtype == np.float64 and a.shape == b.shape, (g.sentence_id, f.name)
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, err_msg=f"sentence {g.sentence_id}")
            elif f.name == "box_frame_ids":
                assert a.dtype == np.int64 and np.array_equal(a, b), (g.sentence_id, f.name)
            else:
                assert a == b and type(a) is type(b), (g.sentence_id, f.name, a, b)
