"""Tables of metrics files beside published numbers: values, layout, LaTeX well-formedness, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from markdown_table import markdown_rows

from bridge_stg.cli.tables import main
from bridge_stg.eval.datasets import dataset_title, metric_keys, published_rows
from bridge_stg.eval.published import PUBLISHED, UNKNOWN_PROTOCOL
from bridge_stg.eval.tables import (
    PROTOCOL_NOTE,
    format_value,
    load_metrics_row,
    render_latex,
    render_markdown,
)

VIDSTG_METRICS = {
    "dataset": "vidstg", "split": "test", "protocol": "tubedetr", "name": "ours_7b",
    "declarative_tiou": 0.5123, "declarative_viou": 0.34449, "declarative_viou@0.3": 0.48,
    "declarative_viou@0.5": 0.3305, "declarative_gt_viou": 0.6,
    "interrogative_tiou": 0.5, "interrogative_viou": 0.3, "interrogative_viou@0.3": 0.4,
    "interrogative_viou@0.5": 0.25, "interrogative_gt_viou": 0.55,
    "declarative_count": 3, "interrogative_count": 4, "average_viou": 0.322245,
    "count": 7, "missing_predictions": 0, "missing_boxes": 0,
}
# Expected cells of our row, column by column (×100, one decimal, half up).
VIDSTG_EXPECTED = {
    "Decl. m_tIoU": "51.2", "Decl. m_vIoU": "34.4", "Decl. vIoU@0.3": "48.0", "Decl. vIoU@0.5": "33.1",
    "Int. m_tIoU": "50.0", "Int. m_vIoU": "30.0", "Int. vIoU@0.3": "40.0", "Int. vIoU@0.5": "25.0",
    "Avg. m_vIoU": "32.2",
}
HCSTVG_METRICS = {"dataset": "hcstvg_v1", "split": "test", "protocol": "stcat",
                  "tiou": 0.5, "viou": 0.3912, "viou@0.3": 0.6, "viou@0.5": 0.37, "gt_viou": 0.5, "count": 2}


def write(tmp_path: Path, name: str, metrics: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(metrics))
    return path


# --- published numbers ----------------------------------------------------------------------------

def test_published_numbers_spot_check() -> None:
    vidstg = {r.method: r for r in published_rows("vidstg")}
    assert list(vidstg) == ["TubeDETR", "STCAT", "CG-STVG", "TA-STVG", "SpaceVLLM-7B", "Bridge-STG (paper)"]
    assert vidstg["TubeDETR"].values["declarative_viou@0.3"] == 42.5
    assert vidstg["STCAT"].values["interrogative_viou@0.5"] == 26.6
    assert vidstg["TA-STVG"].values["declarative_tiou"] == 51.7
    assert vidstg["SpaceVLLM-7B"].values["interrogative_viou"] == 25.4
    assert vidstg["CG-STVG"].values["average_viou"] == pytest.approx((34.0 + 29.0) / 2)
    paper = vidstg["Bridge-STG (paper)"].values
    assert paper["average_viou"] == 34.3 and all(v is None for k, v in paper.items() if k != "average_viou")

    v1 = {r.method: r.values for r in published_rows("hcstvg_v1", "test")}
    assert v1["CG-STVG"] == {"tiou": 52.8, "viou": 38.4, "viou@0.3": 61.5, "viou@0.5": 36.3}
    assert v1["SpaceVLLM-7B"]["tiou"] == 56.9
    v2 = {r.method: r.values for r in published_rows("hcstvg_v2", "val")}
    assert list(v2) == ["TubeDETR", "CG-STVG", "TA-STVG", "SpaceVLLM-7B"]
    assert v2["SpaceVLLM-7B"]["viou@0.5"] == 24.7
    assert published_rows("hcstvg_v2", "test") == []


def test_published_protocols() -> None:
    expected = {"TubeDETR": "tubedetr", "STCAT": "stcat", "CG-STVG": "stcat", "TA-STVG": "stcat",
                "SpaceVLLM-7B": UNKNOWN_PROTOCOL, "Bridge-STG (paper)": UNKNOWN_PROTOCOL}
    assert all(r.protocol == expected[r.method] for r in PUBLISHED)
    assert not any(r.ours for r in PUBLISHED)


def test_format_value_rounds_half_up_on_decimals() -> None:
    assert format_value(28.05, "–") == "28.1"
    assert format_value(34.0, "–") == "34.0"
    assert format_value(None, "--") == "--"


# --- rendering ------------------------------------------------------------------------------------

def test_markdown_vidstg_ours_cell_by_cell(tmp_path: Path) -> None:
    ours = load_metrics_row(write(tmp_path, "m.json", VIDSTG_METRICS))
    text = render_markdown("vidstg", list(PUBLISHED) + [ours])
    rows = markdown_rows(text)
    assert "| **ours_7b** |" in text
    assert {k: v for k, v in rows["ours_7b"].items() if k not in ("Method", "Protocol")} == VIDSTG_EXPECTED
    assert rows["ours_7b"]["Protocol"] == "tubedetr"
    assert list(rows)[-1] == "ours_7b"  # published rows first, of this dataset only
    assert len(rows) == 7
    assert rows["TubeDETR"]["Int. m_vIoU"] == "25.7" and rows["TubeDETR"]["Protocol"] == "tubedetr"
    assert rows["STCAT"]["Protocol"] == "stcat"
    assert rows["SpaceVLLM-7B"]["Protocol"] == "not stated"
    assert rows["Bridge-STG (paper)"]["Avg. m_vIoU"] == "34.3"
    assert rows["Bridge-STG (paper)"]["Decl. m_tIoU"] == "–"
    assert PROTOCOL_NOTE in text


def test_markdown_hcstvg_and_no_note_for_one_protocol(tmp_path: Path) -> None:
    ours = load_metrics_row(write(tmp_path, "hc_run.json", HCSTVG_METRICS))
    assert ours.method == "hc_run"  # no "name": the file stem
    text = render_markdown("hcstvg_v1", [ours])
    assert markdown_rows(text)["hc_run"] == {"Method": "**hc_run**", "Protocol": "stcat", "m_tIoU": "50.0",
                                             "m_vIoU": "39.1", "vIoU@0.3": "60.0", "vIoU@0.5": "37.0"}
    assert PROTOCOL_NOTE not in text
    assert PROTOCOL_NOTE in render_markdown("hcstvg_v1", published_rows("hcstvg_v1") + [ours])


def test_render_rejects_our_rows_of_another_dataset(tmp_path: Path) -> None:
    ours = load_metrics_row(write(tmp_path, "hc.json", HCSTVG_METRICS))
    with pytest.raises(ValueError, match="not vidstg"):
        render_markdown("vidstg", [ours])


def _braces_balanced(text: str) -> bool:
    depth = 0
    for m in re.finditer(r"(?<!\\)[{}]", text):
        depth += 1 if m.group() == "{" else -1
        if depth < 0:
            return False
    return depth == 0


def _columns_spanned(row: str) -> int:
    spans = [int(n) for n in re.findall(r"\\multicolumn\{(\d+)\}", row)]
    return len(re.findall(r"(?<!\\)&", row)) + 1 + sum(n - 1 for n in spans)


@pytest.mark.parametrize(("dataset", "metrics", "n_cols"), [("vidstg", VIDSTG_METRICS, 11),
                                                           ("hcstvg_v1", HCSTVG_METRICS, 6)])
def test_latex_is_well_formed(tmp_path: Path, dataset: str, metrics: dict, n_cols: int) -> None:
    ours = load_metrics_row(write(tmp_path, "my_run.json", {**metrics, "name": "my_run & co"}))
    text = render_latex(dataset, published_rows(dataset) + [ours])
    assert _braces_balanced(text)
    lines = text.splitlines()
    assert lines[0] == r"\begin{tabular}{ll" + "r" * (n_cols - 2) + "}"
    assert lines[1] == r"\toprule" and r"\bottomrule" in lines and r"\end{tabular}" in lines
    rows = [line for line in lines if "&" in line]
    assert all(line.endswith(r" \\") for line in rows)
    assert all(_columns_spanned(line) == n_cols for line in rows)
    data = [line for line in rows if not line.startswith(("Method", " "))]
    assert len(data) == len(published_rows(dataset)) + 1
    assert lines[lines.index(data[-1]) - 1] == r"\midrule"  # ours are separated from published rows
    assert data[-1].startswith(r"my\_run \& co & " + metrics["protocol"])
    assert "not stated" in text and PROTOCOL_NOTE in text
    if dataset == "vidstg":
        assert r"\multicolumn{4}{c}{Declarative}" in text and r"\cmidrule(lr){3-6}" in text
        assert "& -- &" in text and "34.3" in text


# --- metrics files and the CLI --------------------------------------------------------------------

def test_missing_dataset_key_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "no_dataset.json", {k: v for k, v in VIDSTG_METRICS.items() if k != "dataset"})
    with pytest.raises(ValueError, match=r"no_dataset\.json.*'dataset'"):
        load_metrics_row(path)
    assert main([str(path)]) == 2
    assert "no_dataset.json" in capsys.readouterr().err


def test_bad_metrics_files_fail_clearly(tmp_path: Path) -> None:
    no_metric = {k: v for k, v in HCSTVG_METRICS.items() if k != "viou@0.5"}
    with pytest.raises(ValueError, match=r"a\.json.*'viou@0\.5'"):
        load_metrics_row(write(tmp_path, "a.json", no_metric))
    with pytest.raises(ValueError, match=r"b\.json.*not a fraction"):
        load_metrics_row(write(tmp_path, "b.json", {**HCSTVG_METRICS, "viou": 39.1}))
    with pytest.raises(ValueError, match=r"c\.json.*unknown dataset"):
        load_metrics_row(write(tmp_path, "c.json", {**HCSTVG_METRICS, "dataset": "hcstvg"}))


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hc = write(tmp_path, "hc.json", HCSTVG_METRICS)
    vid = write(tmp_path, "vid.json", VIDSTG_METRICS)
    out = tmp_path / "tables" / "all.md"
    assert main([str(hc), str(vid), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.read_text() == text
    assert text.index("### VidSTG, test split") < text.index("### HC-STVG v1, test split")
    vidstg_part, hc_part = text.split("### HC-STVG v1")
    assert markdown_rows(vidstg_part)["ours_7b"]["Avg. m_vIoU"] == "32.2"
    assert markdown_rows(hc_part)["hc"]["m_vIoU"] == "39.1"
    assert "TA-STVG" in hc_part and "Bridge-STG (paper)" not in hc_part

    assert main([str(vid), "--no-published", "--format", "latex"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("% VidSTG, test split") and "TubeDETR" not in text
    assert "ours\\_7b & tubedetr & 51.2" in text and PROTOCOL_NOTE not in text

    assert main([str(vid), "--format", "both"]) == 0
    text = capsys.readouterr().out
    assert "| **ours_7b** |" in text and "```latex\n\\begin{tabular}" in text


def test_cli_split_without_published_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    val = write(tmp_path, "val.json", {**VIDSTG_METRICS, "split": "val"})
    assert main([str(val)]) == 0
    text = capsys.readouterr().out
    assert "### VidSTG, val split" in text and "No published numbers for this split (published: test)" in text
    assert list(markdown_rows(text)) == ["ours_7b"]


# --- the synthetic benchmark ----------------------------------------------------------------------

SYNTHETIC_METRICS = {"tiou": 0.23512948879558898, "viou": 0.03409828292653909, "viou@0.3": 0.02, "viou@0.5": 0.005,
                     "gt_viou": 0.087007843259583, "gt_viou@0.3": 0.1, "gt_viou@0.5": 0.025, "count": 200,
                     "missing_predictions": 0, "missing_boxes": 0, "protocol": "tubedetr", "dataset": "synthetic",
                     "split": "test", "name": "synthetic", "experiment": "synthetic"}  # as eval/final/metrics.json


def test_synthetic_has_the_four_metrics_and_no_published_rows() -> None:
    assert metric_keys("synthetic") == ("tiou", "viou", "viou@0.3", "viou@0.5")
    assert published_rows("synthetic") == [] and published_rows("synthetic", "test") == []
    assert dataset_title("synthetic") == "Synthetic benchmark"
    assert all(r.dataset != "synthetic" for r in PUBLISHED)


def test_markdown_synthetic_values(tmp_path: Path) -> None:
    ours = load_metrics_row(write(tmp_path, "metrics.json", SYNTHETIC_METRICS))
    assert (ours.dataset, ours.split, ours.method) == ("synthetic", "test", "synthetic")
    text = render_markdown("synthetic", [ours])
    assert markdown_rows(text) == {"synthetic": {
        "Method": "**synthetic**", "Protocol": "tubedetr", "m_tIoU": "23.5", "m_vIoU": "3.4", "vIoU@0.3": "2.0",
        "vIoU@0.5": "0.5"}}
    assert PROTOCOL_NOTE not in text


def test_cli_synthetic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "metrics.json", SYNTHETIC_METRICS)
    other = write(tmp_path, "other.json", {**SYNTHETIC_METRICS, "name": "run_b", "tiou": 0.4, "viou": 0.21})
    assert main([str(path), str(other)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("### Synthetic benchmark, test split (values x100)\n")
    assert "No published numbers for this dataset." in text
    rows = markdown_rows(text)
    assert list(rows) == ["synthetic", "run_b"]
    assert rows["run_b"]["m_tIoU"] == "40.0" and rows["run_b"]["m_vIoU"] == "21.0"

    out = tmp_path / "synthetic.md"
    assert main([str(path), "--no-published", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.read_text() == text and "No published numbers" not in text
    assert markdown_rows(text)["synthetic"]["m_tIoU"] == "23.5"

    assert main([str(path), str(write(tmp_path, "hc.json", HCSTVG_METRICS)), "--format", "latex"]) == 0
    text = capsys.readouterr().out  # one table per dataset, synthetic after the published benchmarks
    assert text.index("% HC-STVG v1, test split") < text.index("% Synthetic benchmark, test split")
    assert "synthetic & tubedetr & 23.5 & 3.4 & 2.0 & 0.5" in text
