"""Build a results page from training run directories:
``python scripts/results_page.py RUN_DIR [RUN_DIR ...] --synthetic-dir data/synthetic --out docs/results``.

A RUN_DIR is a run directory (``run.json``, ``metrics.jsonl``, ``eval/final/metrics.json``, ``.hydra/``) or a Hydra
multirun folder, whose numbered subfolders are run directories. A row of the page is an experiment: its runs, one per
seed (``train.seed``). Runs of one experiment whose Hydra overrides differ beyond the seed are separate rows, named
``experiment (label of the row's first run)``; two runs of one row with the same seed are an error. Written into
``--out``:

``table.md``
    the final metrics of every row (the mean over its seeds) and of the two trivial baselines
    (:mod:`bridge_stg.eval.baselines`, scored on the test split of ``--synthetic-dir`` with a box of the train
    split's mean size), and of the ground-truth span as the runs' evaluation frame sampling (``data.eval_budget``)
    can express it: the m_tIoU ceiling; rendered by ``bridge-stg-tables``;
``seeds.md``, ``seeds.json``
    per row: its seeds, mean ± sample std (ddof=1) of m_tIoU, m_vIoU, vIoU@thresholds and m_gt_vIoU, and the
    difference of the means of m_tIoU, m_vIoU and m_gt_vIoU against the ``--reference`` row, marked when it exceeds
    seed noise (:data:`NOISE_RULE`); the mean malformed generations of rows whose metrics count them;
``runs.md``
    per run: command, seed, steps, micro batch, training time, tokens per sample, final m_gt_vIoU;
``learning_curves.png``
    eval m_tIoU, m_vIoU and m_gt_vIoU against step per row (the mean over seeds, ± one std shaded, where the seeds
    evaluated at the same steps; else a curve per run), baselines dashed, and the training loss.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from statistics import fmean, stdev

import yaml

from bridge_stg.cli.tables import group_rows, render_group
from bridge_stg.data.frames import FrameBudget, select_frames
from bridge_stg.data.synthetic import load_split
from bridge_stg.eval.baselines import BASELINES, SAMPLED_GT_SPAN, evaluate_baselines, mean_box_size
from bridge_stg.eval.published import ResultRow
from bridge_stg.eval.tables import MISSING_MARKDOWN, format_value, metric_label, row_from_metrics

TRAIN_COMMAND = "python scripts/train.py"
FINAL_METRICS = Path("eval") / "final" / "metrics.json"
LOSS_KEY = "loss/start_end"  # the temporal head's main term: whether it leaves the label prior
EVAL_KEYS = {"eval/tiou": "m_tIoU", "eval/viou": "m_vIoU", "eval/gt_viou": "m_gt_vIoU (GT spans)"}
BASELINE_STYLES = {BASELINES[0]: "tab:gray", BASELINES[1]: "black", SAMPLED_GT_SPAN: "tab:green"}
# the seed varies within a row; the experiment names it; the others change how a run logs, not what it learns
ROW_NEUTRAL_OVERRIDES = ("train.seed", "experiment", "logging.progress", "logging.wandb")
DEFAULT_REFERENCE = "synthetic"
DELTA_KEYS = ("tiou", "viou", "gt_viou")
MALFORMED_KEY = "malformed_generations"
NOISE_RULE = ("`*`: |Δ| > 2·sqrt(s_a²/n_a + s_b²/n_b), twice the standard error of the difference of the means "
              "(s: sample standard deviation over seeds, ddof=1; n: seeds), i.e. the difference exceeds seed noise; "
              "n/a: a side has fewer than 2 seeds")


@dataclass(frozen=True)
class Run:
    """What the page needs from one run directory. ``label`` names the directory (``multirun/3`` for a job of a
    multirun folder); ``name`` is the row name (the experiment, told apart by :func:`unique_names` where its runs
    differ beyond the seed), shared by the row's seeds."""

    path: Path
    label: str
    name: str
    config: Mapping
    overrides: list[str] | None
    train_log: list[dict]
    eval_log: list[dict]
    final_metrics: dict | None

    @property
    def seed(self) -> object:
        return config_value(self.config, "train", "seed")


@dataclass(frozen=True)
class SeedGroup:
    """A row of the page: the runs named ``name``, one per seed, in seed order (runs without a seed last)."""

    name: str
    runs: tuple[Run, ...]

    @property
    def scored(self) -> tuple[Run, ...]:
        """The runs with final metrics: the seeds the row's numbers average."""
        return tuple(run for run in self.runs if run.final_metrics is not None)


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


