import numpy as np
import pytest

from bridge_stg.data.frames import (
    FrameBudget,
    fit_to_pixel_budget,
    make_even,
    resize_frames,
    sample_window,
    select_frames,
)
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
        start, end = sample_window((0, 500), budget, tube=(200, 260), rng=rng)
        assert 0 <= start <= 200 and 260 <= end <= 500 and end - start >= 150
        ids = select_frames((start, end), 25.0, budget)
        assert ids[0] == start and ids[-1] < end
        lengths.add(end - start)
    assert len(lengths) > 20  # crops really vary
    assert sample_window((0, 500), budget, tube=(200, 260)) == (0, 500)  # no rng (evaluation): the whole segment


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
    assert span_to_indices((20, 45), frame_ids, 100) == (4, 9)
    assert indices_to_span((4, 9), frame_ids, 100) == (20, 45)
    assert indices_to_span((18, 20), frame_ids, 100) == (90, 100)
    assert span_to_indices((90, 100), frame_ids, 100) == (18, 20)
    assert span_to_indices((21, 23), frame_ids, 100) == (4, 5)  # shorter than half a step: the frame overlapping most
    assert span_to_indices((24, 26), frame_ids, 100) == (4, 5)  # 1 frame in frame 4's interval, 1 in frame 5's
    with pytest.raises(ValueError):
        indices_to_span((3, 3), frame_ids, 100)


def test_span_indices_include_a_sampled_frame_when_half_its_interval_is_in_the_span():
    frame_ids = np.arange(0, 100, 10)
    assert span_to_indices((13, 47), frame_ids, 100) == (1, 5)  # [10, 20) is 70 % inside, [40, 50) 70 %
    assert span_to_indices((17, 43), frame_ids, 100) == (2, 4)  # 30 % inside: left out
    assert span_to_indices((15, 45), frame_ids, 100) == (1, 5)  # exactly half inside: in, at both ends
    assert span_to_indices((0, 96), frame_ids, 100) == (0, 10)  # the last interval ends at the segment's end
    for tube in [(13, 47), (17, 43), (0, 96), (31, 38)]:  # the mapped-back span is the closest one expressible
        s, e = span_to_indices(tube, frame_ids, 100)
        best = max(((a, b) for a in range(10) for b in range(a + 1, 11)),
                   key=lambda ab: _tiou(indices_to_span(ab, frame_ids, 100), tube))
        assert _tiou(indices_to_span((s, e), frame_ids, 100), tube) == pytest.approx(
            _tiou(indices_to_span(best, frame_ids, 100), tube))
    with pytest.raises(ValueError, match="segment end"):
        span_to_indices((0, 5), frame_ids, 90)


def _tiou(a, b):
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))
