"""VidSTG readers (official + VidOR boxes, TubeDETR preprocessed) and writers, on hand-written files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from annotation_samples import assert_records_equal, box_xyxy, tubedetr_vidstg

from bridge_stg.annotations import (
    group_vidstg_items,
    load_annotations,
    write_tubedetr_vidstg,
    write_vidstg_official,
)
from bridge_stg.structures import SentenceRecord


def test_official_enumerates_questions_then_captions(vidstg_files):
    path, _ = vidstg_files()
    records, report = load_annotations(path, "vidstg")
    assert [(r.sentence_id, r.sentence_type, r.target_id, r.video_id) for r in records] == [
        (0, "interrogative", 1, "1001"),
        (1, "interrogative", 2, "1001"),
        (2, "declarative", 1, "1001"),
        (3, "declarative", 0, "1002"),
    ]
    assert [r.query for r in records[:3]] == [
        "who watches the dog?", "what is watched by the adult?", "the adult watches the dog."]
    assert report.file_format == "vidstg_official" and not report.has_boxes
    assert (report.num_entries, report.num_records) == (2, 4)


def test_official_record_fields_without_boxes(vidstg_files):
    path, _ = vidstg_files()
    rec = load_annotations(path, "vidstg")[0][3]
    assert rec.dataset == "vidstg"
    assert (rec.video_id, rec.video_path) == ("1002", "1002.mp4")
    assert rec.fps == 25.0 and isinstance(rec.fps, float)
    assert (rec.frame_count, rec.width, rec.height) == (10, 64, 48)
    assert rec.segment == (0, 10)  # used_segment.end_fid 9 is inclusive
    assert rec.tube == (0, 10)  # temporal_gt.end_fid 10 is exclusive
    assert rec.query == "a child runs."
    assert (rec.annotation_frame_base, rec.source_tube_end) == (0, "exclusive")
    assert rec.box_frame_ids.shape == (0,) and rec.box_frame_ids.dtype == np.int64
    assert rec.boxes_xyxy_px.shape == (0, 4) and rec.boxes_xyxy_px.dtype == np.float64


def test_official_record_with_vidor_boxes(vidstg_files):
    path, vidor = vidstg_files()
    records, report = load_annotations(path, "vidstg", vidor_dir=vidor)
    assert report.has_boxes
    rec = records[1]
    assert (rec.sentence_id, rec.target_id, rec.sentence_type) == (1, 2, "interrogative")
    assert rec.video_path == "0000/1001.mp4"  # the VidOR file's video_path
    assert rec.segment == (2, 16) and rec.tube == (4, 9)
    assert rec.box_frame_ids.tolist() == [4, 5, 6, 7, 8]
    np.testing.assert_array_equal(rec.boxes_xyxy_px[0], [14.0, 7.0, 34.0, 27.0])
    np.testing.assert_array_equal(rec.boxes_xyxy_px[-1], [18.0, 7.0, 38.0, 27.0])
    # Target 1 keeps its whole track, also outside the tube.
    assert records[0].box_frame_ids.tolist() == list(range(3, 11))
    np.testing.assert_array_equal(records[0].boxes_on(np.array([10])), [box_xyxy(1, 10)])
    assert records[3].video_path == "1002.mp4"
    assert records[3].box_frame_ids.tolist() == list(range(10))


def test_loaded_boxes_are_read_only(vidstg_files):
    path, vidor = vidstg_files()
    rec = load_annotations(path, "vidstg", vidor_dir=vidor)[0][0]
    with pytest.raises(ValueError):
        rec.boxes_xyxy_px[0, 0] = 0.0


def test_tubedetr_vidstg_record_fields(write_json):
    path = write_json("vidstg/val.json", tubedetr_vidstg())
    records, report = load_annotations(path, "vidstg")
    assert report.file_format == "tubedetr_vidstg"
    assert [r.sentence_id for r in records] == [7, 3]
    rec = records[1]
    assert (rec.dataset, rec.video_id, rec.video_path) == ("vidstg", "1001", "0000/1001.mp4")
    assert (rec.fps, rec.frame_count, rec.width, rec.height) == (30.0, 20, 100, 50)
    assert rec.segment == (2, 16) and rec.tube == (4, 9)
    assert (rec.query, rec.sentence_type, rec.target_id) == ("the dog sits.", "declarative", 2)
    assert (rec.annotation_frame_base, rec.source_tube_end) == (0, "exclusive")
    assert rec.box_frame_ids.tolist() == [3, 4, 5, 6, 7, 8]
    np.testing.assert_array_equal(rec.boxes_xyxy_px[0], [13.0, 7.0, 33.0, 27.0])  # xywh (13, 7, 20, 20)


def test_write_official_round_trip(vidstg_files, tmp_path):
    path, vidor = vidstg_files()
    records = load_annotations(path, "vidstg", vidor_dir=vidor)[0]
    out, out_vidor = tmp_path / "out/test_annotations.json", tmp_path / "out/vidor"
    write_vidstg_official(records, out, out_vidor)
    again, report = load_annotations(out, "vidstg", vidor_dir=out_vidor)
    assert_records_equal(again, records)
    assert report.num_entries == 2
    items = json.loads(out.read_text())
    assert items[0]["used_segment"] == {"begin_fid": 2, "end_fid": 15}
    assert items[0]["temporal_gt"] == {"begin_fid": 4, "end_fid": 9}
    assert [q["target_id"] for q in items[0]["questions"]] == [1, 2]
    assert (out_vidor / "0000/1001.json").exists()


def test_write_official_without_vidor_round_trip(vidstg_files, tmp_path):
    path, _ = vidstg_files()
    records = load_annotations(path, "vidstg")[0]
    write_vidstg_official(records, tmp_path / "a.json")
    assert_records_equal(load_annotations(tmp_path / "a.json", "vidstg")[0], records)


def _record(sentence_id: int, kind: str, video: str = "v", segment=(0, 10), tube=(2, 5)) -> SentenceRecord:
    frames = np.arange(0, 10, dtype=np.int64)
    boxes = np.array([box_xyxy(0, f) for f in frames], dtype=np.float64)
    return SentenceRecord(sentence_id=sentence_id, dataset="vidstg", video_id=video,
                          video_path=f"{video}.mp4", fps=10.0, frame_count=10, width=100, height=50,
                          segment=segment, tube=tube, query=f"query {sentence_id}", sentence_type=kind,
                          target_id=0, box_frame_ids=frames, boxes_xyxy_px=boxes)


def test_grouping_keeps_record_order():
    records = [_record(0, "interrogative"), _record(1, "declarative"), _record(2, "interrogative"),
               _record(3, "declarative", tube=(3, 6)), _record(4, "declarative", video="w")]
    groups = group_vidstg_items(records)
    assert [[r.sentence_id for r in g] for g in groups] == [[0, 1], [2], [3], [4]]


def test_write_official_round_trip_of_built_records(tmp_path):
    records = [_record(0, "interrogative"), _record(1, "declarative"), _record(2, "interrogative"),
               _record(3, "declarative", tube=(3, 6)), _record(4, "declarative", video="w")]
    write_vidstg_official(records, tmp_path / "s.json", tmp_path / "vidor")
    assert_records_equal(load_annotations(tmp_path / "s.json", "vidstg", tmp_path / "vidor")[0], records)


def test_write_official_refuses_ids_it_cannot_store(tmp_path):
    records = [_record(0, "declarative"), _record(5, "declarative")]
    with pytest.raises(ValueError, match="sentence_id 5"):
        write_vidstg_official(records, tmp_path / "s.json")


def test_write_official_refuses_conflicting_boxes(tmp_path):
    a, b = _record(0, "interrogative"), _record(1, "declarative", tube=(3, 6))
    moved = b.boxes_xyxy_px.copy()
    moved[4] += 1.0
    b = dataclasses.replace(b, boxes_xyxy_px=moved)
    with pytest.raises(ValueError, match="two different boxes on frame 4"):
        write_vidstg_official([a, b], tmp_path / "s.json", tmp_path / "vidor")


def test_write_tubedetr_round_trip(write_json, tmp_path):
    records = load_annotations(write_json("in.json", tubedetr_vidstg()), "vidstg")[0]
    write_tubedetr_vidstg(records, tmp_path / "out.json")
    again, report = load_annotations(tmp_path / "out.json", "vidstg")
    assert report.file_format == "tubedetr_vidstg"
    assert_records_equal(again, records)


def test_write_tubedetr_round_trip_from_official(vidstg_files, tmp_path):
    path, vidor = vidstg_files()
    records = load_annotations(path, "vidstg", vidor_dir=vidor)[0]
    write_tubedetr_vidstg(records, tmp_path / "test.json")
    assert_records_equal(load_annotations(tmp_path / "test.json", "vidstg")[0], records)
