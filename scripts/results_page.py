"""Build a results page from training run directories:
``python scripts/results_page.py RUN_DIR [RUN_DIR ...] --synthetic-dir data/synthetic --out docs/results``.

A RUN_DIR is a run directory (``run.json``, ``metrics.jsonl``, ``eval/final/metrics.json``, ``.hydra/``) or a Hydra
multirun folder, whose numbered subfolders are run directories. Written into ``--out``:

``table.md``
    the final metrics of every run and of the two trivial baselines (:mod:`bridge_stg.eval.baselines`, scored on the
    test split of ``--synthetic-dir`` with a box of the train split's mean size), and of the ground-truth span as the
    runs' evaluation frame sampling (``data.eval_budget``) can express it: the m_tIoU ceiling; rendered by
    ``bridge-stg-tables``;
``runs.md``
    per run: command, seed, steps, micro batch, training time, tokens per sample, final m_gt_vIoU;
``learning_curves.png``
    eval m_tIoU and m_vIoU against step for every run (baselines dashed) and the training loss.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from bridge_stg.cli.tables import group_rows, render_group
from bridge_stg.data.frames import FrameBudget, select_frames
from bridge_stg.data.synthetic import load_split
from bridge_stg.eval.baselines import BASELINES, SAMPLED_GT_SPAN, evaluate_baselines, mean_box_size
from bridge_stg.eval.published import ResultRow
from bridge_stg.eval.tables import MISSING_MARKDOWN, format_value, row_from_metrics

TRAIN_COMMAND = "python scripts/train.py"
FINAL_METRICS = Path("eval") / "final" / "metrics.json"
LOSS_KEY = "loss/start_end"  # the temporal head's main term: whether it leaves the label prior
EVAL_KEYS = {"eval/tiou": "m_tIoU", "eval/viou": "m_vIoU", "eval/gt_viou": "m_gt_vIoU (GT spans)"}
BASELINE_STYLES = {BASELINES[0]: "tab:gray", BASELINES[1]: "black", SAMPLED_GT_SPAN: "tab:green"}


@dataclass(frozen=True)
class Run:
    """What the page needs from one run directory. ``label`` names the directory (``multirun/3`` for a job of a
    multirun folder); ``name`` is the row name (the experiment, made unique by :func:`unique_names`)."""

    path: Path
    label: str
    name: str
    config: Mapping
    overrides: list[str] | None
    train_log: list[dict]
    eval_log: list[dict]
    final_metrics: dict | None


# ---------------------------------------------------------------------------------------------- reading runs


def is_run_dir(path: Path) -> bool:
    return (path / "run.json").is_file() or (path / "metrics.jsonl").is_file()


def expand_run_dirs(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """``(run directory, label)`` of every argument: itself, or the numbered run subfolders of a multirun folder."""
    out = []
    for path in paths:
        if is_run_dir(path):
            out.append((path, path.name))
            continue
        jobs = sorted((p for p in path.iterdir() if p.is_dir() and p.name.isdigit() and is_run_dir(p)),
                      key=lambda p: int(p.name)) if path.is_dir() else []
        if not jobs:
            raise ValueError(f"{path}: neither a run directory (run.json, metrics.jsonl) nor a multirun folder "
                             "with numbered run subfolders")
        out += [(job, f"{path.name}/{job.name}") for job in jobs]
    return out


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_overrides(path: Path) -> list[str] | None:
    """Hydra's command-line overrides (``.hydra/overrides.yaml``), None when the file is missing."""
    if not path.is_file():
        return None
    return [str(item) for item in yaml.safe_load(path.read_text()) or []]


def is_train_line(line: Mapping) -> bool:
    return any(k.startswith("loss/") for k in line)


def is_eval_line(line: Mapping) -> bool:
    return any(k in line for k in EVAL_KEYS)


def experiment_name(config: Mapping, final_metrics: Mapping | None, label: str) -> str:
    """The run's experiment name (config ``experiment_name`` or ``experiment``, else the eval metrics'), else
    ``label``."""
    for value in (config.get("experiment_name"), config.get("experiment"), (final_metrics or {}).get("experiment")):
        if isinstance(value, str) and value:
            return value
    return label


