"""The streaming synthetic training source: the same clips as the mp4 benchmark, never one twice in a run."""

from __future__ import annotations

import numpy as np
import pytest

from bridge_stg.data.dataset import STREAM_STRIDE, GroundingDataset, MixtureDataset, SyntheticStream
from bridge_stg.data.frames import FrameBudget
from bridge_stg.data.synthetic import SyntheticConfig, generate_split, label_map, make_scene, render_scene

CFG = SyntheticConfig(num_train=6, num_val=0, num_test=0)
BUDGET = FrameBudget()


def test_rendering_chosen_frames_equals_those_rows_of_the_whole_video():
    scene = make_scene(CFG, "train", 4)
    ids = np.array([0, 3, 3, 57, 99])
    np.testing.assert_array_equal(render_scene(scene, ids), render_scene(scene)[ids])
    np.testing.assert_array_equal(label_map(scene, ids), label_map(scene)[ids])


def test_stream_item_is_the_benchmark_clip_of_that_index(tmp_path):
    records = generate_split(CFG, "train", tmp_path, num_videos=3)
    from_mp4 = GroundingDataset(records, tmp_path / "videos", BUDGET, source="s")
    stream = SyntheticStream(CFG, "train", BUDGET, source="s", seed=0, train=False)
    for i in range(3):
        a, b = from_mp4[i], stream[i]
        assert a.query == b.query and a.span == b.span
        np.testing.assert_array_equal(a.frame_ids, b.frame_ids)
        np.testing.assert_array_equal(a.box_mask, b.box_mask)
        np.testing.assert_allclose(a.boxes_cxcywh01, b.boxes_cxcywh01)
        # the stream skips H.264: the rendered pixels equal the decoded ones up to compression noise
        diff = np.abs(a.frames.astype(int) - b.frames.astype(int))
        assert diff.mean() < 3.0, diff.mean()


def test_stream_is_deterministic_and_seeds_draw_disjoint_clips():
    a = SyntheticStream(CFG, "train", BUDGET, source="s", seed=0)
    b = SyntheticStream(CFG, "train", BUDGET, source="s", seed=1)
    x, y = a[5], SyntheticStream(CFG, "train", BUDGET, source="s", seed=0)[5]
    np.testing.assert_array_equal(x.frames, y.frames)
    assert x.sample_id == y.sample_id == "s:5"
    assert b[5].sample_id == f"s:{STREAM_STRIDE + 5}"
    assert len(a) == CFG.num_train  # the nominal epoch


def test_mixture_never_repeats_a_streamed_clip_across_epochs():
    stream = SyntheticStream(CFG, "train", BUDGET, source="s", seed=0)
    mix = MixtureDataset({"s": (stream, 1.0)}, length=len(stream), seed=0)
    # the mixture's schedule only, not the clips: which stream index each (epoch, row) reads
    drawn = []
    for index in range(4 * len(mix)):
        epoch, row = divmod(index, mix.length)
        if epoch != mix.epoch:
            mix.set_epoch(epoch)
        drawn.append(int(mix.schedule[row, 1]))
    assert len(set(drawn)) == len(drawn) == 4 * CFG.num_train
    assert mix[len(mix) + 2].sample_id == f"s:{len(mix) + 2}"


def test_a_stream_may_not_draw_an_evaluation_split():
    from bridge_stg.engine.builder import ConfigError, _check_sources
    from bridge_stg.engine.specs import DataSpec, SourceSpec

    bad = DataSpec(train_sources=(SourceSpec(name="leak", kind="synthetic_stream", split="test"),))
    with pytest.raises(ConfigError, match="evaluation splits"):
        _check_sources(bad)
