"""Backbone pretraining data: captions say how the named object moves and where it is; token targets say which
object fills each visual token; the stream never draws an evaluation split."""

from __future__ import annotations

import numpy as np
import pytest

from bridge_stg.data.frames import FrameBudget, select_frames
from bridge_stg.data.pretraining import (
    MOTION_PHRASES,
    MOTIONS,
    PretrainStream,
    chunk_motions,
    object_phrase,
    token_targets,
)
from bridge_stg.data.synthetic import COLOURS_RGB, SHAPES, SyntheticConfig, label_map, make_scene

CFG = SyntheticConfig()
BUDGET = FrameBudget()


def test_chunk_motion_is_the_larger_axis_of_the_centre_shift():
    boxes = np.array([[10, 10, 20, 20], [7, 11, 17, 21], [7, 11, 17, 21], [7, 11.2, 17, 21.2],
                      [7, 11, 17, 21], [7, 15, 17, 25]], dtype=float)
    assert chunk_motions(boxes, np.arange(6)) == ["left", "still", "down"]


def test_captions_name_the_motion_and_cell_of_the_requested_object():
    stream = PretrainStream(CFG, "pretrain", BUDGET)
    for index in range(8):
        sample = stream[index]
        scene = make_scene(CFG, "pretrain", index)
        frame_ids = select_frames((0, CFG.frame_count), CFG.fps, BUDGET)
        named = [i for i in range(len(scene.objects)) if sample.request == f"track the {object_phrase(scene, i)}"]
        assert len(named) == 1  # the request picks out exactly one object
        obj = scene.objects[named[0]]
        motions = chunk_motions(obj.boxes_xyxy_px, frame_ids)
        assert len(sample.chunk_texts) == len(frame_ids) // 2 == len(motions)
        for c, (text, motion) in enumerate(zip(sample.chunk_texts, motions)):
            phrase, cell = text.strip().rstrip(";").rsplit(" ", 1)
            assert phrase in MOTION_PHRASES[motion] and text.endswith(";\n")
            x1, y1, x2, y2 = obj.boxes_xyxy_px[frame_ids[2 * c]]
            assert cell == f"{int((x1 + x2) / 2 / CFG.width_px * 10)},{int((y1 + y2) / 2 / CFG.height_px * 10)}"


def test_token_targets_follow_the_label_map():
    scene = make_scene(CFG, "pretrain", 3)
    frame_ids = select_frames((0, CFG.frame_count), CFG.fps, BUDGET)
    targets = token_targets(scene, frame_ids, CFG)
    assert targets.shape == (len(frame_ids) // 2, 16, 4)
    labels = label_map(scene)[frame_ids]
    for c in range(len(frame_ids) // 2):
        for v in range(16):
            row, col = divmod(v, 4)
            cell = labels[2 * c: 2 * c + 2, 28 * row: 28 * row + 28, 28 * col: 28 * col + 28]
            counts = np.bincount(cell[cell >= 0].ravel(), minlength=len(scene.objects))
            if counts.max(initial=0) < 30:
                assert (targets[c, v] == 0).all()
                continue
            obj = scene.objects[int(counts.argmax())]
            motion = chunk_motions(obj.boxes_xyxy_px, frame_ids)[c]
            assert targets[c, v].tolist() == [1 + list(COLOURS_RGB).index(obj.attributes.colour),
                                              1 + SHAPES.index(obj.attributes.shape),
                                              1 + CFG.sizes.index(obj.attributes.size), 1 + MOTIONS.index(motion)]
    assert (targets[..., 0] > 0).any() and (targets[..., 0] == 0).any()


def test_stream_is_deterministic_and_refuses_evaluation_splits():
    a, b = PretrainStream(CFG, "pretrain", BUDGET)[5], PretrainStream(CFG, "pretrain", BUDGET)[5]
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.chunk_texts == b.chunk_texts and a.request == b.request
    assert PretrainStream(CFG, "pretrain", BUDGET)[6].request != a.request or \
        PretrainStream(CFG, "pretrain", BUDGET)[6].chunk_texts != a.chunk_texts
    for split in ("val", "test"):
        with pytest.raises(ValueError, match="evaluation split"):
            PretrainStream(CFG, split, BUDGET)


def test_no_pretraining_text_is_a_grounding_query():
    """The backbone never reads the benchmark's sentences: its requests name objects, its captions motions and cells,
    and no text of theirs contains a referring query of any split (a query is the target plus its direction)."""
    stream = PretrainStream(CFG, "pretrain", BUDGET)
    texts = [" ".join([sample.request, *sample.chunk_texts]) for sample in (stream[i] for i in range(24))]
    queries = {make_scene(CFG, split, i).query for split in ("train", "test") for i in range(24)}
    assert all(sample_text.startswith("track the ") for sample_text in texts)
    assert not [(q, t) for q in queries for t in texts if q in t]
