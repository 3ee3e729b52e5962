"""HC-STVG readers (v1, v2, query file, TubeDETR ``*_proc.json``) and writers, on hand-written files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from annotation_samples import HCSTVG_QUERIES, HCSTVG_V1, assert_records_equal, hcstvg_proc, hcstvg_v2

from bridge_stg.annotations import load_annotations, write_hcstvg, write_hcstvg_queries

# HCSTVG_V1 key 0: st_frame 5 (1-based) with 3 boxes -> frames 4, 5, 6 (0-based); img_num 100 -> fps 5.
EXPECTED_BOXES_0 = [[10.0, 20.0, 40.0, 60.0], [11.0, 21.0, 41.0, 61.0], [12.5, 22.0, 42.5, 62.0]]


def _check_first_record(rec, dataset: str) -> None:
    assert rec.sentence_id == 0
    assert rec.dataset == dataset
    assert (rec.video_id, rec.video_path) == ("55_vfjywN5CN0Y", "55_vfjywN5CN0Y.mp4")
    assert rec.fps == 5.0 and rec.frame_count == 100
    assert (rec.width, rec.height) == (320, 240)
    assert rec.segment == (0, 100)
    assert rec.tube == (4, 7)  # [st_frame - 1, st_frame - 1 + len(bbox))
    assert rec.query == "The man in black walks to the door."
    assert rec.sentence_type is None and rec.target_id is None
    assert rec.box_frame_ids.tolist() == [4, 5, 6] and rec.box_frame_ids.dtype == np.int64
    np.testing.assert_array_equal(rec.boxes_xyxy_px, EXPECTED_BOXES_0)
    assert rec.boxes_xyxy_px.dtype == np.float64
    assert (rec.annotation_frame_base, rec.source_tube_end) == (1, "inclusive")


def test_v1_record_fields(write_json):
    records, report = load_annotations(write_json("test.json", HCSTVG_V1), "hcstvg_v1")
    assert report.file_format == "hcstvg_v1_official" and report.has_boxes
    _check_first_record(records[0], "hcstvg_v1")
    second = records[1]
    assert (second.sentence_id, second.video_id, second.video_path) == (1, "7_aBcD", "7_aBcD.mkv")
    assert second.tube == (0, 2) and second.fps == 2.0


def test_v2_record_fields(write_json):
    records, report = load_annotations(write_json("anno_v2/val_v2.json", hcstvg_v2()), "hcstvg_v2")
    assert report.file_format == "hcstvg_v2_official"
    _check_first_record(records[0], "hcstvg_v2")


def test_tubedetr_proc_record_fields(write_json):
    records, report = load_annotations(write_json("test_proc.json", hcstvg_proc()), "hcstvg_v1")
    assert report.file_format == "tubedetr_hcstvg"
    _check_first_record(records[0], "hcstvg_v1")
    official = load_annotations(write_json("test.json", HCSTVG_V1), "hcstvg_v1")[0]
    assert_records_equal(records, official)


def test_query_file_records(write_json):
    records, report = load_annotations(write_json("query_v2.json", HCSTVG_QUERIES), "hcstvg_v2")
    assert report.file_format == "hcstvg_query" and not report.has_boxes
    rec = records[1]
    assert (rec.sentence_id, rec.dataset, rec.video_id, rec.video_path) == (
        1, "hcstvg_v2", "20_D8Vhxbho1fY", "20_D8Vhxbho1fY.mp4")
    assert rec.query == "The boy jumps."
    assert rec.tube is None and not rec.has_ground_truth
    assert (rec.fps, rec.frame_count, rec.width, rec.height, rec.segment) == (0.0, 0, 0, 0, (0, 0))
    assert rec.box_frame_ids.shape == (0,) and rec.boxes_xyxy_px.shape == (0, 4)


@pytest.mark.parametrize("version", [1, 2])
def test_write_round_trip(write_json, tmp_path, version):
    source = HCSTVG_V1 if version == 1 else hcstvg_v2()
    dataset = f"hcstvg_v{version}"
    records = load_annotations(write_json("in.json", source), dataset)[0]
    out = tmp_path / f"out_v{version}.json"
    write_hcstvg(records, out, version=version)
    assert_records_equal(load_annotations(out, dataset)[0], records)
    written = json.loads(out.read_text())
    entry = written["55_vfjywN5CN0Y.mp4"]
    assert entry["st_frame"] == 5 and entry["img_num"] == 100
    assert entry["st_time"] == pytest.approx(0.8) and entry["ed_time"] == pytest.approx(1.4)
    assert ("caption" in entry) == (version == 1) and ("English" in entry) == (version == 2)
    if version == 2:
        assert entry["img_size"] == [240, 320]


def test_write_queries_round_trip(write_json, tmp_path):
    records = load_annotations(write_json("q.json", HCSTVG_QUERIES), "hcstvg_v2")[0]
    write_hcstvg_queries(records, tmp_path / "out.json")
    assert_records_equal(load_annotations(tmp_path / "out.json", "hcstvg_v2")[0], records)


def test_write_refuses_fps_the_format_cannot_hold(write_json, tmp_path):
    rec = load_annotations(write_json("in.json", HCSTVG_V1), "hcstvg_v1")[0][0]
    with pytest.raises(ValueError, match="20 s"):
        write_hcstvg([dataclasses.replace(rec, fps=25.0)], tmp_path / "out.json")


def test_write_refuses_query_only_records(write_json, tmp_path):
    records = load_annotations(write_json("q.json", HCSTVG_QUERIES), "hcstvg_v2")[0]
    with pytest.raises(ValueError, match="write_hcstvg_queries"):
        write_hcstvg(records, tmp_path / "out.json", version=2)
