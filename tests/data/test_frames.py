import numpy as np
import pytest

from bridge_stg.data.frames import FrameBudget, fit_to_pixel_budget, make_even, resize_frames, select_frames
from bridge_stg.ops.sampling import indices_to_span, sample_frame_ids, span_to_indices


def test_inference_frames_follow_the_metric_rule_and_are_even():
    budget = FrameBudget(fps=2.0, max_frames=16)
    ids = select_frames((10, 300), 29.97, budget)
    rule = sample_frame_ids(10, 300, 29.97, 2.0, 16)
    assert ids[: len(rule)].tolist() == rule.tolist() and len(ids) % 2 == 0 and len(ids) <= 16


def test_odd_counts_repeat_the_last_frame():
    assert make_even(np.array([3, 8, 13])).tolist() == [3, 8, 13, 13]
    assert make_even(np.array([3, 8])).tolist() == [3, 8]


def test_rate_is_capped_by_the_video_fps():
    ids = select_frames((0, 20), 1.0, FrameBudget(fps=5.0, max_frames=64))
    assert ids.tolist() == list(range(20))


def test_random_crop_always_keeps_the_tube():
    budget = FrameBudget(fps=5.0, max_frames=64, crop_prob=1.0, crop_min_fraction=0.3)
    rng = np.random.default_rng(0)
    lengths = set()
    for _ in range(200):
        ids = select_frames((0, 500), 25.0, budget, tube=(200, 260), rng=rng)
        assert ids[0] <= 200 and ids[-1] >= 255
        lengths.add(int(ids[-1] - ids[0]))
    assert len(lengths) > 20  # crops really vary


@pytest.mark.parametrize("hw,budget,expected", [
    ((112, 112), (56 * 56, 112 * 112), (112, 112)),
    ((360, 640), (56 * 56, 112 * 112), (84, 140)),
    ((20, 30), (56 * 56, 112 * 112), (56, 84)),
])
def test_pixel_budget(hw, budget, expected):
    h, w = fit_to_pixel_budget(*hw, *budget)
    assert (h, w) == expected and h % 28 == 0 and w % 28 == 0 and budget[0] <= h * w <= budget[1]


def test_resize_frames_shape_and_identity():
    frames = np.random.default_rng(0).integers(0, 255, (4, 30, 40, 3), dtype=np.uint8)
    assert resize_frames(frames, (56, 84)).shape == (4, 56, 84, 3)
    assert resize_frames(frames, (30, 40)) is frames


def test_span_index_mapping_round_trips_on_the_sampling_grid():
    frame_ids = np.arange(0, 100, 5)
    assert span_to_indices((20, 45), frame_ids) == (4, 9)
    assert indices_to_span((4, 9), frame_ids, 100) == (20, 45)
    assert indices_to_span((18, 20), frame_ids, 100) == (90, 100)
    assert span_to_indices((21, 23), frame_ids) == (4, 5)  # shorter than a step: the frame holding its start
    with pytest.raises(ValueError):
        indices_to_span((3, 3), frame_ids, 100)
