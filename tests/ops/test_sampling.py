import numpy as np

from bridge_stg.eval.reference_loop import sampled_frames
from bridge_stg.ops.sampling import sample_frame_ids, sample_frame_ids_batch

FPS = [29.97, 30000 / 1001, 25.0, 24.0, 24000 / 1001, 15.0, 12.0, 10.0, 5.0, 59.94, 29.96969696969697, 7.3]


def random_segments(rng, n):
    fps = rng.choice(FPS, n)
    starts = rng.integers(0, 5000, n)
    return starts, starts + rng.integers(1, 3000, n), fps


def test_single_segment_rule_equals_literal_loop_on_random_segments():
    rng = np.random.default_rng(0)
    for s, e, fps in zip(*random_segments(rng, 400)):
        for max_frames in (None, 200, 37):
            assert sample_frame_ids(int(s), int(e), float(fps), 5.0, max_frames).tolist() == \
                sampled_frames(int(s), int(e), float(fps), 5.0, max_frames)


def test_batch_groups_each_segments_frames_in_order():
    rng = np.random.default_rng(1)
    starts, ends, fps = random_segments(rng, 300)
    owner, frames = sample_frame_ids_batch(starts, ends, fps, fps=2.0, max_frames=50)
    assert (np.diff(owner) >= 0).all()
    for i in range(300):
        assert frames[owner == i].tolist() == sampled_frames(int(starts[i]), int(ends[i]), float(fps[i]), 2.0, 50)
