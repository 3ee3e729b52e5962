"""Fault drills: kill training at seeded random moments and at every point of a checkpoint save, damage every file
of a checkpoint and of an exported model, and check that the run always resumes to the uninterrupted losses and
that every damaged file is named. Writes a JSON record and prints the table of docs/reliability.md.

    python scripts/fault_drills.py --work runs/drills --kills 10 --seed 0

Each training launch is ``python scripts/train.py experiment=synthetic_debug`` (6 steps, a checkpoint every step,
two kept) on CPU; a launch takes ~10 s, the default drill ~5 minutes on 2 cores. ``tests/engine/test_fault_drills.py``
runs a small drill (slow-marked).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bridge_stg.engine.checkpoint import KILL_AT_ENV, SAVE_POINTS  # noqa: E402
from bridge_stg.engine.run_logging import logged_losses  # noqa: E402
from bridge_stg.integrity import MANIFEST, manifest_problems  # noqa: E402

ENV = {**os.environ, "BRIDGE_STG_DS_SKIP_SHM": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
RUN = ("train.max_steps=6", "train.save_every=1", "train.keep_last=2", "train.log_every=1")


def command(run_dir: Path, work: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(REPO / "scripts" / "train.py"), "experiment=synthetic_debug",
            f"hydra.run.dir={run_dir}", f"paths.data_dir={work / 'data'}", f"paths.output_root={work / 'runs'}",
            *RUN, *overrides]


def launch(run_dir: Path, work: Path, *overrides: str, env: dict | None = None,
           kill_after: float | None = None) -> tuple[int, str]:
    """(exit status, stderr) of one training launch; ``kill_after`` seconds SIGKILLs it if still running."""
    process = subprocess.Popen(command(run_dir, work, *overrides), cwd=REPO, env=env or ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = process.communicate(timeout=kill_after if kill_after is not None else 900)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate()
    return process.returncode, stderr


def on_disk(run_dir: Path) -> str:
    """What a kill left: the checkpoint folders and the pointer."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return "no checkpoint"
    names = sorted(p.name for p in root.iterdir() if p.name != "latest")
    pointer = (root / "latest").read_text().strip() if (root / "latest").is_file() else "-"
    return f"{', '.join(names) or 'none'}; latest={pointer}"


def resume_to_end(run_dir: Path, work: Path, attempts: int = 3) -> dict:
    tracebacks = 0
    for attempt in range(1, attempts + 1):
        status, stderr = launch(run_dir, work, "train.resume=true")
        tracebacks += "Traceback" in stderr
        if status == 0:
            return {"resumes": attempt, "tracebacks": tracebacks, "error": None}
    return {"resumes": attempts, "tracebacks": tracebacks, "error": stderr.strip().splitlines()[-1:]}


