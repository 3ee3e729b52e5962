"""scripts/diagnose_synthetic.py: the direction readout of the temporal head's query vector, on constructed vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from script_modules import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "diagnose_synthetic.py"


diagnose_synthetic = load_script(SCRIPT)


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


def test_motion_direction_index_is_the_nearest_unit_direction() -> None:
    motion = np.array([[-0.9, 0.2], [2.0, -1.0], [0.1, -0.5], [-0.3, 0.8], [0.0, 0.0]])  # x right, y down
    # left, right, up, down; a zero vector ties everywhere and goes to the first direction
    assert diagnose_synthetic.motion_direction_index(motion).tolist() == [0, 1, 2, 3, 0]
    assert list(diagnose_synthetic.DIRECTIONS) == ["left", "right", "up", "down"]


A = diagnose_synthetic.Attributes
TARGET = A("red", "square", "small")


@pytest.mark.parametrize("attributes, expected", [
    (A("red", "square", "large"), "same colour and shape"),
    (A("red", "circle", "small"), "same colour"),
    (A("blue", "square", "large"), "same shape"),
    (A("blue", "circle", "small"), "none"),
])
def test_relation_to_target(attributes, expected) -> None:
    assert diagnose_synthetic.relation_to_target(attributes, TARGET, is_target=False) == expected
    assert diagnose_synthetic.relation_to_target(TARGET, TARGET, is_target=True) == "target"


def scene(objects, target_id: int):
    """A scene of ``(attributes, [box xyxy on frame 0, box on frame 1])`` objects, with what landed_object reads."""
    from types import SimpleNamespace
    return SimpleNamespace(objects=[SimpleNamespace(attributes=a, boxes_xyxy_px=np.array(b, dtype=float))
                                    for a, b in objects], target_id=target_id)


def test_landed_object_takes_the_nearest_centre_on_the_given_frame() -> None:
    s = scene([(A("blue", "square", "large"), [[0, 0, 20, 20], [60, 60, 80, 80]]),   # centres (10, 10), (70, 70)
               (TARGET, [[50, 50, 60, 60], [10, 0, 20, 10]]),                         # centres (55, 55), (15, 5)
               (A("red", "circle", "small"), [[80, 0, 90, 10], [80, 0, 90, 10]])],    # centre (85, 5)
              target_id=1)
    relation, dist = diagnose_synthetic.landed_object(np.array([12.0, 9.0]), s, frame_id=0)
    assert relation == "same shape" and dist == pytest.approx(np.hypot(43.0, 46.0))
    relation, dist = diagnose_synthetic.landed_object(np.array([12.0, 9.0]), s, frame_id=1)
    assert relation == "target" and dist == pytest.approx(5.0)
    relation, dist = diagnose_synthetic.landed_object(np.array([80.0, 8.0]), s, frame_id=1)
    assert relation == "same colour" and dist == pytest.approx(np.hypot(65.0, 3.0))


def test_landing_summary_shares_and_precision_once_found() -> None:
    relations = ["target", "target", "target", "same colour", "none"]
    out = diagnose_synthetic.landing_summary(relations, np.array([1.0, 3.0, 4.0, 30.0, 50.0]),
                                             np.array([0.8, 0.6, 0.4, 0.0, 0.0]))
    assert out == pytest.approx({"lands_on_target": 0.6, "lands_on_same_colour_and_shape": 0.0,
                                 "lands_on_same_colour": 0.2, "lands_on_same_shape": 0.0, "lands_on_none": 0.2,
                                 "found_within_3px": 0.4, "box_iou_when_found": 0.7})
    empty = diagnose_synthetic.landing_summary(["none"], np.array([9.0]), np.array([0.0]))
    assert empty["found_within_3px"] == 0.0 and np.isnan(empty["box_iou_when_found"])
