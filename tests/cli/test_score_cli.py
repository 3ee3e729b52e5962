"""bridge-stg-eval and bridge-stg-tables end to end, on simulated annotation and prediction files."""

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


@pytest.mark.skipif(not SHARED_VIDSTG.is_file(), reason="shared real annotation files are not in this checkout")
def test_real_vidstg_sentence_file_scores_once_boxes_exist(tmp_path, capsys):
    # the public VidSTG file has no boxes: scoring must say where they come from
    write_tubes(tmp_path / "p.jsonl", [])
    assert eval_cli("--dataset", "vidstg", "--annotations", SHARED_VIDSTG, "--predictions", tmp_path / "p.jsonl") == 2
    assert "--vidor-dir" in capsys.readouterr().err