def kill_drill(work: Path, kills: int, rng: random.Random, reference: dict[int, float],
               duration: float) -> list[dict]:
    """Kills at each save point, at ``kills`` random moments of a run that lasts ``duration`` seconds (every
    third one a chain: the resume of a killed run is killed again), and while a finished run resumes."""
    cases = []

    def finish(name: str, run_dir: Path, how: str, launches: list[tuple[int, str]]) -> None:
        left = on_disk(run_dir)
        outcome = resume_to_end(run_dir, work)
        same = outcome["error"] is None and logged_losses(run_dir) == reference
        model_ok = manifest_problems(run_dir / "model") == []
        cases.append({"case": name, "kill": how, "launches": len(launches),
                      "killed": sum(status == -signal.SIGKILL for status, _ in launches), "left_on_disk": left,
                      **outcome, "tracebacks": outcome["tracebacks"] + sum("Traceback" in e for _, e in launches),
                      "same_losses": same, "model_verifies": model_ok})
        print(f"  {name}: {how} -> {left} -> resumed in {outcome['resumes']}, same losses {same}", flush=True)

    for point in SAVE_POINTS:
        if point == "moved_aside":  # only when a step is saved twice (tests/engine/test_checkpoints.py drills it)
            continue
        nth = rng.randint(1, 6)
        run_dir = work / f"point_{point}"
        launches = [launch(run_dir, work, env={**ENV, KILL_AT_ENV: f"{point}:{nth}"})]
        finish(f"save point {point}", run_dir, f"at the {nth}. save", launches)
    for i in range(kills):
        run_dir = work / f"random_{i}"
        delays = [rng.uniform(0.5, duration) for _ in range(2 if i % 3 == 2 else 1)]
        launches = [launch(run_dir, work, *(["train.resume=true"] if run_dir.exists() else []), kill_after=delay)
                    for delay in delays]
        finish(f"random {i}", run_dir, " then ".join(f"after {d:.1f} s" for d in delays), launches)
    # a finished run resumed again (it only re-exports and re-evaluates), killed on the way
    source = work / "random_0" if kills else work / "reference"
    for i in range(max(1, kills // 3)):
        run_dir = work / f"finished_{i}"
        shutil.copytree(source, run_dir)
        delay = rng.uniform(0.5, 0.8 * duration)  # it only loads, exports and evaluates: shorter than a run
        launches = [launch(run_dir, work, "train.resume=true", kill_after=delay)]
        finish(f"finished run {i}", run_dir, f"resumed, killed after {delay:.1f} s", launches)
    return cases


def damage_drill(run_dir: Path, work: Path) -> list[dict]:
    """Flip a byte in / truncate / delete each file of the newest checkpoint and of the exported model (on copies);
    a resume must skip the checkpoint naming the file, a model load must fail naming it."""
    import torch

    from bridge_stg.engine.checkpoint import find_resumable
    from bridge_stg.engine.components import load_model
    from bridge_stg.engine.distributed import DistContext
    from bridge_stg.integrity import DamagedFileError

    ctx = DistContext(0, 1, 0, torch.device("cpu"))
    damages = {
        "flip a byte": lambda f: f.write_bytes(_flipped(f.read_bytes())),
        "truncate": lambda f: f.write_bytes(f.read_bytes()[: f.stat().st_size // 2]),
        "delete": lambda f: f.unlink(),
    }
    newest = max((run_dir / "checkpoints").glob("step_*"))
    cases = []
    for kind, folder in (("checkpoint", newest), ("model", run_dir / "model")):
        # a model folder without its manifest loads with a warning (one written before manifests existed)
        files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file()
                       and (kind == "checkpoint" or p.relative_to(folder) != Path(MANIFEST)))
        for rel in files:
            for damage, apply in damages.items():
                copy = work / "damage" / "run"
                shutil.rmtree(copy.parent, ignore_errors=True)
                shutil.copytree(run_dir, copy)
                target = (max((copy / "checkpoints").glob("step_*")) if kind == "checkpoint" else copy / "model")
                apply(target / rel)
                named = False
                try:
                    if kind == "checkpoint":
                        with _warnings() as said:
                            chosen = find_resumable(copy, ctx)
                        aside = list((copy / "checkpoints").glob(f"{newest.name}.damaged-*"))
                        named = chosen is not None and chosen != newest and bool(aside) and rel.name in said.text
                        outcome = f"resumed from {chosen.name if chosen else None}; {newest.name} named, set aside"
                    else:
                        load_model(target)
                        outcome = "loaded"
                except DamagedFileError as err:
                    named = str(rel) in str(err)
                    outcome = "refused, naming the file"
                cases.append({"case": f"{kind}: {damage} {rel}", "named": named, "outcome": outcome})
    return cases


class _Said(logging.Handler):
    text = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.text += record.getMessage() + "\n"


@contextlib.contextmanager
def _warnings():
    """The project's log messages while the block runs."""
    handler, logger = _Said(), logging.getLogger("bridge_stg")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _flipped(data: bytes) -> bytes:
    if not data:
        return b"\x00"
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "fault_drills")
    parser.add_argument("--kills", type=int, default=10, help="kills at random moments (plus every save point)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="where to write the record (default: <work>/drills.json)")
    args = parser.parse_args()
    work = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    rng = random.Random(args.seed)
    started = time.time()
    launch(work / "warmup", work)  # builds the synthetic data and the debug backbone once
    begin = time.time()
    status, stderr = launch(work / "reference", work)
    duration = time.time() - begin
    if status != 0:
        sys.exit(f"the uninterrupted run failed:\n{stderr[-3000:]}")
    reference = logged_losses(work / "reference")
    print(f"reference run: {duration:.1f} s, losses of steps {sorted(reference)}", flush=True)
    kills = kill_drill(work, args.kills, rng, reference, duration)
    damage = damage_drill(work / "reference", work)
    record = {"seed": args.seed, "seconds": round(time.time() - started), "run_seconds": round(duration, 1),
              "kills": kills, "damage": damage}
    out = args.json or work / "drills.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    resumed = sum(c["same_losses"] and c["model_verifies"] for c in kills)
    print(f"\nkills: {len(kills)} cases ({sum(c['launches'] for c in kills)} launches, "
          f"{sum(c['killed'] for c in kills)} killed, the others had finished), {resumed} resumed to the "
          f"uninterrupted losses with a verified model, {sum(c['tracebacks'] for c in kills)} tracebacks")
    print(f"damaged files: {len(damage)} cases, {sum(c['named'] for c in damage)} named")
    print(f"record: {out} ({record['seconds']} s)")
    if resumed < len(kills) or not all(c["named"] for c in damage):
        sys.exit(1)


if __name__ == "__main__":
    main()
