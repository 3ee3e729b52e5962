import json

import numpy as np
import pytest

from bridge_stg.eval.metrics import PredictionTable, score, summarize
from bridge_stg.eval.prediction_files import detect_format, read_predictions, write_reference, write_tubes
from bridge_stg.eval.protocols import build_targets, get_protocol
from bridge_stg.eval.simulate import simulate_predictions, simulate_vidstg
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

    # scoring reads the sentence type from the annotation: a file whose every qtype contradicts it scores the same
    records = simulate_vidstg(6, seed=3)
    tubes = simulate_predictions(records, seed=4)
    swap = {"declarative": "interrogative", "interrogative": "declarative"}
    write_reference(tmp_path / "right.json", tubes, {r.sentence_id: r.sentence_type for r in records})
    write_reference(tmp_path / "wrong.json", tubes, {r.sentence_id: swap[r.sentence_type] for r in records})
    assert json.loads((tmp_path / "wrong.json").read_text()) != json.loads((tmp_path / "right.json").read_text())
    targets = build_targets(records, get_protocol("tubedetr"))
    right, wrong = (summarize(score(targets, read_predictions(tmp_path / f"{n}.json"))) for n in ("right", "wrong"))
    assert wrong == right
    assert right["declarative_count"] == sum(r.sentence_type == "declarative" for r in records) > 0


