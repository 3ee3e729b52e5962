"""The public annotation files in ``<repo>/../shared/data`` (absent from a user's clone: tests then skip)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bridge_stg.annotations import load_annotations

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} not present (the public annotation files are only shipped beside the checkout)")
    return path


def test_vidstg_val_sentence_file():
    records, report = load_annotations(_shared("vidstg/val_annotations.json"), "vidstg")
    assert Counter(r.sentence_type for r in records) == {"declarative": 3996, "interrogative": 4960}
    assert [r.sentence_id for r in records] == list(range(8956))
    assert len({r.video_id for r in records}) == 602
    assert (report.num_entries, report.num_records, report.skipped, report.excluded) == (3996, 8956, [], [])
    # the release repeats 215 sentences across items (same video, target, segment, tube and text): the reference
    # evaluators count every copy, so they are kept and flagged
    assert Counter(w.kind for w in report.warnings) == {"duplicate": 215}
    first = records[0]  # item 0 of the file: vid 10712559773, one question then one caption
    assert (first.video_id, first.sentence_type, first.target_id) == ("10712559773", "interrogative", 2)
    assert first.segment == (496, 596) and first.tube == (510, 556)
    assert (first.fps, first.frame_count, first.width, first.height) == (29.97, 596, 640, 360)
    assert records[1].sentence_type == "declarative" and records[1].query.startswith("the child in red")


def test_vidstg_val_videos_are_listed_in_val_files():
    listed = set(json.loads(_shared("vidstg/val_files.json").read_text()))
    records, _ = load_annotations(_shared("vidstg/val_annotations.json"), "vidstg")
    assert {r.video_id for r in records} <= listed


def test_hcstvg_v2_query_file():
    records, report = load_annotations(_shared("hcstvg_v2/query_v2.json"), "hcstvg_v2")
    assert len(records) == 2931 and report.file_format == "hcstvg_query"
    assert [r.sentence_id for r in records] == list(range(2931))
    assert all(r.tube is None and r.query for r in records)
    assert len({r.video_path for r in records}) == 2931