def override_key(override: str) -> str:
    """The config key a Hydra override sets: ``train.seed`` of ``train.seed=3`` and of ``++train.seed=3``."""
    return override.split("=", 1)[0].lstrip("+~")


def row_key(run: Run) -> tuple[str, tuple[str, ...] | None]:
    """What makes runs seeds of one row: the experiment name and the sorted Hydra overrides other than
    :data:`ROW_NEUTRAL_OVERRIDES` (None when the run has no ``.hydra/overrides.yaml``)."""
    if run.overrides is None:
        return run.name, None
    return run.name, tuple(sorted(o for o in run.overrides if override_key(o) not in ROW_NEUTRAL_OVERRIDES))


def unique_names(runs: Sequence[Run]) -> list[Run]:
    """Runs of one experiment with different overrides (:func:`row_key`) are different rows: each row of such an
    experiment is named ``name (label)`` after its first run, so that every row can be told apart."""
    first_labels: dict[tuple, str] = {}
    for run in runs:
        first_labels.setdefault(row_key(run), run.label)
    rows_per_name = Counter(name for name, _ in first_labels)
    return [dataclasses.replace(r, name=f"{r.name} ({first_labels[row_key(r)]})") if rows_per_name[r.name] > 1 else r
            for r in runs]


def check_one_run_per_seed(runs: Sequence[Run]) -> None:
    """Raise ValueError naming both directories when two runs of a row (same name) have the same seed."""
    seen: dict[tuple[str, str], Run] = {}
    for run in runs:
        key = (run.name, json.dumps(run.seed))
        if key in seen:
            raise ValueError(f"{seen[key].path} and {run.path} are both runs of {run.name} with seed {run.seed} and "
                             "the same overrides: a row takes one run per seed; leave one of them out")
        seen[key] = run


def read_runs(paths: Sequence[Path]) -> list[Run]:
    """The runs of ``paths`` in reading order, named by row; ValueError when a row has a seed twice."""
    runs = unique_names([read_run(path, label) for path, label in expand_run_dirs(paths)])
    check_one_run_per_seed(runs)
    return runs


def seed_order(run: Run) -> tuple[bool, object]:
    return run.seed is None, run.seed if isinstance(run.seed, (int, float)) else 0


def seed_groups(runs: Sequence[Run]) -> list[SeedGroup]:
    """The rows of ``runs`` (by name, in order of first appearance), each with its runs in seed order."""
    by_name: dict[str, list[Run]] = {}
    for run in runs:
        by_name.setdefault(run.name, []).append(run)
    return [SeedGroup(name, tuple(sorted(group, key=seed_order))) for name, group in by_name.items()]


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


def seed_mean_row(group: SeedGroup) -> ResultRow:
    """The table row of ``group``: each scored run's row (validated by :func:`row_from_metrics`), values averaged over
    the seeds; ValueError when the seeds were scored on different datasets, splits or protocols."""
    rows = [row_from_metrics({**run.final_metrics, "name": group.name}, str(run.path / FINAL_METRICS), group.name)
            for run in group.scored]
    if len({(r.dataset, r.split, r.protocol) for r in rows}) > 1:
        raise ValueError(f"{group.name}: its seeds were scored on different datasets, splits or protocols "
                         f"({', '.join(str(run.path) for run in group.scored)})")
    values = {key: fmean(r.values[key] for r in rows) for key in rows[0].values}
    return dataclasses.replace(rows[0], values=values)


def result_rows(groups: Sequence[SeedGroup], baselines: Mapping[str, dict]) -> list[ResultRow]:
    """Table rows: each row with final metrics (named as the row, the mean over its seeds), then the baselines as
    non-bold reference rows."""
    for run in (run for group in groups for run in group.runs if run.final_metrics is None):
        print(f"results_page: {run.path}: no {FINAL_METRICS}, left out of the tables", file=sys.stderr)
    rows = [seed_mean_row(group) for group in groups if group.scored]
    rows += [dataclasses.replace(row_from_metrics(m, f"baseline {name}", name), ours=False)
             for name, m in baselines.items()]
    return rows


def results_table(rows: Sequence[ResultRow]) -> str:
    """The ``bridge-stg-tables`` markdown of ``rows``, one table per dataset and split."""
    return "\n".join(render_group(dataset, split, group, "markdown", with_published=True)
                     for (dataset, split), group in group_rows(list(rows)).items())