@pytest.mark.parametrize("content,message", [
    ({"predictions": {"7_3": {"boxes": [[1, 2, 3, 4]]}}, "video_predictions": {}}, "belongs to no entry"),
    ({"predictions": {"x_3": {"boxes": [[1, 2, 3, 4]]}}, "video_predictions": {"7": {"sted": [0, 1]}}},
     "not an integer"),
    ({"predictions": {"7_3": {"boxes": []}}, "video_predictions": {"7": {"sted": [0, 1]}}}, "one"),
    ({"predictions": {}, "video_predictions": {"7": {"sted": [5, 1]}}}, "inverted span"),
    ({"predictions": {}}, "reference-format"),
    ({"predictions": {"+7_3": {"boxes": [[1, 2, 3, 4]]}}, "video_predictions": {"7": {"sted": [0, 9]}}},
     "'\\+7_3' is not an integer pair"),
    ({"predictions": {}, "video_predictions": {str(2**70): {"sted": [0, 1]}}},
     f"video_predictions key '{2**70}': an id beyond 64-bit integers"),
    ({"predictions": {f"7_{2**70}": {"boxes": [[1, 2, 3, 4]]}}, "video_predictions": {"7": {"sted": [0, 9]}}},
     f"predictions key '7_{2**70}': an id beyond 64-bit integers"),
    ({"predictions": {}, "video_predictions": {"7": {"sted": [0, 2**70]}}}, "sted holds a frame beyond 64-bit"),
    ({"predictions": {f"7_{2**32}": {"boxes": [[1, 2, 3, 4]]}}, "video_predictions": {"7": {"sted": [0, 9]}}},
     "sentence 7 has a box on frame 4294967296"),
    ({"predictions": {"7_-1": {"boxes": [[1, 2, 3, 4]]}}, "video_predictions": {"7": {"sted": [0, 9]}}},
     "sentence 7 has a box on frame -1"),
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


@pytest.mark.parametrize("line,message", [
    ({"sentence_id": 2**70, "span": [0, 2], "frame_ids": [], "boxes_xyxy": []}, f"line 2: sentence_id holds {2**70}"),
    ({"sentence_id": 1, "span": [0, 2], "frame_ids": [2**70], "boxes_xyxy": [0, 0, 1, 1]},
     f"line 2: frame_ids holds {2**70}"),
    ({"sentence_id": 1, "span": [0, 2**70], "frame_ids": [], "boxes_xyxy": []}, f"line 2: span holds {2**70}"),
    ({"sentence_id": 1, "span": [0, 2], "frame_ids": [2**32 + 1], "boxes_xyxy": [0, 0, 1, 1]},
     "sentence 1 has a box on frame 4294967297"),
])
def test_tube_ids_that_do_not_fit_name_the_line_or_sentence(tmp_path, line, message):
    path = tmp_path / "big.jsonl"
    first = {"sentence_id": 0, "span": [0, 2], "frame_ids": [0], "boxes_xyxy": [0, 0, 1, 1]}
    path.write_text(json.dumps(first) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(ValueError, match=message) as err:
        read_predictions(path)
    assert "big.jsonl" in str(err.value)


REF_TAIL = '"video_predictions": {"7": {"sted": [0, 9]}}}'


@pytest.mark.parametrize("text,key", [
    ('{"predictions": {"7_3": {"boxes": [[1, 2, 3, 4]]}, "7_3": {"boxes": [[5, 6, 7, 8]]}}, ' + REF_TAIL, "7_3"),
    ('{"predictions": {}, "video_predictions": {"7": {"sted": [0, 9]}, "7": {"sted": [2, 4]}}}', "7"),
    ('{"predictions": {"7_3": {"boxes": [[1, 2, 3, 4]], "boxes": [[5, 6, 7, 8]]}}, ' + REF_TAIL, "boxes"),
    ('{"predictions": {}, "video_predictions": {"7": {"sted": [0, 9], "sted": [2, 4]}}}', "sted"),
    ('{"predictions": {"7_3": {"boxes": [[1, 2, 3, 4]]}}, "predictions": {}, ' + REF_TAIL, "predictions"),
    # the same key spelled with an escape: the byte count cannot see it, the full parse does
    ('{"predictions": {"7_3": {"boxes": [[1, 2, 3, 4]]}, "\\u0037_3": {"boxes": [[5, 6, 7, 8]]}}, ' + REF_TAIL, "7_3"),
])
def test_duplicate_keys_in_reference_files_are_errors_naming_the_key(tmp_path, text, key):
    path = tmp_path / "dup.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"key '{key}' appears twice") as err:
        read_predictions(path)
    assert "dup.json" in str(err.value)


@pytest.mark.parametrize("line,key", [
    ('{"sentence_id": 1, "span": [0, 2], "span": [5, 9], "frame_ids": [], "boxes_xyxy": []}', "span"),
    ('{"sentence_id": 1, "sentence_id": 2, "span": [0, 2], "frame_ids": [], "boxes_xyxy": []}', "sentence_id"),
    ('{"sentence_id": 1, "span": [0, 2], "frame_ids": [0], "boxes_xyxy": [0, 0, 1, 1], "frame_ids": []}',
     "frame_ids"),
])
def test_duplicate_keys_in_tube_files_are_errors_naming_line_and_key(tmp_path, line, key):
    path = tmp_path / "dup.jsonl"
    path.write_text('{"sentence_id": 0, "span": [0, 2], "frame_ids": [], "boxes_xyxy": []}\n' + line + "\n")
    with pytest.raises(ValueError, match=f"dup.jsonl: line 2: key '{key}' appears twice"):
        read_predictions(path)


@pytest.mark.parametrize("qtype", ['say \\"boxes\\"', "sted"])
def test_files_that_defeat_the_fast_duplicate_check_still_read(tmp_path, qtype):
    # an escape, or a key name used as a value, sends the check to the full parse, which finds no duplicate
    path = tmp_path / "p.json"
    path.write_text('{"predictions": {"7_3": {"boxes": [[1, 2, 3, 4]]}}, "video_predictions": {"7": {"sted": [0, 9], '
                    f'"qtype": "{qtype}"}}}}}}')
    assert as_dict(read_predictions(path)) == {7: ((0, 9), [3], [[1.0, 2.0, 3.0, 4.0]])}


@pytest.mark.parametrize("writer", [write_tubes, write_reference])
def test_files_without_predictions_read_as_empty_tables(tmp_path, writer):
    path = tmp_path / "none.json"
    writer(path, [])
    table = read_predictions(path)
    assert len(table) == 0 and table.boxes_xyxy_px.shape == (0, 4)
