"""Training checkpoints: written atomically, newest found through a pointer file, the oldest pruned.

Layout: ``<run_dir>/checkpoints/step_00000100/`` holding the engine's state (model trainable weights, optimizer,
scheduler) and ``meta.json`` (step, consumed micro-batches, resolved config, git commit). A checkpoint is first
written to ``step_N.tmp`` and renamed once complete, and ``checkpoints/latest`` is replaced atomically afterwards:
killing the process during a save leaves the previous checkpoint and pointer intact.

Randomness needs no saved state: every step reseeds from ``(seed, micro-step, rank)`` and the data order is a
function of ``(seed, epoch)``, so ``meta.json``'s counters determine the rest of the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from bridge_stg.engine.distributed import DistContext, barrier

POINTER = "latest"


class Saveable(Protocol):
    def save(self, directory: Path) -> None: ...

    def load(self, directory: Path) -> None: ...


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    micro_steps: int = 0  # micro-batches consumed (per rank)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(engine: Saveable, run_dir: Path, state: TrainState, config: dict[str, Any], keep_last: int,
                    ctx: DistContext) -> Path:
    """Write a checkpoint (every rank calls this) and return its directory."""
    root = run_dir / "checkpoints"
    final = root / f"step_{state.step:08d}"
    tmp = root / f"{final.name}.tmp"
    if ctx.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    engine.save(tmp)
    barrier()
    if ctx.is_main:
        meta = {**asdict(state), "world_size": ctx.world_size, "git_commit": git_commit(), "config": config}
        _write_atomic(tmp / "meta.json", json.dumps(meta, indent=2, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_atomic(root / POINTER, final.name)
        _prune(root, keep_last, protect=final)
    barrier()
    return final


def _prune(root: Path, keep_last: int, protect: Path) -> None:
    done = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in done[: max(0, len(done) - keep_last)]:
        if old != protect:
            shutil.rmtree(old)


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / POINTER
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    if not (path / "meta.json").is_file():
        raise FileNotFoundError(f"{pointer} points to {path}, which is not a complete checkpoint")
    return path


def load_checkpoint(engine: Saveable, path: Path) -> TrainState:
    meta = json.loads((path / "meta.json").read_text())
    engine.load(path)
    return TrainState(step=meta["step"], micro_steps=meta["micro_steps"])
