"""Launch fixtures shared by the engine tests: one folder of generated data and pretrained backbone, one finished
run. Tests that change either (a truncated video, other split sizes, more steps) use folders of their own."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_launches import launch, ok


@pytest.fixture(scope="session")
def shared_work(tmp_path_factory) -> Path:
    """The synthetic debug data and pretrained tiny backbone, built by the first launch and reused by the rest."""
    return tmp_path_factory.mktemp("engine_work")


@pytest.fixture(scope="session")
def trained_run(shared_work) -> Path:
    """A finished 2-step run of the synthetic debug experiment (torch engine, 1 rank): checkpoints, exported model,
    final evaluation and its report. Read-only: a test that resumes or damages it works on a copy."""
    run_dir = shared_work / "trained"
    ok(launch("train.py", run_dir, shared_work, "train.max_steps=2"))
    return run_dir
