"""Fault drills on real training launches (``python scripts/train.py``, synthetic debug experiment, CPU).

Default suite: divergence stops with a named error and no non-finite checkpoint; a resume never silently mixes two
configurations; a new run never overwrites an old one; DeepSpeed state files are never unpickled.
Slow (``-m slow``): scripts/fault_drills.py on a small budget — SIGKILL at every point of a checkpoint save and at
seeded random moments (also while a finished run resumes and re-exports), resuming after each, and the losses
equal the uninterrupted run's; every file of a checkpoint and of the exported model damaged and named.
docs/reliability.md reports the full drill.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_launches import ENV, REPO, launch, ok

from bridge_stg.data.synthetic import generate_benchmark
from bridge_stg.engine.builder import compose_spec
from bridge_stg.engine.optim import lr_factor
from bridge_stg.engine.run_logging import logged_losses
from bridge_stg.engine.specs import OptimSpec

LR_OVERRIDES = [f"optim.{k}={{lr}}" for k in ("lr_llm", "lr_heads", "lr_vision", "lr_new_tokens")]


def train(run_dir: Path, work: Path, *overrides: str, **options) -> subprocess.CompletedProcess:
    return launch("train.py", run_dir, work, *overrides, **options)


# ------------------------------------------------------------------------------------------------ default suite


def test_divergence_stops_with_a_named_error_and_saves_nothing_non_finite(tmp_path, shared_work):
    run_dir = tmp_path / "diverge"
    lrs = [o.format(lr=1e10) for o in LR_OVERRIDES]
    out = train(run_dir, shared_work, "train.max_steps=20", "train.save_every=1", "train.max_bad_steps=3", *lrs)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout
    assert "error: training diverged after step 1" in out.stderr
    assert "3 attempts in a row at step 2" in out.stderr and "checkpoints/step_00000001" in out.stderr
    assert not (run_dir / "model").exists()
    for weights in run_dir.glob("checkpoints/step_*/trainable.safetensors"):
        assert all(torch.isfinite(t).all() for t in load_file(weights).values())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["nonfinite/skipped_steps"] for r in rows if "nonfinite/terms" in r] == [1, 2, 3]
    assert "total" in rows[-1]["nonfinite/terms"]


def test_a_resume_applies_changed_values_only_on_purpose_and_never_overwrites(tmp_path, shared_work, trained_run):
    run_dir, work = tmp_path / "policy", shared_work
    shutil.copytree(trained_run, run_dir)  # a finished 2-step run
    # a new run's data and backbone folders, which do not exist: refused before anything is built, it creates neither
    unbuilt = tmp_path / "unbuilt"
    again = train(run_dir, unbuilt, "train.max_steps=2")
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert "already holds checkpoints" in again.stderr and "train.resume=true" in again.stderr
    assert not unbuilt.exists()

    refused = train(run_dir, work, "train.resume=true", "train.max_steps=4", "optim.lr_heads=0.002")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "optim.lr_heads: 0.001 in the checkpoint, 0.002 now" in refused.stderr
    assert "train.max_steps: 2 in the checkpoint, 4 now" in refused.stderr
    assert "pretrained tiny backbone" not in refused.stdout + refused.stderr  # refused before the backbone is loaded
    assert logged_losses(run_dir).keys() == {1, 2}  # nothing trained

    ok(train(run_dir, work, "train.resume=true", "train.max_steps=4", "optim.lr_heads=0.002",
             "train.on_resume_change=apply"))
    info = json.loads((run_dir / "run.json").read_text())
    change = info["resumes"][-1]["changes"]["optim.lr_heads"]
    assert (change["checkpoint"], change["now"]) == (0.001, 0.002) and info["config"]["optim"]["lr_heads"] == 0.002
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in rows if "loss/total" in r}
    assert sorted(steps) == [1, 2, 3, 4]
    # step 3 of the new 4-step cosine from the new base (the old base would give half this)
    assert steps[3]["lr/heads"] == pytest.approx(0.002 * lr_factor(3, 4, OptimSpec(lr_heads=0.002)))

    changed_model = train(run_dir, work, "train.resume=true", "train.max_steps=4", "optim.lr_heads=0.002",
                          "train.on_resume_change=apply", "model.decoder_dim=64")
    assert changed_model.returncode == 1 and "model.decoder_dim" in changed_model.stderr


def test_an_unreadable_video_stops_training_with_the_working_override_and_skipping_counts_it(tmp_path, shared_work):
    # the mp4 training split (8 clips, one epoch) in a data folder of its own, since one of its videos gets
    # truncated; generated by the call the training script makes, without a launch
    work, data = shared_work, tmp_path / "data"
    fixed = ("data=synthetic_fixed", "train.max_steps=2", "data.eval_source=null")  # no final evaluation: not drilled
    spec = compose_spec(["experiment=synthetic_debug", f"paths.data_dir={data}", *fixed])
    record = generate_benchmark(spec.data.synthetic, spec.data.synthetic_dir)["train"][0]
    video = Path(spec.data.synthetic_dir) / "videos" / record.video_path
    video.write_bytes(video.read_bytes()[:200])  # truncated: no frame decodes

    failed = train(tmp_path / "video_bad", work, *fixed, "data.num_workers=1", data=data)  # raised in a worker
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert video.name in failed.stderr and "data.skip_bad_videos=true" in failed.stderr

    ok(train(tmp_path / "video_skip", work, *fixed, "data.skip_bad_videos=true", data=data))
    rows = [json.loads(line) for line in (tmp_path / "video_skip" / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("data/skipped_samples", 0) for r in rows) >= 1


def test_an_unverified_damaged_optimizer_state_is_named_without_a_traceback(tmp_path, shared_work, trained_run):
    run_dir, work = tmp_path / "damaged_optimizer", shared_work
    shutil.copytree(trained_run, run_dir)  # a finished 2-step run
    state = run_dir / "checkpoints" / "step_00000002" / "optimizer.pt"
    state.write_bytes(b"\0" * state.stat().st_size)  # same size: only the hash check would see it
    out = train(run_dir, work, "train.max_steps=2", "train.resume=true", "train.verify_checkpoints=false")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert f"error: {state}: cannot read the optimizer state" in out.stderr


def test_deepspeed_state_files_are_loaded_weights_only(tmp_path):
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    from bridge_stg.engine.deepspeed_backend import weights_only_checkpoint_engine

    engine = weights_only_checkpoint_engine(None)
    legit = tmp_path / "optim_states.pt"
    torch.save({"zero_stage": ZeroStageEnum.gradients, "loss_scaler": LossScaler(1.0), "w": torch.ones(2)}, legit)
    assert engine.load(str(legit))["zero_stage"] == ZeroStageEnum.gradients

    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    tampered = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": {"w": torch.ones(2)}, "extra": Payload()}, tampered)
    import pickle

    with pytest.raises(pickle.UnpicklingError, match="mp_rank_00_model_states.pt: refused to load"):
        engine.load(str(tampered))
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ slow drills


@pytest.mark.slow
def test_kill_and_damage_drills(tmp_path):
    """scripts/fault_drills.py, small: SIGKILL at each save point, at seeded random moments (one chain of two kills)
    and while a finished run resumes, each followed by a plain resume; every file of a checkpoint and of the model
    flipped, truncated and deleted. ~4 minutes on 2 cores."""
    record = tmp_path / "drills.json"
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "fault_drills.py"), "--work", str(tmp_path / "w"),
                          "--kills", "3", "--seed", "12", "--json", str(record)], cwd=REPO, env=ENV,
                         capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    drills = json.loads(record.read_text())
    assert len(drills["kills"]) == 5 + 3 + 1 and all(c["killed"] for c in drills["kills"][:5])
    assert all(c["same_losses"] and c["model_verifies"] and c["tracebacks"] == 0 for c in drills["kills"])
    assert len(drills["damage"]) >= 30 and all(c["named"] for c in drills["damage"])