def results_page_table(groups: Sequence[SeedGroup], baselines: Mapping[str, dict]) -> str:
    """``table.md``: :func:`results_table` of the rows and baselines, with a note when a row averages seeds."""
    table = results_table(result_rows(groups, baselines))
    if any(len(group.scored) > 1 for group in groups):
        table = table.rstrip("\n") + "\n\nRows of several seeds show the mean over the seeds (seeds.md: spread).\n"
    return table


# ------------------------------------------------------------------------------------------------------ seeds


@dataclass(frozen=True)
class SeedStats:
    """One number of a row over its seeds, in seed order: ``mean`` and ``std``, the sample standard deviation
    (ddof=1; None with a single seed)."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return fmean(self.values)

    @property
    def std(self) -> float | None:
        return stdev(self.values) if self.n > 1 else None


@dataclass(frozen=True)
class Delta:
    """A row's mean minus the reference row's; ``noise``: twice the standard error of that difference,
    2 * sqrt(s_a^2/n_a + s_b^2/n_b) with sample stds, None when a side has fewer than two seeds."""

    diff: float
    noise: float | None

    @property
    def beyond_noise(self) -> bool | None:
        return None if self.noise is None else abs(self.diff) > self.noise


@dataclass(frozen=True)
class SeedRow:
    """A row of ``seeds.md``: ``stats`` per metric key (x100) and ``malformed``, the malformed generations (counts),
    each None unless every seed has it; ``deltas`` against the reference row (None for the reference row itself and
    when there is none)."""

    group: SeedGroup
    stats: dict[str, SeedStats | None]
    malformed: SeedStats | None
    deltas: dict[str, Delta | None] | None


def percent(value: float) -> float:
    """A fraction x100 as the tables scale it (on its decimal representation), so both pages print the same digits."""
    return float(Decimal(repr(float(value))) * 100)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def seed_stats(group: SeedGroup, key: str, scale: Callable[[float], float] = percent) -> SeedStats | None:
    """``key`` of the final metrics of the group's scored runs, scaled; None unless every one of them has it."""
    values = [(run.final_metrics or {}).get(key) for run in group.scored]
    if not values or not all(is_number(v) for v in values):
        return None
    return SeedStats(tuple(scale(v) for v in values))


def delta(row: SeedStats | None, reference: SeedStats | None) -> Delta | None:
    """``row``'s mean minus ``reference``'s and the seed noise of the difference (:class:`Delta`); None when a side
    has no values."""
    if row is None or reference is None:
        return None
    if row.n < 2 or reference.n < 2:
        return Delta(row.mean - reference.mean, None)
    return Delta(row.mean - reference.mean, 2 * (row.std ** 2 / row.n + reference.std ** 2 / reference.n) ** 0.5)


def seed_metric_keys(groups: Sequence[SeedGroup]) -> list[str]:
    """The metric keys of ``seeds.md``: tiou, viou, the ``viou@<threshold>`` keys some final metrics hold (by
    threshold), gt_viou."""
    thresholds = {key for group in groups for run in group.scored for key in run.final_metrics
                  if key.startswith("viou@")}
    return ["tiou", "viou", *sorted(thresholds, key=lambda k: float(k.removeprefix("viou@"))), "gt_viou"]


def seed_rows(groups: Sequence[SeedGroup], keys: Sequence[str], reference: str | None) -> list[SeedRow]:
    """A :class:`SeedRow` per group with final metrics; deltas of :data:`DELTA_KEYS` against the row named
    ``reference`` (none when ``reference`` is None)."""
    stats = {g.name: {key: seed_stats(g, key) for key in keys} for g in groups if g.scored}
    base = stats.get(reference) if reference is not None else None
    return [SeedRow(g, stats[g.name], seed_stats(g, MALFORMED_KEY, float),
                    None if base is None or g.name == reference else
                    {key: delta(stats[g.name][key], base[key]) for key in DELTA_KEYS})
            for g in groups if g.scored]


def format_stats(stats: SeedStats | None) -> str:
    """``mean ± std`` with one decimal; the mean alone for a single seed."""
    if stats is None:
        return MISSING_MARKDOWN
    mean = format_value(stats.mean, MISSING_MARKDOWN)
    return mean if stats.std is None else f"{mean} ± {format_value(stats.std, MISSING_MARKDOWN)}"


def format_delta(d: Delta | None) -> str:
    """The signed difference with one decimal, then ``*`` beyond seed noise, ``n/a`` when the noise is unknown."""
    if d is None:
        return MISSING_MARKDOWN
    text = format_value(d.diff, MISSING_MARKDOWN)
    text = "0.0" if text == "-0.0" else text if text.startswith("-") else f"+{text}"
    return {True: f"{text} *", False: text, None: f"{text} n/a"}[d.beyond_noise]


