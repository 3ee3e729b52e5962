"""bridge-stg-eval and bridge-stg-tables end to end, on simulated annotation and prediction files."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from bridge_stg.annotations import write_hcstvg, write_tubedetr_vidstg, write_vidstg_official
from bridge_stg.cli import score as score_cli
from bridge_stg.cli import tables as tables_cli
from bridge_stg.eval.metrics import PredictionTable, score, summarize
from bridge_stg.eval.prediction_files import write_reference, write_tubes
from bridge_stg.eval.protocols import build_targets, get_protocol
from bridge_stg.eval.simulate import simulate_hcstvg, simulate_predictions, simulate_vidstg

SHARED_VIDSTG = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "vidstg" / "val_annotations.json"


@pytest.fixture(scope="module")
def vidstg(tmp_path_factory):
    d = tmp_path_factory.mktemp("vidstg")
    records = simulate_vidstg(30, seed=3)
    preds = simulate_predictions(records, seed=4)
    write_vidstg_official(records, d / "test_annotations.json", d / "vidor")
    write_tubedetr_vidstg(records, d / "test.json")
    write_tubes(d / "pred.jsonl", preds)
    write_reference(d / "pred_ref.json", preds)
    return d, records, preds


def eval_cli(*args) -> int:
    return score_cli.main([str(a) for a in args])


def eval_error(capsys, *args) -> tuple[str, str]:
    """Run bridge-stg-eval expecting a clean failure (status 2, an error line, no traceback); (stdout, stderr)."""
    assert eval_cli(*args) == 2
    out, err = capsys.readouterr()
    assert err.startswith("bridge-stg-eval: error: ") and "Traceback" not in out + err
    return out, err


def test_official_and_preprocessed_annotations_and_both_prediction_formats_agree(vidstg, capsys):
    d, records, preds = vidstg
    expected = summarize(score(build_targets(records, get_protocol("tubedetr")), PredictionTable.from_tubes(preds)))
    outs = []
    for ann, extra, pred in [("test_annotations.json", ["--vidor-dir", d / "vidor"], "pred.jsonl"),
                             ("test.json", [], "pred_ref.json")]:
        out = d / f"m_{pred}.json"
        assert eval_cli("--dataset", "vidstg", "--annotations", d / ann, *extra, "--predictions", d / pred,
                        "--out", out) == 0
        outs.append(json.loads(out.read_text()))
    for m in outs:
        for key, value in expected.items():
            assert m[key] == pytest.approx(value) if isinstance(value, float) else m[key] == value
        assert m["dataset"] == "vidstg" and m["split"] == "test" and m["protocol"] == "tubedetr"
        assert m["declarative_count"] == 30 and m["interrogative_count"] == 30
    printed = capsys.readouterr().out
    assert "declarative (30)" in printed and "average m_vIoU" in printed


def test_missing_prediction_fails_with_ids_then_scores_zero_on_request(vidstg, tmp_path, capsys):
    d, records, preds = vidstg
    write_tubes(tmp_path / "partial.jsonl", preds[:-3])
    args = ["--dataset", "vidstg", "--annotations", d / "test.json", "--predictions", tmp_path / "partial.jsonl"]
    assert eval_cli(*args) == 2
    err = capsys.readouterr().err
    assert "no prediction for 3 of 60 sentences" in err and "57" in err
    assert eval_cli(*args, "--missing-as-zero", "--out", tmp_path / "m.json") == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["missing_predictions"] == 3
    assert "scored as 0: 3 missing sentences" in capsys.readouterr().out


def test_excluded_videos_are_left_out_and_counted(vidstg, tmp_path):
    d, records, _ = vidstg
    out = tmp_path / "m.json"
    assert eval_cli("--dataset", "vidstg", "--annotations", d / "test.json", "--predictions", d / "pred.jsonl",
                    "--exclude-videos", records[0].video_id, "--out", out) == 0
    m = json.loads(out.read_text())
    assert m["count"] == 58 and m["excluded_sentences"] == 2


def test_official_file_without_vidor_dir_explains_the_fix(vidstg, capsys):
    d, _, _ = vidstg
    assert eval_cli("--dataset", "vidstg", "--annotations", d / "test_annotations.json",
                    "--predictions", d / "pred.jsonl") == 2
    assert "--vidor-dir" in capsys.readouterr().err


def test_malformed_annotation_names_the_file(tmp_path, vidstg, capsys):
    d, _, _ = vidstg
    bad = json.loads((d / "test.json").read_text())
    del bad["videos"][4]["tube_start_frame"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert eval_cli("--dataset", "vidstg", "--annotations", tmp_path / "bad.json", "--predictions",
                    d / "pred.jsonl") == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "tube_start_frame" in err


@pytest.mark.parametrize("protocol", ["tubedetr", "stcat", "hcstvg_official"])
def test_hcstvg_protocols_and_tables(tmp_path, protocol, capsys):
    records = simulate_hcstvg(25, version=1, seed=5)
    write_hcstvg(records, tmp_path / "test.json", version=1)
    write_tubes(tmp_path / "pred.jsonl", simulate_predictions(records, seed=6))
    out = tmp_path / "metrics.json"
    assert eval_cli("--dataset", "hcstvg_v1", "--annotations", tmp_path / "test.json", "--predictions",
                    tmp_path / "pred.jsonl", "--protocol", protocol, "--out", out) == 0
    m = json.loads(out.read_text())
    assert m["protocol"] == protocol and m["count"] == 25 and 0 < m["viou"] < m["gt_viou"] <= 1
    capsys.readouterr()
    assert tables_cli.main([str(out), "--format", "markdown"]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("| **pred**"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == protocol and float(cells[3]) == pytest.approx(100 * m["viou"], abs=0.05)


def test_interpolation_protocols_differ_from_sampled_one_on_sparse_predictions(tmp_path):
    records = simulate_hcstvg(10, version=2, seed=7)
    write_hcstvg(records, tmp_path / "val_v2.json", version=2)
    write_tubes(tmp_path / "p.jsonl", simulate_predictions(records, seed=8))
    results = {}
    for protocol in ("tubedetr", "hcstvg_official"):
        out = tmp_path / f"{protocol}.json"
        assert eval_cli("--dataset", "hcstvg_v2", "--annotations", tmp_path / "val_v2.json", "--predictions",
                        tmp_path / "p.jsonl", "--protocol", protocol, "--out", out) == 0
        results[protocol] = json.loads(out.read_text())
    assert results["tubedetr"]["tiou"] != results["hcstvg_official"]["tiou"]  # the one-frame GT shift
    assert np.isfinite(results["hcstvg_official"]["viou"])


@pytest.mark.parametrize("empty", ['{"predictions": {}, "video_predictions": {}}', ""], ids=["reference", "tubes"])
def test_no_predictions_fail_or_score_every_sentence_zero(vidstg, tmp_path, capsys, empty):
    d, _, _ = vidstg
    path = tmp_path / "none.json"
    path.write_text(empty)
    args = ["--dataset", "vidstg", "--annotations", d / "test.json", "--predictions", path]
    _, err = eval_error(capsys, *args)
    assert f"{path}: no prediction for 60 of 60 sentences" in err and "--missing-as-zero" in err
    assert eval_cli(*args, "--missing-as-zero", "--out", tmp_path / "m.json") == 0
    assert f"{path} holds no predictions" in capsys.readouterr().err
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["count"] == m["missing_predictions"] == 60
    assert all(m[k] == 0.0 for k in m if isinstance(m[k], float))


@pytest.mark.parametrize("fmt", ["reference", "tubes"])
def test_sentence_id_beyond_int64_is_a_clean_error(vidstg, tmp_path, capsys, fmt):
    d, _, preds = vidstg
    big = [dataclasses.replace(preds[0], sentence_id=2**70), *preds[1:]]
    path = tmp_path / "big.json"
    (write_reference if fmt == "reference" else write_tubes)(path, big)
    _, err = eval_error(capsys, "--dataset", "vidstg", "--annotations", d / "test.json", "--predictions", path)
    assert str(path) in err and str(2**70) in err and "64-bit" in err


def test_duplicate_json_key_is_an_error_naming_key_and_file(vidstg, tmp_path, capsys):
    d, _, preds = vidstg
    text = (d / "pred_ref.json").read_text()
    sid = preds[0].sentence_id
    dup = text.replace('"video_predictions":{', f'"video_predictions":{{"{sid}":{{"sted":[0,1]}},', 1)
    assert dup != text
    (tmp_path / "dup.json").write_text(dup)
    _, err = eval_error(capsys, "--dataset", "vidstg", "--annotations", d / "test.json", "--predictions",
                        tmp_path / "dup.json")
    assert f"{tmp_path / 'dup.json'}: key '{sid}' appears twice" in err


def test_frame_id_beyond_2_32_is_an_error_naming_the_sample(vidstg, tmp_path, capsys):
    # frame 2^32 + f of one sentence would be read as frame f of the next one
    d, _, preds = vidstg
    p = preds[1]
    moved = dataclasses.replace(p, frame_ids=np.concatenate([p.frame_ids[:-1], p.frame_ids[-1:] + 2**32]))
    write_tubes(tmp_path / "far.jsonl", [preds[0], moved, *preds[2:]])
    _, err = eval_error(capsys, "--dataset", "vidstg", "--annotations", d / "test.json", "--predictions",
                        tmp_path / "far.jsonl")
    assert f"far.jsonl: sentence {p.sentence_id} has a box on frame {p.frame_ids[-1] + 2**32}" in err


@pytest.mark.parametrize("threshold", ["nan", "1.5", "0"])
def test_thresholds_outside_zero_one_are_refused_before_scoring(vidstg, capsys, threshold):
    d, _, _ = vidstg
    out, err = eval_error(capsys, "--dataset", "vidstg", "--annotations", d / "test.json", "--predictions",
                          d / "pred.jsonl", "--thresholds", "0.3", threshold)
    assert "--thresholds" in err and f"{float(threshold)} is not a vIoU@R threshold" in err and out == ""


@pytest.mark.parametrize("case", ["out folder", "per-sentence folder", "parent is a file", "out is the predictions",
                                  "same file twice"])
def test_unwritable_outputs_are_refused_before_scoring(vidstg, tmp_path, capsys, case):
    d, _, _ = vidstg
    (tmp_path / "a_file").write_text("")
    pred = tmp_path / "pred.jsonl"
    pred.write_bytes((d / "pred.jsonl").read_bytes())
    outputs, named = {
        "out folder": (["--out", tmp_path], f"--out {tmp_path} is an existing folder"),
        "per-sentence folder": (["--per-sentence", tmp_path], f"--per-sentence {tmp_path} is an existing folder"),
        "parent is a file": (["--out", tmp_path / "a_file" / "m.json"], f"{tmp_path / 'a_file'} is a file"),
        "out is the predictions": (["--out", pred], f"--out {pred} is one of the input files"),
        "same file twice": (["--out", tmp_path / "m.json", "--per-sentence", tmp_path / "m.json"],
                            "--out and --per-sentence both name"),
    }[case]
    out, err = eval_error(capsys, "--dataset", "vidstg", "--annotations", d / "test.json", "--predictions", pred,
                          *outputs)
    assert named in err and out == ""  # nothing was scored or printed
    assert pred.read_bytes() == (d / "pred.jsonl").read_bytes()


def test_per_sentence_scores_are_written(vidstg, tmp_path):
    d, _, _ = vidstg
    path = tmp_path / "new" / "scores.jsonl"
    assert eval_cli("--dataset", "vidstg", "--annotations", d / "test.json", "--predictions", d / "pred.jsonl",
                    "--per-sentence", path) == 0
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 60 and all(r["predicted"] and 0 <= r["viou"] <= r["gt_viou"] <= 1 for r in rows)


@pytest.mark.parametrize("case", ["folder", "input"])
def test_tables_out_is_checked_before_rendering(vidstg, tmp_path, capsys, case):
    d, _, _ = vidstg
    metrics = tmp_path / "m.json"
    assert eval_cli("--dataset", "vidstg", "--annotations", d / "test.json", "--predictions", d / "pred.jsonl",
                    "--out", metrics) == 0
    before = metrics.read_text()
    capsys.readouterr()
    out_path = tmp_path if case == "folder" else metrics
    assert tables_cli.main([str(metrics), "--out", str(out_path)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("bridge-stg-tables: error: --out") and str(out_path) in err and out == ""
    assert metrics.read_text() == before


@pytest.mark.skipif(not SHARED_VIDSTG.is_file(), reason="shared real annotation files are not in this checkout")
def test_real_vidstg_sentence_file_scores_once_boxes_exist(tmp_path, capsys):
    # the public VidSTG file has no boxes: scoring must say where they come from
    write_tubes(tmp_path / "p.jsonl", [])
    assert eval_cli("--dataset", "vidstg", "--annotations", SHARED_VIDSTG, "--predictions", tmp_path / "p.jsonl") == 2
    assert "--vidor-dir" in capsys.readouterr().err


def test_flags_reach_the_metrics_file(vidstg, tmp_path):
    """--thresholds, --per-sentence, --name, --split and --skip-invalid each change what is written."""
    d, records, preds = vidstg
    targets = build_targets(records, get_protocol("tubedetr", (0.1, 0.7)))
    scores = score(targets, PredictionTable.from_tubes(preds))
    out, per_sentence = tmp_path / "m.json", tmp_path / "s.jsonl"
    assert eval_cli("--dataset", "vidstg", "--annotations", d / "test.json", "--predictions", d / "pred.jsonl",
                    "--thresholds", "0.1", "0.7", "--name", "my row", "--split", "val", "--out", out,
                    "--per-sentence", per_sentence) == 0
    m = json.loads(out.read_text())
    assert m["name"] == "my row" and m["split"] == "val"
    expected = summarize(scores)
    for key in ("declarative_viou@0.1", "declarative_viou@0.7", "interrogative_viou@0.7", "average_viou"):
        assert m[key] == pytest.approx(expected[key])
    assert "declarative_viou@0.5" not in m
    rows = {r["sentence_id"]: r for r in map(json.loads, per_sentence.read_text().splitlines())}
    for i, sid in enumerate(scores.sentence_ids.tolist()):
        assert rows[sid]["tiou"] == pytest.approx(scores.tiou[i]) and rows[sid]["viou"] == pytest.approx(scores.viou[i])

    # one entry made invalid (an inverted tube): an error without --skip-invalid, skipped and counted with it
    data = json.loads((d / "test.json").read_text())
    bad = data["videos"][0]
    bad["tube_start_frame"], bad["tube_end_frame"] = bad["tube_end_frame"], bad["tube_start_frame"]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    args = ["--dataset", "vidstg", "--annotations", tmp_path / "bad.json", "--predictions", d / "pred.jsonl"]
    assert eval_cli(*args, "--out", tmp_path / "a.json") == 2
    assert eval_cli(*args, "--skip-invalid", "--out", tmp_path / "b.json") == 0
    skipped = json.loads((tmp_path / "b.json").read_text())
    assert skipped["skipped_sentences"] == 1 and skipped["count"] == len(records) - 1
