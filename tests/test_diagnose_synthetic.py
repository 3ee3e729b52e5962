"""scripts/diagnose_synthetic.py: the direction readout of the temporal head's query vector, on constructed vectors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "diagnose_synthetic.py"


def load_script():
    spec = importlib.util.spec_from_file_location("diagnose_synthetic", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


diagnose_synthetic = load_script()


def vectors(direction_scale: float, noise_scale: float, n: int = 400, dim: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    codes = rng.normal(size=(4, dim))
    return direction_scale * codes[labels] + noise_scale * rng.normal(size=(n, dim)), labels


def test_a_large_direction_component_reads_out_both_ways() -> None:
    x, labels = vectors(direction_scale=3.0, noise_scale=0.3)
    out = diagnose_synthetic.direction_readout(x, labels)
    assert out["query_direction_share"] > 0.9
    assert out["query_nearest_mean_acc"] == 1.0 and out["query_ridge_acc"] == 1.0


def test_a_small_direction_component_among_large_ones_reads_out_linearly_only() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 400)
    x = 10.0 * rng.normal(size=(400, 32))  # large variation that has nothing to do with the direction...
    x[:, :4] = 0.1 * np.eye(4)[labels] + 0.01 * rng.normal(size=(400, 4))  # ...and the direction, small
    out = diagnose_synthetic.direction_readout(x, labels)
    assert out["query_direction_share"] < 0.01
    assert out["query_nearest_mean_acc"] < 0.5 < 0.9 < out["query_ridge_acc"]


def test_no_direction_is_chance() -> None:
    x, labels = vectors(direction_scale=0.0, noise_scale=1.0, seed=2)
    out = diagnose_synthetic.direction_readout(x, labels)
    assert out["query_direction_share"] < 0.05
    assert out["query_ridge_acc"] == pytest.approx(0.25, abs=0.1)


def test_query_direction_names_one_of_four() -> None:
    assert diagnose_synthetic.query_direction("the red circle as it goes to the left") == "left"
    assert diagnose_synthetic.query_direction("find the blue square when it is moving downwards") == "down"
    with pytest.raises(ValueError, match="not a synthetic query"):
        diagnose_synthetic.query_direction("the man in a hat")
