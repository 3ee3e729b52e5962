"""scripts/results_page.py on fake run directories (inside Hydra multirun folders, several seeds per row) and a tiny
benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from markdown_table import markdown_rows
from script_modules import load_script

from bridge_stg.data.frames import FrameBudget, select_frames
from bridge_stg.data.synthetic import SyntheticConfig, generate_benchmark, load_split
from bridge_stg.eval.baselines import BASELINES, SAMPLED_GT_SPAN, evaluate_baselines, mean_box_size
from bridge_stg.eval.tables import format_value

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "results_page.py"
TINY = SyntheticConfig(seconds=4.0, fps=5.0, width_px=64, height_px=64, size_px=(8, 14))


results_page = load_script(SCRIPT)


def final_metrics(experiment: str, tiou: float, viou: float, gt_viou: float) -> dict:
    return {"tiou": tiou, "viou": viou, "viou@0.3": 0.05, "viou@0.5": 0.0, "gt_viou": gt_viou, "gt_viou@0.3": 0.5,
            "gt_viou@0.5": 0.25, "count": 6, "missing_predictions": 0, "missing_boxes": 0, "protocol": "tubedetr",
            "dataset": "synthetic", "split": "test", "name": "synthetic", "experiment": experiment}


def make_run(path: Path, experiment: str, train: dict, overrides: list[str], log: list[dict],
             final: dict | None) -> Path:
    (path / ".hydra").mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"config": {"experiment": experiment, "train": train}}))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in log))
    if final is not None:
        (path / "eval" / "final").mkdir(parents=True)
        (path / "eval" / "final" / "metrics.json").write_text(json.dumps(final))
    return path


def train_line(step: int, time: float, loss: float, visual: float, decoder: float, frames: float) -> dict:
    return {"step": step, "time": time, "loss/total": loss, "loss/start_end": loss / 2, "stats/visual_tokens": visual,
            "stats/decoder_tokens": decoder, "stats/frames_decoded": frames, "speed/samples_per_s": 10.0}


def eval_line(step: int, time: float, tiou: float, viou: float) -> dict:
    return {"step": step, "time": time, "eval/tiou": tiou, "eval/viou": viou, "eval/viou@0.3": 0.0,
            "eval/viou@0.5": 0.0, "eval/gt_viou": 0.2}


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate_benchmark(TINY, out, {"train": 3, "test": 6})
    return out


@pytest.fixture
def run_dirs(tmp_path: Path) -> list[Path]:
    a = make_run(tmp_path / "runs" / "a", "exp_a", {"seed": 1, "max_steps": 20, "micro_batch_size": 2},
                 ["train.max_steps=20", "model.backbone.lora_targets=[q_proj,v_proj]"],
                 [train_line(10, 1000.0, 5.0, 100.0, 30.0, 4.0), eval_line(10, 1001.0, 0.2, 0.05),
                  train_line(20, 1090.4, 3.0, 120.0, 34.0, 5.0), eval_line(20, 1095.0, 0.3, 0.1)],
                 final_metrics("exp_a", 0.3, 0.1, 0.4567))
    sweep = tmp_path / "runs" / "sweep"
    make_run(sweep / "0", "exp_b", {"seed": 2, "max_steps": 30, "micro_batch_size": 4}, ["train.seed=2"],
             [train_line(10, 50.0, 4.0, 64.0, 20.0, 2.0), train_line(20, 60.0, 2.0, 64.0, 22.0, 3.0),
              train_line(30, 3730.0, 1.0, 64.0, 24.0, 4.0), eval_line(30, 3731.0, 0.4123, 0.2)],
             final_metrics("exp_b", 0.4123, 0.2, 0.5))
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    return [a, sweep]


def test_results_page(run_dirs: list[Path], synthetic_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "docs" / "results"
    argv = [*map(str, run_dirs), "--synthetic-dir", str(synthetic_dir), "--out", str(out)]
    assert results_page.main(argv) == 0

    table = (out / "table.md").read_text()
    assert table.startswith("### Synthetic benchmark, test split (values x100)")
    rows = markdown_rows(table)
    assert list(rows) == [*BASELINES, "exp_a", "exp_b"]  # baselines first, as reference rows; runs in bold
    assert "| **exp_a** |" in table and "| whole_clip_centre_box |" in table
    assert rows["exp_a"] == {"Method": "**exp_a**", "Protocol": "tubedetr", "m_tIoU": "30.0", "m_vIoU": "10.0",
                             "vIoU@0.3": "5.0", "vIoU@0.5": "0.0"}
    assert rows["exp_b"]["m_tIoU"] == "41.2"
    expected = evaluate_baselines(load_split(synthetic_dir, "test"), mean_box_size(load_split(synthetic_dir, "train")),
                                  "test")
    for name, metrics in expected.items():
        assert rows[name]["m_tIoU"] == format_value(100 * metrics["tiou"], "–")
        assert rows[name]["m_vIoU"] == format_value(100 * metrics["viou"], "–")

    runs = markdown_rows((out / "runs.md").read_text())
    assert list(runs) == ["exp_a", "exp_b"]
    assert runs["exp_a"] == {
        "Run": "exp_a",
        "Command": "`python scripts/train.py train.max_steps=20 'model.backbone.lora_targets=[q_proj,v_proj]'`",
        "Seed": "1", "Steps": "20", "Micro batch": "2", "Train time (h:mm:ss)": "0:01:30",
        "Visual tokens / sample": "110.0", "Decoder tokens / sample": "32.0", "Frames decoded / sample": "4.50",
        "Final m_gt_vIoU": "45.7"}
    assert runs["exp_b"]["Command"] == "`python scripts/train.py train.seed=2`"
    assert runs["exp_b"]["Train time (h:mm:ss)"] == "1:01:20"
    assert runs["exp_b"]["Decoder tokens / sample"] == "22.0" and runs["exp_b"]["Final m_gt_vIoU"] == "50.0"

    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_m_tiou_ceiling_row_uses_the_runs_eval_frames(synthetic_dir: Path, tmp_path: Path) -> None:
    budget = {"fps": 2.0, "max_frames": 4, "max_pixels": 4096, "min_pixels": 1024}
    log = [train_line(10, 1.0, 2.0, 64.0, 20.0, 2.0)]
    runs = [make_run(tmp_path / name, name, {"seed": 0}, [], log, final_metrics(name, 0.3, 0.1, 0.2))
            for name in ("exp_a", "exp_b")]
    for run in runs:
        info = json.loads((run / "run.json").read_text())
        info["config"]["data"] = {"eval_budget": budget}
        (run / "run.json").write_text(json.dumps(info))
    out = tmp_path / "page"
    assert results_page.main([*map(str, runs), "--synthetic-dir", str(synthetic_dir), "--out", str(out)]) == 0
    rows = markdown_rows((out / "table.md").read_text())
    test_split = load_split(synthetic_dir, "test")
    four_frames = evaluate_baselines(test_split, mean_box_size(load_split(synthetic_dir, "train")), "test",
                                     frame_ids=lambda r: select_frames(r.segment, r.fps, FrameBudget(**budget)))
    ceiling = four_frames[SAMPLED_GT_SPAN]["tiou"]
    assert rows[SAMPLED_GT_SPAN]["m_tIoU"] == format_value(100 * ceiling, "–") and 0.3 < ceiling < 1.0

    info = json.loads((runs[1] / "run.json").read_text())
    info["config"]["data"]["eval_budget"]["max_frames"] = 8
    (runs[1] / "run.json").write_text(json.dumps(info))
    assert results_page.main([*map(str, runs), "--synthetic-dir", str(synthetic_dir), "--out", str(out)]) == 2


def test_read_runs_expands_multiruns_and_names_rows(run_dirs: list[Path], tmp_path: Path) -> None:
    twin = make_run(tmp_path / "runs" / "c", "exp_a", {}, [], [], None)
    runs = results_page.read_runs([run_dirs[0], run_dirs[1], twin])
    assert [r.label for r in runs] == ["a", "sweep/0", "c"]
    assert [r.name for r in runs] == ["exp_a (a)", "exp_b", "exp_a (c)"]  # colliding experiment names get the label
    assert [len(r.train_log) for r in runs] == [2, 3, 0] and [len(r.eval_log) for r in runs] == [2, 1, 0]
    assert runs[2].final_metrics is None and results_page.runs_row(runs[2])[-1] == "–"


def test_not_a_run_directory(tmp_path: Path, synthetic_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    argv = [str(tmp_path / "empty"), "--synthetic-dir", str(synthetic_dir), "--out", str(tmp_path / "out")]
    assert results_page.main(argv) == 2
    assert "neither a run directory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ several seeds per row

SEED_STUDY = {  # experiment: (m_tIoU, m_vIoU, m_gt_vIoU) per seed; Δ against synthetic, seed noise 2·SE
    "synthetic": ([0.40, 0.42, 0.44], [0.20, 0.21, 0.22], [0.50, 0.52, 0.54]),
    # m_tIoU: Δ -21.0, noise 2·sqrt(4/3 + 1/3) = 2.58, beyond; m_vIoU: Δ -0.7, noise 1.60, within;
    # m_gt_vIoU: Δ -3.0, noise 2·sqrt(4/3 + 4/3) = 3.27, within (with population stds the noise would be 2.67)
    "ablation/x": ([0.20, 0.21, 0.22], [0.205, 0.215, 0.19], [0.47, 0.49, 0.51]),
    "synthetic_coupled": ([0.10], [0.05], [0.30]),
}


def seed_job(path: Path, experiment: str, seed: int, tiou: float, viou: float, gt_viou: float,
             eval_steps: tuple[int, ...] = (10, 20), extra: dict | None = None) -> Path:
    """A job of a seed study: overrides ``experiment=... train.seed=...``, eval lines at ``eval_steps``."""
    log = [train_line(step, float(step), 4.0 - step / 10, 64.0, 20.0, 2.0) for step in range(1, 7)]
    log += [eval_line(step, 100.0 + step, tiou * step / eval_steps[-1], viou) for step in eval_steps]
    return make_run(path, experiment, {"seed": seed, "max_steps": 20},
                    ["train.eval_every=10", f"experiment={experiment}", f"train.seed={seed}"], log,
                    {**final_metrics(experiment, tiou, viou, gt_viou), **(extra or {})})


@pytest.fixture
def seed_study(tmp_path: Path) -> Path:
    """A multirun folder: synthetic and ablation/x with seeds 0, 1, 2 (ablation/x's seed 2 evaluated at other steps)
    and the coupled baseline with seed 0, counting 3 malformed generations."""
    study, job = tmp_path / "study", 0
    for experiment, (tious, vious, gt_vious) in SEED_STUDY.items():
        for seed, metrics in enumerate(zip(tious, vious, gt_vious)):
            steps = (10, 30) if (experiment, seed) == ("ablation/x", 2) else (10, 20)
            extra = {"malformed_generations": 3} if experiment == "synthetic_coupled" else None
            seed_job(study / str(job), experiment, seed, *metrics, eval_steps=steps, extra=extra)
            job += 1
    return study


def test_seeds_page_marks_differences_beyond_seed_noise(seed_study: Path, synthetic_dir: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "page"
    assert results_page.main([str(seed_study), "--synthetic-dir", str(synthetic_dir), "--out", str(out)]) == 0

    text = (out / "seeds.md").read_text()
    rows = markdown_rows(text)
    assert list(rows) == ["synthetic", "ablation/x", "synthetic_coupled"]
    assert list(rows["synthetic"]) == ["Run", "seeds", "m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5", "m_gt_vIoU",
                                       "Δ m_tIoU", "Δ m_vIoU", "Δ m_gt_vIoU", "malformed"]
    assert rows["synthetic"] == {
        "Run": "synthetic", "seeds": "3 (0, 1, 2)", "m_tIoU": "42.0 ± 2.0", "m_vIoU": "21.0 ± 1.0",
        "vIoU@0.3": "5.0 ± 0.0", "vIoU@0.5": "0.0 ± 0.0", "m_gt_vIoU": "52.0 ± 2.0", "Δ m_tIoU": "–",
        "Δ m_vIoU": "–", "Δ m_gt_vIoU": "–", "malformed": ""}
    ablation = rows["ablation/x"]
    assert (ablation["m_tIoU"], ablation["m_vIoU"], ablation["m_gt_vIoU"]) == ("21.0 ± 1.0", "20.3 ± 1.3",
                                                                              "49.0 ± 2.0")
    assert (ablation["Δ m_tIoU"], ablation["Δ m_vIoU"], ablation["Δ m_gt_vIoU"]) == ("-21.0 *", "-0.7", "-3.0")
    coupled = rows["synthetic_coupled"]
    assert (coupled["seeds"], coupled["m_tIoU"], coupled["m_gt_vIoU"], coupled["malformed"]) == ("1 (0)", "10.0",
                                                                                               "30.0", "3.0")
    assert (coupled["Δ m_tIoU"], coupled["Δ m_vIoU"], coupled["Δ m_gt_vIoU"]) == ("-32.0 n/a", "-16.0 n/a",
                                                                                  "-22.0 n/a")
    assert "2·sqrt(s_a²/n_a + s_b²/n_b)" in text and "mean of `synthetic`" in text

    summary = json.loads((out / "seeds.json").read_text())
    assert summary["reference"] == "synthetic"
    experiments = {e["name"]: e for e in summary["experiments"]}
    for name, per_metric in SEED_STUDY.items():
        seeds = list(range(len(per_metric[0])))
        assert (experiments[name]["n"], experiments[name]["seeds"]) == (len(seeds), seeds)
        for key, fractions in zip(("tiou", "viou", "gt_viou"), per_metric):
            values = 100 * np.array(fractions)
            stats = experiments[name]["metrics"][key]
            assert stats["values"] == pytest.approx(values.tolist())
            assert stats["mean"] == pytest.approx(values.mean())
            assert stats["std"] == (pytest.approx(values.std(ddof=1)) if len(values) > 1 else None)
    assert experiments["synthetic"]["vs_reference"] is None
    vs_synthetic = experiments["ablation/x"]["vs_reference"]
    assert [vs_synthetic[k]["beyond_noise"] for k in ("tiou", "viou", "gt_viou")] == [True, False, False]
    assert vs_synthetic["gt_viou"]["diff"] == pytest.approx(-3.0)
    assert vs_synthetic["gt_viou"]["noise"] == pytest.approx(2 * np.sqrt(4 / 3 + 4 / 3))
    assert [d["beyond_noise"] for d in experiments["synthetic_coupled"]["vs_reference"].values()] == [None] * 3
    assert experiments["synthetic_coupled"]["malformed_generations"]["values"] == [3.0]
    assert experiments["synthetic"]["malformed_generations"] is None

    table = (out / "table.md").read_text()
    rows = markdown_rows(table)
    assert list(rows) == [*BASELINES, "synthetic", "ablation/x", "synthetic_coupled"]  # one row per experiment
    assert (rows["synthetic"]["m_tIoU"], rows["synthetic"]["m_vIoU"]) == ("42.0", "21.0")  # the means over seeds
    assert (rows["ablation/x"]["m_tIoU"], rows["ablation/x"]["m_vIoU"]) == ("21.0", "20.3")
    assert "mean over the seeds" in table

    runs = [line.split(" | ") for line in (out / "runs.md").read_text().splitlines()[2:]]
    assert [(cells[0].lstrip("| "), cells[2]) for cells in runs] == [  # one line per run, grouped by row, seed order
        ("synthetic", "0"), ("synthetic", "1"), ("synthetic", "2"), ("ablation/x", "0"), ("ablation/x", "1"),
        ("ablation/x", "2"), ("synthetic_coupled", "0")]
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reference_option(seed_study: Path, synthetic_dir: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "page"
    argv = [str(seed_study), "--synthetic-dir", str(synthetic_dir), "--out", str(out)]
    assert results_page.main([*argv, "--reference", "ablation/x"]) == 0
    rows = markdown_rows((out / "seeds.md").read_text())
    assert (rows["synthetic"]["Δ m_tIoU"], rows["synthetic"]["Δ m_vIoU"]) == ("+21.0 *", "+0.7")
    assert rows["ablation/x"]["Δ m_tIoU"] == "–"
    assert results_page.main([*argv, "--reference", "no_such_row"]) == 2
    assert "--reference 'no_such_row'" in capsys.readouterr().err


def test_same_seed_twice(tmp_path: Path, synthetic_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = seed_job(tmp_path / "runs" / "first", "synthetic", 0, 0.4, 0.2, 0.5)
    twin = seed_job(tmp_path / "runs" / "twin", "synthetic", 0, 0.5, 0.3, 0.6)
    out = tmp_path / "page"
    argv = ["--synthetic-dir", str(synthetic_dir), "--out", str(out)]
    assert results_page.main([str(first), str(twin), *argv]) == 2
    err = capsys.readouterr().err
    assert f"{first} and {twin} are both runs of synthetic with seed 0" in err
    assert not out.exists()

    overrides = yaml.safe_load((twin / ".hydra" / "overrides.yaml").read_text())
    (twin / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*overrides, "optim.lr=0.001"]))
    assert results_page.main([str(first), str(twin), *argv]) == 0  # other overrides: another row, told apart
    rows = markdown_rows((out / "seeds.md").read_text())
    assert list(rows) == ["synthetic (first)", "synthetic (twin)"]
    assert rows["synthetic (twin)"]["m_tIoU"] == "50.0" and rows["synthetic (twin)"]["Δ m_tIoU"] == "–"
    assert "no row is named `synthetic`" in (out / "seeds.md").read_text()


def test_logging_overrides_stay_in_the_row(tmp_path: Path, synthetic_dir: Path) -> None:
    first = seed_job(tmp_path / "runs" / "first", "synthetic", 0, 0.4, 0.2, 0.5)
    second = seed_job(tmp_path / "runs" / "second", "synthetic", 1, 0.5, 0.3, 0.6)
    overrides = yaml.safe_load((second / ".hydra" / "overrides.yaml").read_text())
    (second / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump([*overrides, "logging.progress=false", "logging.wandb=disabled"]))
    out = tmp_path / "page"
    assert results_page.main([str(first), str(second), "--synthetic-dir", str(synthetic_dir), "--out", str(out)]) == 0
    rows = markdown_rows((out / "seeds.md").read_text())
    assert list(rows) == ["synthetic"] and rows["synthetic"]["seeds"] == "2 (0, 1)"


def test_seed_curves_average_seeds_evaluated_at_the_same_steps(seed_study: Path) -> None:
    groups = {group.name: group for group in results_page.seed_groups(results_page.read_runs([seed_study]))}
    [mean] = results_page.seed_curves(groups["synthetic"], results_page.eval_points("eval/tiou"))
    per_seed = 100 * np.array([[t / 2, t] for t in SEED_STUDY["synthetic"][0]])  # eval m_tIoU at steps 10 and 20
    assert (mean.label, mean.steps) == ("synthetic (mean of 3 seeds)", (10, 20))
    assert mean.values == pytest.approx(per_seed.mean(axis=0).tolist())
    assert mean.spread == pytest.approx(per_seed.std(axis=0, ddof=1).tolist())
    separate = results_page.seed_curves(groups["ablation/x"], results_page.eval_points("eval/tiou"))
    assert [(c.label, c.steps, c.spread) for c in separate] == [
        ("ablation/x (seed 0)", (10, 20), None), ("ablation/x (seed 1)", (10, 20), None),
        ("ablation/x (seed 2)", (10, 30), None)]
    [single] = results_page.seed_curves(groups["synthetic_coupled"], results_page.eval_points("eval/viou"))
    assert (single.label, single.values) == ("synthetic_coupled", pytest.approx((5.0, 5.0)))
