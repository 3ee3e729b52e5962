import json

import numpy as np
import pytest

from bridge_stg.eval.metrics import PredictionTable
from bridge_stg.eval.prediction_files import detect_format, read_predictions, write_reference, write_tubes
from bridge_stg.structures import TubePrediction

TUBES = [
    TubePrediction(7, (3, 9), np.array([3, 6]), np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.5, 8.25]])),
    TubePrediction(2, (0, 1), np.array([0]), np.array([[0.0, 0.0, 10.0, 10.0]])),
]


def as_dict(table: PredictionTable):
    out = {}
    for i, sid in enumerate(table.sentence_ids):
        rows = table.box_owner == i
        out[int(sid)] = ((int(table.span_start[i]), int(table.span_end[i])),
                         table.box_frame[rows].tolist(), table.boxes_xyxy_px[rows].tolist())
    return out


@pytest.mark.parametrize("writer,fmt", [(write_tubes, "tubes"), (write_reference, "reference")])
def test_round_trip(tmp_path, writer, fmt):
    path = tmp_path / "p.json"
    writer(path, TUBES)
    assert detect_format(path) == fmt
    assert as_dict(read_predictions(path)) == as_dict(PredictionTable.from_tubes(TUBES))


def test_reference_qtype_is_written_but_never_trusted(tmp_path):
    path = tmp_path / "p.json"
    write_reference(path, TUBES, {7: "declarative", 2: "interrogative"})
    data = json.loads(path.read_text())
    assert data["video_predictions"]["7"] == {"sted": [3, 9], "qtype": "declarative"}
    assert data["predictions"]["7_6"] == {"boxes": [[5.0, 6.0, 7.5, 8.25]]}


@pytest.mark.parametrize("content,message", [
    ({"predictions": {"7_3": {"boxes": [[1, 2, 3, 4]]}}, "video_predictions": {}}, "belongs to no entry"),
    ({"predictions": {"x_3": {"boxes": [[1, 2, 3, 4]]}}, "video_predictions": {"7": {"sted": [0, 1]}}},
     "not an integer"),
    ({"predictions": {"7_3": {"boxes": []}}, "video_predictions": {"7": {"sted": [0, 1]}}}, "one"),
    ({"predictions": {}, "video_predictions": {"7": {"sted": [5, 1]}}}, "inverted span"),
    ({"predictions": {}}, "reference-format"),
])
def test_malformed_reference_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message) as err:
        read_predictions(path)
    assert "bad.json" in str(err.value)


def test_tube_line_with_mismatched_boxes_is_rejected(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"sentence_id": 1, "span": [0, 2], "frame_ids": [0, 1], "boxes_xyxy": [0, 0, 1, 1]}))
    with pytest.raises(ValueError, match="line 1"):
        read_predictions(path)


def test_non_finite_boxes_are_rejected(tmp_path):
    path = tmp_path / "nan.jsonl"
    path.write_text('{"sentence_id": 1, "span": [0, 2], "frame_ids": [0], "boxes_xyxy": [0, NaN, 1, 1]}\n')
    with pytest.raises(ValueError, match="nan.jsonl"):
        read_predictions(path)


def test_without_drops_sentences_and_their_boxes():
    table = PredictionTable.from_tubes(TUBES).without(np.array([7]))
    assert as_dict(table) == {2: ((0, 1), [0], [[0.0, 0.0, 10.0, 10.0]])}
