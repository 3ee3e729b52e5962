"""Training checkpoints that a kill at any moment leaves resumable.

Layout: ``<run_dir>/checkpoints/step_00000100/`` holding the engine's state (model trainable weights, optimizer,
scheduler), ``meta.json`` (step, consumed micro-batches, resolved config, git commit) and ``manifest.json`` (size and
SHA-256 of every file, :mod:`bridge_stg.integrity`); ``checkpoints/latest`` names the newest one.

Saving: every rank writes into ``step_N.tmp``; rank 0 adds ``meta.json`` and the manifest, flushes the folder to
disk, renames it to ``step_N`` (an existing ``step_N``, when a finished run re-saves its last step, is first renamed
aside to ``step_N.replaced``), replaces the pointer, and only then deletes what is no longer needed. A kill between
any two of these leaves at least one complete, verifiable copy of the newest state.

Resuming (:func:`find_resumable`) trusts no single file: it first completes an interrupted swap (a verified
``.tmp`` or ``.replaced`` copy whose ``step_N`` is missing takes its place), deletes stale partial folders, then takes
the newest ``step_N`` whose meta and manifest verify, naming every one it skips and why (a skipped one is renamed
``step_N.damaged-<time>``, kept for inspection and never pruned). The pointer is validated (a bare ``step_N`` name
inside the folder) and rewritten when it disagrees.

Randomness needs no saved state: every step reseeds from ``(seed, micro-step, rank)`` and the data order is a
function of ``(seed, epoch)``, so ``meta.json``'s counters determine the rest of the run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from bridge_stg.engine.distributed import DistContext, barrier, broadcast_object
from bridge_stg.integrity import (
    MANIFEST,
    DamagedFileError,
    fsync_dir,
    fsync_tree,
    manifest_problems,
    read_json,
    write_manifest,
    write_text_atomic,
)

log = logging.getLogger(__name__)

POINTER = "latest"
FORMAT = 2  # meta.json's "format": 2 and later always come with a manifest (1: written before manifests)
META = "meta.json"
NAME = re.compile(r"step_(\d{8})")
PARTIAL_SUFFIXES = (".tmp", ".replaced")
NO_VERIFY = "pass train.verify_checkpoints=false (not recommended)"
# Fault drills (tests/engine/test_fault_drills.py): "<point>" or "<point>:<n>" makes this process SIGKILL itself the
# n-th time (default 1st) it reaches that point of a save; the points are the names passed to _fault_point.
KILL_AT_ENV = "BRIDGE_STG_KILL_AT"
SAVE_POINTS = ("engine_written", "manifest_written", "moved_aside", "renamed", "pointer_written", "pruned")
_reached: dict[str, int] = {}


class Saveable(Protocol):
    def save(self, directory: Path) -> None: ...

    def load(self, directory: Path) -> None: ...


@dataclass
class TrainState:
    step: int = 0  # optimizer steps applied
    micro_steps: int = 0  # micro-batches consumed (per rank)
    skipped_steps: int = 0  # steps not applied because the loss or the gradient norm was not finite


def _fault_point(name: str) -> None:
    """A place where a fault drill may kill the process (``BRIDGE_STG_KILL_AT``); nothing happens otherwise."""
    wanted = os.environ.get(KILL_AT_ENV)
    if not wanted:
        return
    point, _, count = wanted.partition(":")
    if point == name:
        _reached[name] = _reached.get(name, 0) + 1
        if _reached[name] == int(count or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# ------------------------------------------------------------------------------------------------ saving


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
        meta = {**asdict(state), "format": FORMAT, "world_size": ctx.world_size, "git_commit": git_commit(),
                "config": config}
        (tmp / META).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        _fault_point("engine_written")
        write_manifest(tmp)
        fsync_tree(tmp)
        _fault_point("manifest_written")
        aside = final.with_name(final.name + ".replaced")
        if final.exists():
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(final, aside)
            _fault_point("moved_aside")
        os.replace(tmp, final)
        fsync_dir(root)
        _fault_point("renamed")
        write_text_atomic(root / POINTER, final.name)
        _fault_point("pointer_written")
        shutil.rmtree(aside, ignore_errors=True)
        _prune(root, keep_last, protect=final)
        _fault_point("pruned")
    barrier()
    return final


def _prune(root: Path, keep_last: int, protect: Path) -> None:
    done = sorted(p for p in root.iterdir() if p.is_dir() and NAME.fullmatch(p.name))
    for old in done[: max(0, len(done) - keep_last)]:
        if old != protect:
            shutil.rmtree(old)


# ------------------------------------------------------------------------------------------------ resuming


def find_resumable(run_dir: Path, ctx: DistContext, verify: bool = True) -> Path | None:
    """The newest intact checkpoint of ``run_dir`` (None when there is none), after repairing what a kill left.
    Rank 0 inspects the folder; every rank gets its answer. ``verify=False`` checks sizes instead of hashes."""
    answer: tuple[str | None, str | None] = (None, None)
    if ctx.is_main:
        try:
            path = _inspect(run_dir / "checkpoints", verify)
            answer = (str(path) if path else None, None)
        except (DamagedFileError, OSError) as err:
            answer = (None, str(err))
    path, error = broadcast_object(answer)
    if error is not None:
        raise DamagedFileError(error)
    return Path(path) if path is not None else None


def _inspect(root: Path, verify: bool) -> Path | None:
    if not root.is_dir():
        return None
    _repair(root, verify)
    skipped = []
    chosen = None
    for path in sorted((p for p in root.iterdir() if p.is_dir() and NAME.fullmatch(p.name)), reverse=True):
        problem = _checkpoint_problem(path, verify)
        if problem is None:
            chosen = path
            break
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)  # kept for inspection, out of the way of this run's saves and pruning
        skipped.append(f"{path.name}: {problem} (moved to {aside.name})")
    if skipped:
        log.warning("skipping damaged or incomplete checkpoints:\n  %s", "\n  ".join(skipped))
    if chosen is None:
        damaged = sorted(p.name for p in root.glob("step_*.damaged-*"))
        if damaged:
            raise DamagedFileError(f"{root}: no checkpoint is intact ({'; '.join(skipped) or ', '.join(damaged)}); "
                                   "nothing to resume from. Restore a checkpoint folder from a copy, or start a new "
                                   f"run directory (if only hashes disagree and you trust the files, {NO_VERIFY} "
                                   "checks sizes only: rename the folder back to step_N first)")
        return None
    _check_pointer(root, chosen)
    return chosen


def _repair(root: Path, verify: bool) -> None:
    """Complete interrupted swaps and delete partial folders (:func:`save_checkpoint`)."""
    for suffix in PARTIAL_SUFFIXES:  # a finished .tmp is the newer copy, so it is tried first
        for partial in sorted(root.glob(f"step_*{suffix}")):
            final = root / partial.name.removesuffix(suffix)
            if not NAME.fullmatch(final.name) or not partial.is_dir():
                continue
            if (not final.exists() or _checkpoint_problem(final, verify, need_manifest=True)) and \
                    _checkpoint_problem(partial, verify, need_manifest=True) is None:
                if final.exists():
                    shutil.rmtree(final)
                os.replace(partial, final)
                fsync_dir(root)
                log.warning("recovered %s from %s (a save was interrupted)", final.name, partial.name)
    for partial in [p for s in PARTIAL_SUFFIXES for p in root.glob(f"step_*{s}") if p.is_dir()]:
        log.warning("deleting %s, left incomplete by an interrupted save", partial)
        shutil.rmtree(partial)


def _checkpoint_problem(path: Path, verify: bool, need_manifest: bool = False) -> str | None:
    """Why ``path`` cannot be resumed from, or None. A folder without a manifest (written before manifests existed)
    is accepted unverified unless ``need_manifest``, or unless it holds nothing but its meta file."""
    if not (path / META).is_file():
        return f"no {META}"
    try:
        meta = read_json(path / META)
        int(meta["step"]), int(meta["micro_steps"])
    except (DamagedFileError, KeyError, TypeError, ValueError) as err:
        return f"unreadable {META} ({err})"
    problems = manifest_problems(path, hashes=verify)
    if problems is None:
        if need_manifest or meta.get("format", 1) >= FORMAT or not any(p.name != META for p in path.iterdir()):
            return f"incomplete (no {MANIFEST})"
        log.warning("%s has no manifest (written before manifests existed): resumed from unverified", path)
        return None
    return "; ".join(problems[:3]) if problems else None


def _check_pointer(root: Path, chosen: Path) -> None:
    pointer = root / POINTER
    target = pointer.read_text(errors="replace").strip() if pointer.is_file() else None
    if target == chosen.name:
        return
    if target is not None and not NAME.fullmatch(target):
        log.warning("%s holds %r, not a checkpoint name of this folder: ignored", pointer, target[:200])
    elif target is not None:
        log.warning("%s names %s, which is %s: resuming from %s instead", pointer, target,
                    "missing" if not (root / target).exists() else "older or damaged", chosen.name)
    write_text_atomic(pointer, chosen.name)


def read_meta(path: Path) -> dict[str, Any]:
    return read_json(path / META)


def load_checkpoint(engine: Saveable, path: Path) -> TrainState:
    meta = read_meta(path)
    engine.load(path)
    return TrainState(step=meta["step"], micro_steps=meta["micro_steps"],
                      skipped_steps=meta.get("skipped_steps", 0))
