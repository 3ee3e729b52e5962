"""The dataset registry: every tool that names a dataset reads it, so one record adds a dataset everywhere."""

import json
from pathlib import Path

import numpy as np
import pytest

from bridge_stg.annotations.report import LoadReport
from bridge_stg.cli import data as data_cli
from bridge_stg.cli import score as score_cli
from bridge_stg.cli import tables as tables_cli
from bridge_stg.data.video_io import write_video
from bridge_stg.engine.builder import ConfigError, _check_sources
from bridge_stg.engine.specs import DataSpec, SourceSpec
from bridge_stg.eval.datasets import (
    DatasetInfo,
    dataset_names,
    get_dataset,
    metric_keys,
    published_rows,
    register_dataset,
    unregister_dataset,
)
from bridge_stg.eval.prediction_files import write_tubes
from bridge_stg.structures import SentenceRecord, TubePrediction

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"


def read_toy(path, dataset, options):
    """A toy format, one JSON object per line: video, fps, frames, size, span, box (xyxy px on every span frame)."""
    records = []
    for i, line in enumerate(path.read_text().splitlines()):
        e = json.loads(line)
        frames = np.arange(*e["span"])
        records.append(SentenceRecord(
            sentence_id=i, dataset=dataset, video_id=Path(e["video"]).stem, video_path=e["video"], fps=e["fps"],
            frame_count=e["frames"], width=e["size"][0], height=e["size"][1], segment=(0, e["frames"]),
            tube=tuple(e["span"]), query=e["query"], box_frame_ids=frames,
            boxes_xyxy_px=np.tile(np.array(e["box"], dtype=float), (len(frames), 1))))
    report = LoadReport(path, dataset, "toy_jsonl", has_boxes=True, num_entries=len(records),
                        num_records=len(records))
    return records, report


@pytest.fixture
def toy_dataset():
    info = register_dataset(DatasetInfo("toy", "tube", "Toy benchmark", read_toy))
    yield info
    unregister_dataset("toy")


def test_a_registered_dataset_is_checked_scored_and_tabled(toy_dataset, tmp_path, capsys):
    write_video(tmp_path / "videos" / "clip.mp4", np.full((20, 48, 64, 3), 90, dtype=np.uint8), fps=10)
    entries = [{"video": "clip.mp4", "fps": 10.0, "frames": 20, "size": [64, 48], "span": [4, 12],
                "box": [8, 8, 40, 32], "query": "the grey square"},
               {"video": "clip.mp4", "fps": 10.0, "frames": 20, "size": [64, 48], "span": [0, 10],
                "box": [0, 0, 32, 24], "query": "the top left"}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))

    assert data_cli.main(["check", "--dataset", "toy", "--annotations", str(tmp_path / "test.jsonl"),
                          "--video-dir", str(tmp_path / "videos"), "--workers", "1"]) == 0
    assert "OK, all 1 checked videos" in capsys.readouterr().out
    assert data_cli.main(["check", "--dataset", "toy", "--annotations", str(tmp_path / "test.jsonl"),
                          "--video-dir", str(tmp_path), "--workers", "1"]) == 1  # the videos are not there

    # sentence 0 exactly right; sentence 1 right span, box shifted by half its width: vIoU 1/3
    write_tubes(tmp_path / "pred.jsonl", [
        TubePrediction(0, (4, 12), np.arange(4, 12), np.tile([8.0, 8, 40, 32], (8, 1))),
        TubePrediction(1, (0, 10), np.arange(0, 10), np.tile([16.0, 0, 48, 24], (10, 1)))])
    assert score_cli.main(["--dataset", "toy", "--annotations", str(tmp_path / "test.jsonl"), "--predictions",
                           str(tmp_path / "pred.jsonl"), "--out", str(tmp_path / "metrics.json"),
                           "--name", "ours"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["dataset"] == "toy" and metrics["tiou"] == pytest.approx(1.0)
    assert metrics["viou"] == pytest.approx((1 + 1 / 3) / 2) and metrics["viou@0.5"] == pytest.approx(0.5)

    capsys.readouterr()
    assert tables_cli.main([str(tmp_path / "metrics.json")]) == 0
    table = capsys.readouterr().out
    assert "### Toy benchmark, test split" in table and "No published numbers for this dataset" in table
    assert "| **ours** | tubedetr | 100.0 | 66.7 | 100.0 | 50.0 |" in table

    _check_sources(DataSpec(eval_source=SourceSpec(name="toy_test", kind="toy", split="test")))


def test_tools_refuse_an_unregistered_dataset(tmp_path, capsys):
    with pytest.raises(SystemExit):
        score_cli.main(["--dataset", "toy", "--annotations", "a.json", "--predictions", "p.jsonl"])
    assert "invalid choice: 'toy'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"data.eval_source.kind \(x\): 'toy' is not a registered dataset"):
        _check_sources(DataSpec(eval_source=SourceSpec(name="x", kind="toy")))
    with pytest.raises(ValueError, match=r"unknown dataset 'toy'; registered: \['vidstg'"):
        get_dataset("toy")


def test_records_are_checked_when_registered():
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(DatasetInfo("vidstg", "tube", "again", read_toy))
    with pytest.raises(ValueError, match="task must be one of"):
        DatasetInfo("toy", "video", "Toy", read_toy)
    with pytest.raises(ValueError, match="name other datasets"):
        DatasetInfo("toy", "tube", "Toy", read_toy, published=tuple(published_rows("vidstg")))


def test_builtin_records():
    assert dataset_names() == ("vidstg", "hcstvg_v1", "hcstvg_v2", "synthetic", "charades", "refcoco")
    assert dataset_names("tube") == ("vidstg", "hcstvg_v1", "hcstvg_v2", "synthetic")
    assert metric_keys("vidstg")[-1] == "average_viou" and len(metric_keys("vidstg")) == 9
    for name in dataset_names():
        config = get_dataset(name).config
        if config is not None:  # the named data config exists and evaluates on this dataset
            text = (CONFIGS / f"{config}.yaml").read_text()
            assert f"kind: {name}" in text.split("eval_source:")[1]