def read_run(path: Path, label: str) -> Run:
    run_info = read_json(path / "run.json") or {}
    config = run_info.get("config", {})
    final = read_json(path / FINAL_METRICS)
    log = read_jsonl(path / "metrics.jsonl")
    return Run(path=path, label=label, name=experiment_name(config, final, label), config=config,
               overrides=read_overrides(path / ".hydra" / "overrides.yaml"),
               train_log=[line for line in log if is_train_line(line)],
               eval_log=[line for line in log if is_eval_line(line)], final_metrics=final)


def unique_names(runs: Sequence[Run]) -> list[Run]:
    """Runs whose names collide get ``name (label)``, so that every row can be told apart."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.name] = counts.get(run.name, 0) + 1
    return [dataclasses.replace(r, name=f"{r.name} ({r.label})") if counts[r.name] > 1 else r for r in runs]


def read_runs(paths: Sequence[Path]) -> list[Run]:
    return unique_names([read_run(path, label) for path, label in expand_run_dirs(paths)])


# ------------------------------------------------------------------------------------------------- summaries


def train_command(overrides: Sequence[str]) -> str:
    """The command that reproduces a run: the train script with its overrides (shell-quoted where needed)."""
    return " ".join([TRAIN_COMMAND, *(shlex.quote(o) for o in overrides)])


def training_seconds(train_log: Sequence[Mapping]) -> float | None:
    """Wall-clock seconds from the first to the last training log line, None with fewer than two timed lines."""
    times = [line["time"] for line in train_log if isinstance(line.get("time"), (int, float))]
    return max(times) - min(times) if len(times) > 1 else None


def mean_of(lines: Sequence[Mapping], key: str) -> float | None:
    values = [line[key] for line in lines if isinstance(line.get(key), (int, float))]
    return sum(values) / len(values) if values else None


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return MISSING_MARKDOWN
    total = round(seconds)
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def format_number(value: object, decimals: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING_MARKDOWN
    return f"{value:.{decimals}f}" if isinstance(value, float) else str(value)


def _cell(text: str) -> str:
    return text.replace("|", r"\|")


def config_value(config: Mapping, *keys: str) -> object:
    node: object = config
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


RUNS_HEADER = ("Run", "Command", "Seed", "Steps", "Micro batch", "Train time (h:mm:ss)", "Visual tokens / sample",
               "Decoder tokens / sample", "Frames decoded / sample", "Final m_gt_vIoU")


def runs_row(run: Run) -> list[str]:
    gt_viou = (run.final_metrics or {}).get("gt_viou")
    return [
        _cell(run.name),
        f"`{_cell(train_command(run.overrides))}`" if run.overrides is not None else MISSING_MARKDOWN,
        format_number(config_value(run.config, "train", "seed")),
        format_number(config_value(run.config, "train", "max_steps")),
        format_number(config_value(run.config, "train", "micro_batch_size")),
        format_duration(training_seconds(run.train_log)),
        format_number(mean_of(run.train_log, "stats/visual_tokens")),
        format_number(mean_of(run.train_log, "stats/decoder_tokens")),
        format_number(mean_of(run.train_log, "stats/frames_decoded"), 2),
        format_value(100 * gt_viou, MISSING_MARKDOWN) if isinstance(gt_viou, (int, float)) else MISSING_MARKDOWN,
    ]


def runs_markdown(runs: Sequence[Run]) -> str:
    """One row per run (training time: first to last training log line; tokens and frames: per-sample means
    over the training log lines; m_gt_vIoU x100 from ``eval/final/metrics.json``)."""
    lines = ["| " + " | ".join(RUNS_HEADER) + " |",
             "| " + " | ".join([":--", ":--"] + ["--:"] * (len(RUNS_HEADER) - 2)) + " |"]
    lines += ["| " + " | ".join(runs_row(run)) + " |" for run in runs]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- table and baselines


def eval_budget(runs: Sequence[Run]) -> FrameBudget | None:
    """The evaluation frame budget (``data.eval_budget``) the runs share; None when no run records one."""
    budgets = {json.dumps(b, sort_keys=True) for run in runs
               if isinstance(b := config_value(run.config, "data", "eval_budget"), Mapping)}
    if len(budgets) > 1:
        raise ValueError(f"the runs sample evaluation frames differently ({sorted(budgets)}): the m_tIoU ceiling row "
                         "needs one data.eval_budget; make a page per budget")
    return FrameBudget(**json.loads(budgets.pop())) if budgets else None


def synthetic_baselines(synthetic_dir: Path, protocol: str, seed: int,
                        budget: FrameBudget | None = None) -> dict[str, dict]:
    """Both trivial baselines on the test split of ``synthetic_dir``, boxes sized on its train split, and with
    ``budget`` the ground-truth span on the frames it samples (the m_tIoU ceiling)."""
    box_size = mean_box_size(load_split(synthetic_dir, "train"))
    frame_ids = None if budget is None else (lambda record: select_frames(record.segment, record.fps, budget))
    return evaluate_baselines(load_split(synthetic_dir, "test"), box_size, "test", protocol=protocol, seed=seed,
                              frame_ids=frame_ids)


def result_rows(runs: Sequence[Run], baselines: Mapping[str, dict]) -> list[ResultRow]:
    """Table rows: each run with final metrics (named as the run), then the baselines as non-bold reference rows."""
    rows = []
    for run in runs:
        if run.final_metrics is None:
            print(f"results_page: {run.path}: no {FINAL_METRICS}, left out of the table", file=sys.stderr)
            continue
        rows.append(row_from_metrics({**run.final_metrics, "name": run.name}, str(run.path / FINAL_METRICS),
                                     run.name))
    rows += [dataclasses.replace(row_from_metrics(m, f"baseline {name}", name), ours=False)
             for name, m in baselines.items()]
    return rows


def results_table(rows: Sequence[ResultRow]) -> str:
    """The ``bridge-stg-tables`` markdown of ``rows``, one table per dataset and split."""
    return "\n".join(render_group(dataset, split, group, "markdown", with_published=True)
                     for (dataset, split), group in group_rows(list(rows)).items())


# ------------------------------------------------------------------------------------------------------- plot


def plot_curves(runs: Sequence[Run], baselines: Mapping[str, dict], out_path: Path) -> Path:
    """Eval m_tIoU, m_vIoU and m_gt_vIoU (x100) against step per run, baselines as dashed lines, and the training
    start/end loss (smoothed over 5 log lines; runs without the term, such as the coupled baseline, are absent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    axes = axes.ravel()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def style(i: int) -> dict:
        return {"color": colours[i % len(colours)], "linestyle": ("-", "--", ":")[i // len(colours) % 3]}

    for ax, (key, label) in zip(axes[:3], EVAL_KEYS.items()):
        for i, run in enumerate(runs):
            points = [(line["step"], 100 * line[key]) for line in run.eval_log if key in line]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=run.name, **style(i))
        for name, metrics in baselines.items():
            ax.axhline(100 * metrics[key.removeprefix("eval/")], linestyle="--", linewidth=1,
                       color=BASELINE_STYLES.get(name, "gray"), label=name)
        ax.set(xlabel="step", ylabel=f"{label} (x100)", title=f"eval {label}")
    ax = axes[3]
    for i, run in enumerate(runs):
        points = [(line["step"], line[LOSS_KEY]) for line in run.train_log if LOSS_KEY in line]
        if len(points) >= 5:
            steps, values = zip(*points)
            smooth = [sum(values[max(0, j - 4): j + 1]) / len(values[max(0, j - 4): j + 1]) for j in range(len(values))]
            ax.plot(steps, smooth, linewidth=1, label=run.name, **style(i))
    ax.set(xlabel="step", ylabel="CE(start) + CE(end)", title=f"train {LOSS_KEY} (smoothed)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


# -------------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories or multirun folders")
    p.add_argument("--synthetic-dir", type=Path, required=True,
                   help="the synthetic benchmark the baselines are scored on (test split; box size: train split)")
    p.add_argument("--out", type=Path, required=True, help="folder for table.md, runs.md, learning_curves.png")
    p.add_argument("--protocol", default="tubedetr", help="evaluation protocol of the baselines")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-span baseline")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        runs = read_runs(args.runs)
        baselines = synthetic_baselines(args.synthetic_dir, args.protocol, args.seed, eval_budget(runs))
        table = results_table(result_rows(runs, baselines))
    except (ValueError, OSError) as e:
        print(f"results_page: error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table)
    (args.out / "runs.md").write_text(runs_markdown(runs))
    plot_curves(runs, baselines, args.out / "learning_curves.png")
    print(f"results page of {len(runs)} runs in {args.out}: table.md, runs.md, learning_curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
