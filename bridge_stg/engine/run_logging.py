"""Rank-aware logs, the JSONL metrics file, wandb, throughput and the learning-curve plot.

Rank 0 logs to the console; every rank logs to ``<run_dir>/logs/rank<r>.log``. No ``print`` is patched.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from bridge_stg.engine.specs import LoggingSpec

LOG_FORMAT = "%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s"


def setup_logging(run_dir: Path, rank: int) -> None:
    root = logging.getLogger("bridge_stg")
    root.setLevel(logging.INFO)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter(LOG_FORMAT.format(rank=rank), datefmt="%H:%M:%S")
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(run_dir / "logs" / f"rank{rank}.log")
    file_handler.setFormatter(fmt)
    root.addHandler(file_handler)
    if rank == 0:
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(fmt)
        root.addHandler(console)


class MetricsLog:
    """Appends one JSON object per logged step to ``metrics.jsonl`` and mirrors it to wandb (rank 0 only)."""

    def __init__(self, run_dir: Path, spec: LoggingSpec, enabled: bool, config: dict[str, Any]):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.wandb = None
        if enabled and spec.wandb != "disabled":
            os.environ.setdefault("WANDB_MODE", spec.wandb)
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb

            self.wandb = wandb.init(project=spec.wandb_project, entity=spec.wandb_entity, dir=str(run_dir),
                                    config=config, name=run_dir.name, resume="allow", id=_wandb_id(run_dir))

    def write(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time": time.time(), **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in values.items() if isinstance(v, (int, float))}, step=step)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def _wandb_id(run_dir: Path) -> str:
    """A stable id per run directory, so that a resumed run continues the same wandb run."""
    import hashlib

    return hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]


class Throughput:
    """Samples, LLM tokens and decoder tokens per second over the window since the last ``rates`` call."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start, self.samples, self.tokens, self.decoder_tokens = time.perf_counter(), 0, 0, 0.0

    def add(self, samples: int, tokens: int, decoder_tokens: float) -> None:
        self.samples += samples
        self.tokens += tokens
        self.decoder_tokens += decoder_tokens

    def rates(self) -> dict[str, float]:
        seconds = max(time.perf_counter() - self.start, 1e-9)
        out = {"samples_per_s": self.samples / seconds, "tokens_per_s": self.tokens / seconds,
               "decoder_tokens_per_s": self.decoder_tokens / seconds}
        self.reset()
        return out


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` in the order they were logged (a resumed run appends after its killed
    attempt's rows)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def logged_losses(run_dir: Path) -> dict[int, float]:
    """The total loss of each step of ``run_dir``, the last time it was logged."""
    return {r["step"]: r["loss/total"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss/total" in r}


def plot_learning_curves(metrics_path: Path, out_path: Path, keys: tuple[str, ...] = ("loss/total",)) -> Path | None:
    """Plot the logged training losses (and evaluation metrics if any) against steps; None without data."""
    if not metrics_path.is_file():
        return None
    rows = read_metrics(metrics_path)
    train = [r for r in rows if any(k in r for k in keys)]
    evals = [r for r in rows if "eval/viou" in r or "eval/tiou" in r]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(10 if evals else 5, 3.5), squeeze=False)
    ax = axes[0, 0]
    for key in sorted({k for r in train for k in r if k.startswith("loss/")}):
        points = [(r["step"], r[key]) for r in train if key in r]
        ax.plot(*zip(*points), label=key.removeprefix("loss/"), linewidth=1.2 if key == "loss/total" else 0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(fontsize=6)
    if evals:
        ax = axes[0, 1]
        for key in ("eval/tiou", "eval/viou", "eval/gt_viou"):
            points = [(r["step"], r[key]) for r in evals if key in r]
            if points:
                ax.plot(*zip(*points), marker="o", label=key.removeprefix("eval/"))
        ax.set_xlabel("step")
        ax.set_ylabel("metric")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path
