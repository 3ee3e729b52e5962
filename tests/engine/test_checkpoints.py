"""Checkpoints survive a kill at every step of a save, damaged files and bad pointers; resumes never mix configs.

A "kill" here stops the save at one of its named fault points (the same points the slow drills SIGKILL a real
training process at) and leaves the folder as the process would: the next resume must find an intact checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch

from bridge_stg.engine import checkpoint
from bridge_stg.engine.checkpoint import POINTER, SAVE_POINTS, TrainState, find_resumable, load_checkpoint
from bridge_stg.engine.distributed import DistContext
from bridge_stg.engine.errors import ResumeError
from bridge_stg.engine.optim import FiniteAdamW, build_scheduler, lr_factor, retarget
from bridge_stg.engine.resume import check_resume, config_changes
from bridge_stg.engine.specs import OptimSpec
from bridge_stg.integrity import MANIFEST, DamagedFileError

CTX = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
CONFIG = {"optim": {"lr_heads": 1e-4}, "train": {"max_steps": 10}}


class FileEngine:
    """An engine whose whole state is one byte, written as a 4 KiB file (and read back)."""

    def __init__(self, value: int = 0):
        self.value = value

    def save(self, directory: Path) -> None:
        (directory / "weights.bin").write_bytes(bytes([self.value]) * 4096)

    def load(self, directory: Path) -> None:
        data = (directory / "weights.bin").read_bytes()
        assert len(set(data)) == 1 and len(data) == 4096, "a torn weights file was loaded"
        self.value = data[0]


class Killed(BaseException):
    """The process died here (BaseException: no `except Exception` in the code under test may swallow it)."""


def save(run_dir: Path, step: int, value: int, keep_last: int = 5) -> Path:
    return checkpoint.save_checkpoint(FileEngine(value), run_dir, TrainState(step=step, micro_steps=2 * step), CONFIG,
                                      keep_last, CTX)


def resume(run_dir: Path, verify: bool = True) -> tuple[int, int] | None:
    """(step, engine value) of what a resume would load, or None."""
    path = find_resumable(run_dir, CTX, verify=verify)
    if path is None:
        return None
    engine = FileEngine()
    state = load_checkpoint(engine, path)
    return state.step, engine.value


def kill_at(monkeypatch, point: str) -> list[str]:
    reached = []

    def fault(name):
        reached.append(name)
        if name == point:
            raise Killed(point)

    monkeypatch.setattr(checkpoint, "_fault_point", fault)
    return reached


def leftovers(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir() if not checkpoint.NAME.fullmatch(p.name)
                  and p.name != POINTER)


# ------------------------------------------------------------------------------------------------ mechanics


def test_keep_last_prunes_the_oldest_and_the_pointer_names_the_newest(tmp_path):
    for step in (2, 4, 6, 8):
        final = save(tmp_path, step, value=step, keep_last=2)
        root = tmp_path / "checkpoints"
        assert final == root / f"step_{step:08d}" and final.is_dir()
        assert (root / POINTER).read_text().strip() == final.name
        kept = sorted(p.name for p in root.iterdir() if checkpoint.NAME.fullmatch(p.name))
        assert kept == [f"step_{s:08d}" for s in (2, 4, 6, 8) if s <= step][-2:]  # the newest two, never more
        assert leftovers(tmp_path) == []  # no .tmp or .replaced folder survives a completed save
    assert resume(tmp_path) == (8, 8)


def test_a_save_is_written_under_tmp_and_renamed(tmp_path, monkeypatch):
    seen = []
    real_replace = checkpoint.os.replace

    def spy(src, dst):
        seen.append((Path(src).name, Path(dst).name))
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", spy)
    save(tmp_path, 3, value=7)
    assert ("step_00000003.tmp", "step_00000003") in seen
    assert resume(tmp_path) == (3, 7)


# ------------------------------------------------------------------------------------------------ kills


# moving the old copy aside happens only when a step is saved again
KILLS = [pytest.param(point, same, id=f"{point}-{'same_step_again' if same else 'new_step'}")
         for point in SAVE_POINTS for same in (False, True) if same or point != "moved_aside"]


@pytest.mark.parametrize("point,same_step", KILLS)
def test_a_kill_at_any_point_of_a_save_leaves_a_resumable_run(tmp_path, monkeypatch, point, same_step):
    save(tmp_path, 1, 1)
    save(tmp_path, 2, 2)
    reached = kill_at(monkeypatch, point)
    step, value = (2, 22) if same_step else (3, 3)
    try:
        save(tmp_path, step, value)
    except Killed:
        pass
    assert point in reached
    monkeypatch.setattr(checkpoint, "_fault_point", lambda name: None)
    found = resume(tmp_path)
    # the interrupted save is either complete (its new state) or absent (the previous state): never torn, never lost
    assert found in ({(2, 2), (2, 22)} if same_step else {(2, 2), (3, 3)})
    assert leftovers(tmp_path) == []
    assert (tmp_path / "checkpoints" / POINTER).read_text() == f"step_{found[0]:08d}"
    save(tmp_path, 4, 4)  # and the run goes on
    assert resume(tmp_path) == (4, 4)


def test_the_drills_broken_resave_is_recovered(tmp_path):
    """The case that stranded runs before: step_N/ holds only meta.json, the complete copy is step_N.tmp, and
    ``latest`` points at the broken one."""
    save(tmp_path, 1, 1)
    final = save(tmp_path, 2, 2)
    tmp = final.with_name(final.name + ".tmp")
    final.rename(tmp)
    final.mkdir()
    (final / "meta.json").write_bytes((tmp / "meta.json").read_bytes())
    assert resume(tmp_path) == (2, 2)
    assert leftovers(tmp_path) == []


def test_a_pointer_at_nothing_or_outside_the_folder_is_ignored(tmp_path, caplog):
    save(tmp_path, 1, 1)
    save(tmp_path, 2, 2)
    pointer = tmp_path / "checkpoints" / POINTER
    for target in ("step_00000009", "../../../etc", "/tmp/step_00000002", ""):
        pointer.write_text(target)
        with caplog.at_level(logging.WARNING):
            assert resume(tmp_path) == (2, 2)
        assert pointer.read_text() == "step_00000002"
    assert "not a checkpoint name" in caplog.text and "missing" in caplog.text


def test_a_damaged_checkpoint_is_named_set_aside_and_an_older_one_resumed(tmp_path, caplog):
    save(tmp_path, 1, 1)
    newest = save(tmp_path, 2, 2)
    data = bytearray((newest / "weights.bin").read_bytes())
    data[100] ^= 0xFF  # one flipped byte, same size
    (newest / "weights.bin").write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert resume(tmp_path) == (1, 1)
    assert "step_00000002" in caplog.text and "SHA-256" in caplog.text
    assert [p.name.split(".")[1].split("-")[0] for p in (tmp_path / "checkpoints").glob("step_00000002.*")] == \
        ["damaged"]  # kept for inspection, out of the way


def test_without_hash_verification_only_sizes_are_checked(tmp_path):
    newest = save(tmp_path, 1, 1)
    (newest / "weights.bin").write_bytes(bytes([7]) * 4096)  # same size, other content
    assert resume(tmp_path, verify=False) == (1, 7)
    (newest / "weights.bin").write_bytes(bytes([7]) * 100)  # truncated
    with pytest.raises(DamagedFileError, match="100 bytes"):
        resume(tmp_path, verify=False)


def test_when_every_checkpoint_is_damaged_resume_refuses_every_time(tmp_path):
    only = save(tmp_path, 1, 1)
    (only / "weights.bin").write_bytes(b"x")
    with pytest.raises(DamagedFileError, match="no checkpoint is intact"):
        resume(tmp_path)
    with pytest.raises(DamagedFileError, match="no checkpoint is intact"):  # never "starting from scratch"
        resume(tmp_path)


def test_stale_partial_folders_are_deleted(tmp_path):
    save(tmp_path, 1, 1)
    stale = tmp_path / "checkpoints" / "step_00000002.tmp"
    stale.mkdir()
    (stale / "weights.bin").write_bytes(b"half")
    assert resume(tmp_path) == (1, 1)
    assert not stale.exists()


def test_every_checkpoint_carries_a_manifest_of_its_files(tmp_path):
    path = save(tmp_path, 1, 1)
    files = checkpoint.read_json(path / MANIFEST)["files"]
    assert sorted(files) == ["meta.json", "weights.bin"]
    assert files["weights.bin"]["size"] == 4096 and len(files["weights.bin"]["sha256"]) == 64


# ------------------------------------------------------------------------------------------------ resume policy


def changes(saved: dict, now: dict) -> dict:
    return config_changes({"run_dir": "/a", **saved}, {"run_dir": "/b", **now})


def test_a_changed_schedule_is_refused_naming_keys_and_both_values():
    found = changes({"optim": {"lr_heads": 1e-4}, "train": {"max_steps": 10}},
                    {"optim": {"lr_heads": 5e-4}, "train": {"max_steps": 20}})
    with pytest.raises(ResumeError) as info:
        check_resume(found, "refuse", "ckpt/step_00000005")
    message = str(info.value)
    assert "optim.lr_heads: 0.0001 in the checkpoint, 0.0005 now" in message
    assert "train.max_steps: 10 in the checkpoint, 20 now" in message
    assert "train.on_resume_change=apply" in message
    assert set(check_resume(found, "apply", "ckpt")) == {"optim.lr_heads", "train.max_steps"}


def test_a_changed_model_or_data_is_refused_even_under_apply():
    found = changes({"model": {"decoder_dim": 64}, "optim": {"lr_heads": 1.0}},
                    {"model": {"decoder_dim": 128}, "optim": {"lr_heads": 2.0}})
    with pytest.raises(ResumeError, match="model.decoder_dim: 64 in the checkpoint, 128 now"):
        check_resume(found, "apply", "ckpt")


def test_paths_logging_and_intervals_may_change():
    source = {"name": "vidstg", "annotations": "/old/train.json", "media_root": "/old/videos"}
    found = changes({"logging": {"wandb": "offline"}, "train": {"save_every": 10}, "data": {
        "num_workers": 2, "train_sources": [source]}},
        {"logging": {"wandb": "online"}, "train": {"save_every": 50}, "data": {
            "num_workers": 8, "train_sources": [{**source, "annotations": "/new/train.json",
                                                 "media_root": "/new/videos"}]}})
    assert {v["kind"] for v in found.values()} == {"free"}
    assert "data.train_sources[0].media_root" in found
    assert check_resume(found, "refuse", "ckpt") == {}


def test_apply_moves_the_schedule_to_its_new_values_at_the_step_reached():
    spec = OptimSpec(lr_heads=1e-3, warmup_steps=2)
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = FiniteAdamW([{"name": "heads", "params": [weight], "lr": 1e-3, "initial_lr": 1e-3}])
    scheduler = build_scheduler(optimizer, 10, spec)
    for _ in range(5):
        weight.grad = torch.ones(3)
        optimizer.step()
        scheduler.step()
    new = OptimSpec(lr_heads=4e-3, warmup_steps=2, weight_decay=0.1)
    retarget(optimizer, scheduler, new, 20)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(4e-3 * lr_factor(5, 20, new))
    assert optimizer.param_groups[0]["weight_decay"] == 0.1
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(4e-3 * lr_factor(6, 20, new))


def test_a_non_finite_gradient_leaves_the_weights_untouched():
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = FiniteAdamW([weight], lr=0.1)
    weight.grad = torch.tensor([1.0, math.nan, 1.0])
    optimizer.step()
    assert optimizer.overflow and torch.equal(weight.detach(), torch.ones(3))
    weight.grad = torch.ones(3)
    optimizer.step()
    assert not optimizer.overflow and not torch.equal(weight.detach(), torch.ones(3))


def test_a_deleted_manifest_fails_but_a_checkpoint_from_before_manifests_resumes(tmp_path):
    save(tmp_path, 1, 1)
    newest = save(tmp_path, 2, 2)
    (newest / MANIFEST).unlink()
    assert resume(tmp_path) == (1, 1)  # written with a manifest: its loss is damage

    legacy = tmp_path / "legacy"
    old = save(legacy, 3, 3)
    (old / MANIFEST).unlink()
    meta = checkpoint.read_json(old / "meta.json")
    del meta["format"]
    (old / "meta.json").write_text(json.dumps(meta))
    assert resume(legacy) == (3, 3)
