"""Malformed input: errors name the file, the sentence (id + video) and the field; exclusion, skipping."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from annotation_samples import HCSTVG_QUERIES, HCSTVG_V1, hcstvg_proc, hcstvg_v2, tubedetr_vidstg

from bridge_stg.annotations import AnnotationError, load_annotations

NAN, INF = float("nan"), float("inf")


@dataclass(frozen=True)
class Case:
    name: str
    field: str
    sentences: str  # how the message names the sentence(s)
    video: str
    problem: str
    edit_items: Callable[[list], None] | None = None
    edit_vidor: Callable[[dict], None] | None = None
    error_file: str = "annotations"  # or "vidor"


def _set(obj: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        obj = obj[int(key)] if isinstance(obj, list) else obj[key]
    if isinstance(obj, list):
        obj[int(last)] = value
    else:
        obj[last] = value


def _vidor_box(vid: str, frame: int, tid: int, key: str, value) -> Callable[[dict], None]:
    def edit(vidor: dict) -> None:
        entry = next(e for e in vidor[vid]["trajectories"][frame] if e["tid"] == tid)
        entry["bbox"][key] = value
    return edit


def _drop_vidor_box(vid: str, frame: int, tid: int) -> Callable[[dict], None]:
    def edit(vidor: dict) -> None:
        vidor[vid]["trajectories"][frame] = [e for e in vidor[vid]["trajectories"][frame] if e["tid"] != tid]
    return edit


VIDSTG_CASES = [
    Case("missing key", "temporal_gt", "sentences 0-2", "1001", "missing key",
         edit_items=lambda items: items[0].pop("temporal_gt")),
    Case("wrong type", "frame_count", "sentences 0-2", "1001", "expected an integer",
         edit_items=lambda items: _set(items[0], "frame_count", "20")),
    Case("wrong sentence type", "captions[0].target_id", "sentence 3", "1002", "expected an integer",
         edit_items=lambda items: _set(items[1], "captions.0.target_id", "0")),
    Case("missing description", "questions[1].description", "sentence 1", "1001", "missing key",
         edit_items=lambda items: items[0]["questions"][1].pop("description")),
    Case("blank description", "questions[1].description", "sentence 1", "1001", "empty sentence",
         edit_items=lambda items: _set(items[0], "questions.1.description", " \t ")),
    Case("empty caption", "captions[0].description", "sentence 3", "1002", "empty sentence",
         edit_items=lambda items: _set(items[1], "captions.0.description", "")),
    Case("segment end before start", "used_segment", "sentence 0", "1001", "end before start",
         edit_items=lambda items: _set(items[0], "used_segment.end_fid", 0)),
    Case("tube end before start", "temporal_gt", "sentence 0", "1001", "end before start",
         edit_items=lambda items: _set(items[0], "temporal_gt", {"begin_fid": 8, "end_fid": 5})),
    Case("tube outside segment", "temporal_gt", "sentence 0", "1001", "outside the segment",
         edit_items=lambda items: _set(items[0], "temporal_gt.begin_fid", 0)),
    Case("fps zero", "fps", "sentence 3", "1002", "not positive",
         edit_items=lambda items: _set(items[1], "fps", 0)),
    Case("fps negative", "fps", "sentence 0", "1001", "not positive",
         edit_items=lambda items: _set(items[0], "fps", -29.97)),
    Case("nan box", "trajectories[5] (tid 2) of VidOR file", "sentence 1", "1001", "non-finite",
         edit_vidor=_vidor_box("1001", 5, 2, "xmin", NAN)),
    Case("inf box", "trajectories[7] (tid 1) of VidOR file", "sentence 0", "1001", "non-finite",
         edit_vidor=_vidor_box("1001", 7, 1, "ymax", INF)),
    Case("box far outside", "trajectories[6] (tid 2)", "sentence 1", "1001", "far outside the 100x50 frame",
         edit_vidor=_vidor_box("1001", 6, 2, "xmax", 111.0)),
    Case("tube frame without box", "trajectories[6] (tid 2)", "sentence 1", "1001", "no box of target 2",
         edit_vidor=_drop_vidor_box("1001", 6, 2)),
    Case("video missing from vidor_dir", "vid", "sentence 3", "1002", "no VidOR box file '1002.json'",
         edit_vidor=lambda vidor: vidor.update({"1002": None})),
    Case("malformed VidOR entry", "trajectories[5][1].bbox.xmin", "sentences 0-2", "1001", "missing key",
         edit_vidor=lambda vidor: vidor["1001"]["trajectories"][5][1]["bbox"].pop("xmin"),
         error_file="vidor"),
]


@pytest.mark.parametrize("case", VIDSTG_CASES, ids=lambda c: c.name)
def test_vidstg_errors_name_file_sentence_and_field(vidstg_files, case: Case):
    path, vidor = vidstg_files(case.edit_items, case.edit_vidor)
    with pytest.raises(AnnotationError) as info:
        load_annotations(path, "vidstg", vidor_dir=vidor)
    error_file = path if case.error_file == "annotations" else vidor / "training/0000/1001.json"
    _assert_names(info.value, error_file, case)


def _assert_names(error: AnnotationError, file: Path, case: Case) -> None:
    message = str(error)
    assert str(file) in message
    assert f"{case.sentences} (video '{case.video}'" in message
    assert f"field '{case.field}" in message
    assert case.problem in message
    assert error.field.startswith(case.field)


def test_box_margin_is_a_keyword(vidstg_files):
    path, vidor = vidstg_files(edit_vidor=_vidor_box("1001", 6, 2, "xmax", 111.0))
    records, _ = load_annotations(path, "vidstg", vidor_dir=vidor, box_margin=0.2)
    assert records[1].boxes_xyxy_px[2, 2] == 111.0
    with pytest.raises(AnnotationError, match="far outside"):
        load_annotations(path, "vidstg", vidor_dir=vidor, box_margin=0.0)


def test_tube_coverage_is_not_checked_without_boxes(vidstg_files):
    path, _ = vidstg_files(edit_vidor=_drop_vidor_box("1001", 6, 2))
    assert len(load_annotations(path, "vidstg")[0]) == 4


def _hcstvg_edit(key: int, field: str, value) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        entry = data[list(data)[key]]
        if value is _DELETE:
            del entry[field]
        else:
            _set(entry, field, value)
    return edit


_DELETE = object()
V0, V1 = "55_vfjywN5CN0Y", "7_aBcD"

HCSTVG_CASES = [
    Case("missing key", "st_frame", "sentence 0", V0, "missing key", _hcstvg_edit(0, "st_frame", _DELETE)),
    Case("wrong type", "st_frame", "sentence 1", V1, "expected an integer", _hcstvg_edit(1, "st_frame", "1")),
    Case("short box", "bbox[1]", "sentence 0", V0, "expected a list of 4 numbers",
         _hcstvg_edit(0, "bbox.1", [1, 2, 3])),
    Case("string in box", "bbox[0]", "sentence 1", V1, "expected 4 numbers",
         _hcstvg_edit(1, "bbox.0.2", "5")),
    Case("nan box", "bbox[1]", "sentence 0", V0, "non-finite", _hcstvg_edit(0, "bbox.1.2", NAN)),
    Case("inf box", "bbox[0]", "sentence 0", V0, "non-finite", _hcstvg_edit(0, "bbox.0.0", -INF)),
    Case("box far outside", "bbox[0]", "sentence 0", V0, "far outside the 320x240 frame",
         _hcstvg_edit(0, "bbox.0", [10, 20, 400, 40])),
    Case("negative box size", "bbox[2]", "sentence 0", V0, "negative width or height",
         _hcstvg_edit(0, "bbox.2", [10, 20, -5, 40])),
    Case("tube outside segment", "st_frame/bbox", "sentence 0", V0, "outside the segment",
         _hcstvg_edit(0, "st_frame", 99)),
    Case("empty tube", "st_frame/bbox", "sentence 1", V1, "empty span", _hcstvg_edit(1, "bbox", [])),
    Case("no frames", "img_num", "sentence 1", V1, "not positive", _hcstvg_edit(1, "img_num", 0)),
    Case("reversed times", "st_time/ed_time", "sentence 0", V0, "st_time 2 s is after ed_time 1.3 s",
         _hcstvg_edit(0, "st_time", 2.0)),
    Case("time not a number", "ed_time", "sentence 1", V1, "expected a number", _hcstvg_edit(1, "ed_time", "0.5")),
    Case("empty caption", "caption", "sentence 1", V1, "empty sentence", _hcstvg_edit(1, "caption", "")),
    Case("blank caption", "caption", "sentence 0", V0, "empty sentence", _hcstvg_edit(0, "caption", " \n ")),
]


@pytest.mark.parametrize("case", HCSTVG_CASES, ids=lambda c: c.name)
def test_hcstvg_errors_name_file_sentence_and_field(write_json, case: Case):
    data = copy.deepcopy(HCSTVG_V1)
    case.edit_items(data)
    path = write_json("test.json", data)
    with pytest.raises(AnnotationError) as info:
        load_annotations(path, "hcstvg_v1")
    _assert_names(info.value, path, case)


def test_hcstvg_v2_img_size(write_json):
    data = hcstvg_v2()
    data[V1 + ".mkv"]["img_size"] = [48]
    path = write_json("val_v2.json", data)
    with pytest.raises(AnnotationError) as info:
        load_annotations(path, "hcstvg_v2")
    _assert_names(info.value, path, Case("", "img_size", "sentence 1", V1, "expected [height, width]"))


def test_hcstvg_v2_blank_sentence(write_json):
    data = hcstvg_v2()
    data[V0 + ".mp4"]["English"] = "   "
    path = write_json("val_v2.json", data)
    with pytest.raises(AnnotationError) as info:
        load_annotations(path, "hcstvg_v2")
    _assert_names(info.value, path, Case("", "English", "sentence 0", V0, "empty sentence"))


def test_query_file_wrong_type(write_json):
    path = write_json("query_v2.json", {**HCSTVG_QUERIES, "9_x.mp4": 5})
    with pytest.raises(AnnotationError) as info:
        load_annotations(path, "hcstvg_v2")
    _assert_names(info.value, path, Case("", "caption", "sentence 2", "9_x", "expected the caption string"))


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("target_id", 9, Case("", "trajectories['1001']['9']", "sentence 3", "1001", "no boxes")),
    ("video_id", 7, Case("", "video_id", "sentence 7", "1001", "duplicate sentence id 7")),
    ("caption", " ", Case("", "caption", "sentence 3", "1001", "empty sentence")),
], ids=["missing_track", "duplicate_id", "blank_caption"])
def test_tubedetr_vidstg_bad_sentence_entry(write_json, field, value, expected):
    data = tubedetr_vidstg()
    data["videos"][1][field] = value
    path = write_json("val.json", data)
    with pytest.raises(AnnotationError) as info:
        load_annotations(path, "vidstg")
    _assert_names(info.value, path, expected)


def test_tubedetr_vidstg_tube_frame_without_box(write_json):
    data = tubedetr_vidstg()
    del data["trajectories"]["1001"]["2"]["6"]  # target 2 (sentence 3): one box fewer than its tube [4, 9)
    path = write_json("val.json", data)
    with pytest.raises(AnnotationError) as info:
        load_annotations(path, "vidstg")
    expected = Case("", "trajectories['1001']['2']['6'].bbox", "sentence 3", "1001", "no box of target 2 on 1 of")
    _assert_names(info.value, path, expected)


@pytest.mark.parametrize(("edit", "field", "problem"), [
    ({"caption": ""}, "caption", "empty sentence"),
    ({"tube_start_time": 2.0, "tube_end_time": 1.0}, "tube_start_time/tube_end_time", "is after tube_end_time"),
    ({"tube_start_frame": 7, "tube_end_frame": 5, "trajectory": []}, "tube_start_frame/tube_end_frame",
     "end before start"),
])
def test_tubedetr_hcstvg_sentence_and_tube_order(write_json, edit, field, problem):
    data = hcstvg_proc()
    data[0].update(edit)
    path = write_json("test_proc.json", data)
    with pytest.raises(AnnotationError) as info:
        load_annotations(path, "hcstvg_v1")
    _assert_names(info.value, path, Case("", field, "sentence 0", V0, problem))


def test_tubedetr_hcstvg_trajectory_length(write_json):
    data = hcstvg_proc()
    data[0]["tube_end_frame"] += 1
    path = write_json("test_proc.json", data)
    with pytest.raises(AnnotationError) as info:
        load_annotations(path, "hcstvg_v1")
    expected = Case("", "trajectory", "sentence 0", V0, "3 boxes for a tube of 4 frames")
    _assert_names(info.value, path, expected)


@pytest.mark.parametrize(("payload", "dataset", "problem"), [
    ([], "vidstg", "an empty list"),
    ({"a.mp4": [1, 2]}, "hcstvg_v1", "unrecognised annotation format"),
    (3, "vidstg", "expected a non-empty JSON list or object"),
    (HCSTVG_V1, "vidstg", "does not hold vidstg"),
    (hcstvg_v2(), "hcstvg_v1", "dataset='hcstvg_v1'"),
    (HCSTVG_V1, "hcstvg_v2", "pass dataset='hcstvg_v1'"),
])
def test_file_level_errors_name_the_file(write_json, payload, dataset, problem):
    path = write_json("file.json", payload)
    with pytest.raises(AnnotationError, match="<file>") as info:
        load_annotations(path, dataset, skip_invalid=True)
    assert str(path) in str(info.value) and problem in str(info.value)


def test_invalid_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"vid": "1"')
    with pytest.raises(AnnotationError, match="not valid JSON") as info:
        load_annotations(path, "vidstg")
    assert str(path) in str(info.value)


def test_vidor_dir_errors(write_json, vidstg_files, tmp_path):
    with pytest.raises(AnnotationError, match="vidor_dir"):
        load_annotations(write_json("test.json", HCSTVG_V1), "hcstvg_v1", vidor_dir=tmp_path)
    path, _ = vidstg_files()
    with pytest.raises(AnnotationError, match="is not a folder"):
        load_annotations(path, "vidstg", vidor_dir=tmp_path / "nowhere")


def test_unknown_dataset(write_json):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_annotations(write_json("test.json", HCSTVG_V1), "hcstvg")


# ----------------------------------------------------------------------- exclude_videos / skip_invalid


@pytest.mark.parametrize("name", ["1001", "1001.mp4"])
def test_exclude_vidstg_video(vidstg_files, name):
    path, vidor = vidstg_files(edit_vidor=lambda v: v.update({"1001": None}))
    records, report = load_annotations(path, "vidstg", vidor_dir=vidor, exclude_videos=[name])
    assert [r.sentence_id for r in records] == [3]
    assert [(e.entry, e.video_id, e.sentence_ids) for e in report.excluded] == [(0, "1001", (0, 1, 2))]
    assert report.num_excluded_sentences == 3 and report.num_records == 1 and report.num_entries == 2
    assert "excluded 3 sentences of 1 entries" in report.summary()
    assert report.unmatched_excludes == ()


def test_exclude_hcstvg_by_file_name_and_bare_id(write_json):
    path = write_json("test.json", HCSTVG_V1)
    records, report = load_annotations(path, "hcstvg_v1", exclude_videos=[V0 + ".mp4", "nope.mkv"])
    assert [(r.sentence_id, r.video_id) for r in records] == [(1, V1)]
    assert report.unmatched_excludes == ("nope.mkv",)
    assert "nope.mkv" in report.summary()
    records, report = load_annotations(path, "hcstvg_v1", exclude_videos=[V1])
    assert [r.sentence_id for r in records] == [0] and report.num_excluded_sentences == 1


def test_exclude_query_file(write_json):
    path = write_json("query_v2.json", HCSTVG_QUERIES)
    records, report = load_annotations(path, "hcstvg_v2", exclude_videos=["3_5MxjqHfkWFI.mkv"])
    assert [r.sentence_id for r in records] == [1] and len(report.excluded) == 1


def test_skip_invalid_item_keeps_other_ids(vidstg_files):
    path, vidor = vidstg_files(edit_items=lambda items: items[0].pop("temporal_gt"))
    records, report = load_annotations(path, "vidstg", vidor_dir=vidor, skip_invalid=True)
    assert [r.sentence_id for r in records] == [3]
    assert [e.sentence_ids for e in report.skipped] == [(0, 1, 2)]
    assert report.num_skipped_sentences == 3
    assert "temporal_gt" in report.skipped[0].reason and "missing key" in report.skipped[0].reason


def test_skip_invalid_sentences(vidstg_files):
    path, vidor = vidstg_files(edit_items=lambda items: _set(items[1], "captions.0.target_id", "0"),
                               edit_vidor=_drop_vidor_box("1001", 6, 2))
    records, report = load_annotations(path, "vidstg", vidor_dir=vidor, skip_invalid=True)
    assert [r.sentence_id for r in records] == [0, 2]
    assert [(e.entry, e.sentence_ids) for e in report.skipped] == [(0, (1,)), (1, (3,))]
    assert "no box of target 2" in report.skipped[0].reason
    assert "captions[0].target_id" in report.skipped[1].reason
    summary = report.summary()
    assert "skipped 2 invalid sentences" in summary and "no box of target 2" in summary


def test_skip_invalid_hcstvg(write_json):
    data = copy.deepcopy(HCSTVG_V1)
    data["8_bad.mp4"] = copy.deepcopy(data[V1 + ".mkv"])
    data["9_ok.mp4"] = copy.deepcopy(data[V1 + ".mkv"])
    data["8_bad.mp4"]["bbox"][1][0] = NAN
    records, report = load_annotations(write_json("test.json", data), "hcstvg_v1", skip_invalid=True,
                                       exclude_videos=[V0])
    assert [r.sentence_id for r in records] == [1, 3]
    assert [(e.video_id, e.sentence_ids) for e in report.skipped] == [("8_bad", (2,))]
    assert "non-finite" in report.skipped[0].reason
    assert (report.num_excluded_sentences, report.num_skipped_sentences, report.num_records) == (1, 1, 2)


def test_annotation_error_pickles():
    error = AnnotationError("bad", path="a.json", field="fps", sentence_ids=(3,), video_id="v", entry=1,
                            fix="x")
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.field == "fps" and again.sentence_ids == (3,)


def test_skip_invalid_counts_blank_sentences_and_reversed_times(vidstg_files, write_json):
    path, vidor = vidstg_files(edit_items=lambda items: _set(items[0], "captions.0.description", ""))
    records, report = load_annotations(path, "vidstg", vidor_dir=vidor, skip_invalid=True)
    assert [r.sentence_id for r in records] == [0, 1, 3]
    assert [(e.entry, e.video_id, e.sentence_ids) for e in report.skipped] == [(0, "1001", (2,))]
    assert "captions[0].description" in report.skipped[0].reason and "empty sentence" in report.skipped[0].reason
    data = copy.deepcopy(HCSTVG_V1)
    data[V1 + ".mkv"]["ed_time"] = -1.0
    records, report = load_annotations(write_json("test.json", data), "hcstvg_v1", skip_invalid=True)
    assert [r.sentence_id for r in records] == [0] and report.num_skipped_sentences == 1
    assert "st_time 0 s is after ed_time -1 s" in report.summary()


# ------------------------------------------------------------------ warnings: kept, counted, never silent


def test_hcstvg_box_count_against_ed_time_is_a_counted_warning(write_json, caplog):
    data = copy.deepcopy(HCSTVG_V1)
    data[V0 + ".mp4"]["ed_time"] = 1.4  # the tube's exclusive end: frame 7 = st_frame - 1 + 3 boxes, at 5 fps
    assert load_annotations(write_json("whole.json", data), "hcstvg_v1")[1].warnings == []
    data[V0 + ".mp4"]["bbox"].pop()  # one box fewer than the frames of the tube
    path = write_json("test.json", data)
    records, report = load_annotations(path, "hcstvg_v1")
    assert [r.tube for r in records] == [(4, 6), (0, 2)]  # kept, as the boxes say
    [warning] = report.warnings
    assert (warning.kind, warning.entry, warning.video_id, warning.sentence_ids) == ("box_count", 0, V0, (0,))
    message = warning.message
    assert message.startswith(f"{path}: sentence 0 (video '{V0}', entry 0): field 'bbox': ")
    assert "2 boxes make the tube frames [4, 6), but ed_time 1.4 s is frame 7.0 at 5 fps: boxes are missing" in (
        message)
    assert "Fix: give bbox one box per tube frame" in message
    assert "1 warnings (1 box_count), sentences kept" in report.summary() and message in report.summary()
    assert f"{path}: 1 annotation warnings (1 box_count)" in caplog.text


@pytest.mark.parametrize("ed_time", [1.2, 1.3, 1.4])
def test_hcstvg_ed_time_may_mark_the_last_tube_frame_or_the_end(write_json, ed_time):
    data = copy.deepcopy(HCSTVG_V1)  # tube frames [4, 7) at 5 fps: last frame 1.2 s, end 1.4 s
    data[V0 + ".mp4"]["ed_time"] = ed_time
    assert load_annotations(write_json("test.json", data), "hcstvg_v1")[1].warnings == []
    data[V0 + ".mp4"]["ed_time"] = 2.0
    [warning] = load_annotations(write_json("test.json", data), "hcstvg_v1")[1].warnings
    assert "ed_time 2 s is frame 10.0 at 5 fps: boxes are missing" in warning.message
    data[V0 + ".mp4"]["ed_time"] = 0.8
    [warning] = load_annotations(write_json("test.json", data), "hcstvg_v1")[1].warnings
    assert "ed_time 0.8 s is frame 4.0 at 5 fps: boxes lie past ed_time" in warning.message


def test_duplicated_vidstg_entry_is_a_counted_warning(vidstg_files):
    def repeat(items: list) -> None:
        items.append(copy.deepcopy(items[1]))  # item 2 = item 1: sentence 4 repeats sentence 3
        items[0]["questions"].append({**items[0]["questions"][0], "description": "Who  watches the DOG?"})
        items[0]["captions"].append({**items[0]["questions"][0], "target_id": 2})  # another target: no repeat

    path, vidor = vidstg_files(edit_items=repeat)
    records, report = load_annotations(path, "vidstg", vidor_dir=vidor)
    assert len(records) == 7 and report.skipped == []
    flagged = [(w.kind, w.entry, w.video_id, w.sentence_ids) for w in report.warnings]
    assert flagged == [("duplicate", 0, "1001", (2,)), ("duplicate", 2, "1002", (6,))]
    assert report.warnings[0].message.startswith(f"{path}: sentence 2 (video '1001', entry 0): field '<sentence>': "
                                                 "repeats sentence 0 (entry 0)")
    message = report.warnings[1].message
    assert f"{path}: sentence 6 (video '1002', entry 2)" in message and "repeats sentence 5 (entry 1)" in message
    assert "'a child runs.'" in message and "Fix: keep one copy" in message
    assert "2 warnings (2 duplicate)" in report.summary()


def test_duplicated_tubedetr_vidstg_sentence_is_a_counted_warning(write_json):
    data = tubedetr_vidstg()
    data["videos"].append({**data["videos"][0], "video_id": 8})
    records, report = load_annotations(write_json("val.json", data), "vidstg")
    assert [r.sentence_id for r in records] == [7, 3, 8]
    assert [(w.kind, w.sentence_ids) for w in report.warnings] == [("duplicate", (8,))]
    assert "repeats sentence 7 (entry 0)" in report.warnings[0].message


def test_warnings_are_not_skipped_by_skip_invalid(vidstg_files):
    path, vidor = vidstg_files(edit_items=lambda items: items.append(copy.deepcopy(items[1])))
    records, report = load_annotations(path, "vidstg", vidor_dir=vidor, skip_invalid=True)
    assert [r.sentence_id for r in records] == [0, 1, 2, 3, 4] and report.skipped == []
    assert [w.sentence_ids for w in report.warnings] == [(4,)]