def format_seeds(group: SeedGroup) -> str:
    return f"{len(group.scored)} ({', '.join(format_number(run.seed) for run in group.scored)})"


def seeds_markdown(rows: Sequence[SeedRow], keys: Sequence[str], reference: str | None) -> str:
    """``seeds.md``: a row per experiment (seeds: count, then the seeds), mean ± std (x100) per metric, Δ of the means
    against ``reference`` with the seed-noise marker, the mean malformed generations where any row counts them;
    the rule under the table."""
    with_malformed = any(row.malformed is not None for row in rows)
    header = ["Run", "seeds", *map(metric_label, keys), *(f"Δ {metric_label(k)}" for k in DELTA_KEYS)]
    header += ["malformed"] if with_malformed else []
    lines = ["### Seeds: mean ± sample std over seeds (values x100)", "",
             "| " + " | ".join(header) + " |", "| " + " | ".join([":--"] + ["--:"] * (len(header) - 1)) + " |"]
    for row in rows:
        cells = [_cell(row.group.name), format_seeds(row.group), *(format_stats(row.stats[k]) for k in keys)]
        cells += [format_delta(row.deltas[k] if row.deltas else None) for k in DELTA_KEYS]
        if with_malformed:
            cells.append("" if row.malformed is None else format_value(row.malformed.mean, MISSING_MARKDOWN))
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["Values: mean ± sample standard deviation (ddof=1) over the seeds; a single seed shows its value alone."]
    if reference is None:
        notes.append(f"Δ: none, no row is named `{DEFAULT_REFERENCE}` (--reference NAME picks the reference row).")
    else:
        notes.append(f"Δ: the row's mean minus the mean of `{_cell(reference)}` (x100). {NOISE_RULE}.")
    if with_malformed:
        notes.append("malformed: malformed generations (scored as misses), mean over the seeds.")
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"


def stats_json(stats: SeedStats | None) -> dict | None:
    return None if stats is None else {"mean": stats.mean, "std": stats.std, "values": list(stats.values)}


def delta_json(d: Delta | None) -> dict | None:
    return None if d is None else {"diff": d.diff, "noise": d.noise, "beyond_noise": d.beyond_noise}


def seeds_json(rows: Sequence[SeedRow], keys: Sequence[str], reference: str | None) -> dict:
    """``seeds.json``: the numbers of :func:`seeds_markdown` unrounded (metrics x100; std None with one seed;
    ``beyond_noise`` None where :data:`NOISE_RULE` needs more seeds)."""
    return {
        "reference": reference, "scale": 100, "rule": NOISE_RULE, "labels": {k: metric_label(k) for k in keys},
        "experiments": [{
            "name": row.group.name, "n": len(row.group.scored), "seeds": [run.seed for run in row.group.scored],
            "runs": [str(run.path) for run in row.group.scored],
            "metrics": {k: stats_json(row.stats[k]) for k in keys},
            MALFORMED_KEY: stats_json(row.malformed),
            "vs_reference": None if row.deltas is None else {k: delta_json(d) for k, d in row.deltas.items()},
        } for row in rows]}


def resolve_reference(groups: Sequence[SeedGroup], requested: str | None) -> str | None:
    """The reference row's name: ``requested`` (ValueError when no row with final metrics has it), else
    :data:`DEFAULT_REFERENCE` when such a row exists, else None."""
    names = [group.name for group in groups if group.scored]
    if requested is not None and requested not in names:
        raise ValueError(f"--reference {requested!r}: no row of that name with final metrics (rows: {names})")
    name = requested or DEFAULT_REFERENCE
    return name if name in names else None


# ------------------------------------------------------------------------------------------------------- plot


@dataclass(frozen=True)
class Curve:
    """A line of the plot: ``values`` against ``steps``; ``spread`` the sample std over seeds per step (None for a
    single run)."""

    label: str
    steps: tuple[float, ...]
    values: tuple[float, ...]
    spread: tuple[float, ...] | None = None


def seed_curves(group: SeedGroup, points_of: Callable[[Run], list[tuple[float, float]]]) -> list[Curve]:
    """The mean over seeds of the ``(step, value)`` points of the group's runs when at least two runs have points, all
    at the same steps; else a curve per run with points (labelled ``name (seed s)`` in a group of several runs)."""
    runs = [(run, points) for run in group.runs if (points := points_of(run))]
    steps = {tuple(step for step, _ in points) for _, points in runs}
    if len(runs) > 1 and len(steps) == 1:
        per_step = list(zip(*([value for _, value in points] for _, points in runs)))
        return [Curve(f"{group.name} (mean of {len(runs)} seeds)", steps.pop(), tuple(map(fmean, per_step)),
                      tuple(map(stdev, per_step)))]
    return [Curve(group.name if len(group.runs) == 1 else f"{group.name} (seed {run.seed})",
                  *(tuple(column) for column in zip(*points))) for run, points in runs]


def eval_points(key: str) -> Callable[[Run], list[tuple[float, float]]]:
    """The ``(step, value x100)`` points of eval log key ``key`` of a run."""
    return lambda run: [(line["step"], 100 * line[key]) for line in run.eval_log if key in line]


def loss_points(run: Run) -> list[tuple[float, float]]:
    return [(line["step"], line[LOSS_KEY]) for line in run.train_log if LOSS_KEY in line]


def smoothed(values: Sequence[float], window: int = 5) -> tuple[float, ...]:
    """Trailing mean over ``window`` values (fewer at the start)."""
    return tuple(fmean(values[max(0, j - window + 1): j + 1]) for j in range(len(values)))


def plot_curves(groups: Sequence[SeedGroup], baselines: Mapping[str, dict], out_path: Path) -> Path:
    """Eval m_tIoU, m_vIoU and m_gt_vIoU (x100) against step per row (:func:`seed_curves`; the mean ± one std
    shaded), baselines as dashed lines, and the training start/end loss (smoothed over 5 log lines; runs without
    the term, such as the coupled baseline, are absent). A row keeps its colour across the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    axes = axes.ravel()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def style(row: int, curve: int) -> dict:
        return {"color": colours[row % len(colours)],
                "linestyle": ("-", "--", ":", "-.")[(row // len(colours) + curve) % 4]}

    for ax, (key, label) in zip(axes[:3], EVAL_KEYS.items()):
        for i, group in enumerate(groups):
            for j, curve in enumerate(seed_curves(group, eval_points(key))):
                ax.plot(curve.steps, curve.values, marker="o", markersize=3, label=curve.label, **style(i, j))
                if curve.spread is not None:
                    ax.fill_between(curve.steps, [v - s for v, s in zip(curve.values, curve.spread)],
                                    [v + s for v, s in zip(curve.values, curve.spread)], alpha=0.15,
                                    color=style(i, j)["color"])
        for name, metrics in baselines.items():
            ax.axhline(100 * metrics[key.removeprefix("eval/")], linestyle="--", linewidth=1,
                       color=BASELINE_STYLES.get(name, "gray"), label=name)
        ax.set(xlabel="step", ylabel=f"{label} (x100)", title=f"eval {label}")
    ax = axes[3]
    for i, group in enumerate(groups):
        for j, curve in enumerate(seed_curves(group, loss_points)):
            if len(curve.values) >= 5:
                ax.plot(curve.steps, smoothed(curve.values), linewidth=1, label=curve.label, **style(i, j))
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
    p.add_argument("--out", type=Path, required=True,
                   help="folder for table.md, seeds.md, seeds.json, runs.md, learning_curves.png")
    p.add_argument("--protocol", default="tubedetr", help="evaluation protocol of the baselines")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-span baseline")
    p.add_argument("--reference", metavar="NAME",
                   help=f"the row seeds.md compares every other row with (default: {DEFAULT_REFERENCE!r} when there "
                        "is such a row)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        runs = read_runs(args.runs)
        groups = seed_groups(runs)
        baselines = synthetic_baselines(args.synthetic_dir, args.protocol, args.seed, eval_budget(runs))
        table = results_page_table(groups, baselines)
        reference = resolve_reference(groups, args.reference)
        keys = seed_metric_keys(groups)
        rows = seed_rows(groups, keys, reference)
    except (ValueError, OSError) as e:
        print(f"results_page: error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table)
    (args.out / "seeds.md").write_text(seeds_markdown(rows, keys, reference))
    summary = seeds_json(rows, keys, reference)
    (args.out / "seeds.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    (args.out / "runs.md").write_text(runs_markdown([run for group in groups for run in group.runs]))
    plot_curves(groups, baselines, args.out / "learning_curves.png")
    print(f"results page of {len(runs)} runs in {len(groups)} rows in {args.out}: table.md, seeds.md, seeds.json, "
          "runs.md, learning_curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
