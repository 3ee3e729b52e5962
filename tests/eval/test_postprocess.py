"""Span decoding and tube building against hand-computed cases."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bridge_stg.eval.postprocess import decode_span, fill_boxes, tube_from_prediction
from bridge_stg.eval.protocols import get_protocol
from bridge_stg.structures import SentenceRecord

# -- decode_span ----------------------------------------------------------------------------------------------------


def test_decode_span_best_pair_respects_start_before_end():
    # start prefers frame 2, end frame 0: (2, 0) would score 9 but is not a span; (2, 2) scores 5, (0, 0) 4
    assert decode_span(np.array([0.0, 0.0, 5.0]), np.array([4.0, 0.0, 0.0])) == (2, 3)


def test_decode_span_is_half_open_over_the_whole_clip():
    assert decode_span(np.array([3.0, 0, 0, 0]), np.array([0.0, 0, 0, 2])) == (0, 4)
    assert decode_span(np.array([3.0, 0, 0, 0]), np.array([0.0, 0, 0, 2]), max_len=4) == (0, 4)
    assert decode_span(np.array([1.0]), np.array([-1.0])) == (0, 1)


def test_decode_span_max_len_and_ties_go_to_the_earliest():
    # max_len 2: (0, 0) and (0, 1) both score ls[0] + 0 - lse, better than (2, 3) by 1; the earlier wins
    assert decode_span(np.array([3.0, 0, 0, 0]), np.array([0.0, 0, 0, 2]), max_len=2) == (0, 1)
    assert decode_span(np.zeros(5), np.zeros(5)) == (0, 1)
    # (0, 1), (0, 2), (1, 1), (1, 2) tie: smallest start, then smallest end
    assert decode_span(np.array([5.0, 5.0, 0.0]), np.array([0.0, 5.0, 5.0])) == (0, 2)


def test_decode_span_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        start, end = rng.normal(size=(2, 9)) * 3
        max_len = int(rng.integers(1, 10))
        ls, le = start - np.log(np.exp(start).sum()), end - np.log(np.exp(end).sum())
        pairs = [(s, e) for s in range(9) for e in range(s, min(9, s + max_len))]
        s, e = max(pairs, key=lambda p: ls[p[0]] + le[p[1]])
        assert decode_span(start, end, max_len) == (s, e + 1)


def test_decode_span_rejects_bad_input():
    with pytest.raises(ValueError, match="equal non-empty"):
        decode_span(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="max_len"):
        decode_span(np.zeros(3), np.zeros(3), max_len=0)


# -- tube_from_prediction -------------------------------------------------------------------------------------------

FRAME_IDS = np.array([10, 15, 20, 25])  # sampled frames of the segment [10, 28)
ORIG = (100, 200)  # height, width
A01, A_PX = [0.25, 0.5, 0.1, 0.2], [40.0, 40.0, 60.0, 60.0]  # cxcywh01 -> xyxy px of a 200x100 frame
B01, B_PX = [0.75, 0.5, 0.1, 0.2], [140.0, 40.0, 160.0, 60.0]


def tube(span_idx=(1, 3), box_idx=(1, 3), boxes=(A01, B01), targets=(15, 20), fill="linear"):
    return tube_from_prediction(7, span_idx, FRAME_IDS, 28, np.array(box_idx), np.array(boxes), ORIG,
                                np.array(targets), fill)


def test_span_is_mapped_to_original_frames():
    assert tube(span_idx=(1, 3)).span == (15, 25)
    assert tube(span_idx=(1, 4)).span == (15, 28)  # the last sampled frame stands for [25, segment end)
    assert tube(span_idx=(0, 1)).span == (10, 15)


def test_boxes_in_original_pixels_and_clipped():
    t = tube(box_idx=(1,), boxes=([0.5, 0.5, 0.2, 0.4],), targets=(15,))
    np.testing.assert_allclose(t.boxes_xyxy_px, [[80.0, 30.0, 120.0, 70.0]])
    t = tube(box_idx=(1,), boxes=([0.05, 0.95, 0.2, 0.2],), targets=(15,))
    np.testing.assert_allclose(t.boxes_xyxy_px, [[0.0, 85.0, 30.0, 100.0]])
    assert t.sentence_id == 7 and t.frame_ids.dtype == np.int64


def test_linear_fill_interpolates_inside_and_holds_outside():
    t = tube(targets=(10, 15, 18, 20, 25, 27))
    expected = [A_PX, A_PX, [70.0, 40.0, 90.0, 60.0], [90.0, 40.0, 110.0, 60.0], B_PX, B_PX]
    np.testing.assert_allclose(t.boxes_xyxy_px, expected)
    np.testing.assert_array_equal(t.frame_ids, [10, 15, 18, 20, 25, 27])


def test_nearest_fill():
    t = tube(targets=(10, 17, 20, 23, 27), fill="nearest")
    np.testing.assert_allclose(t.boxes_xyxy_px, [A_PX, A_PX, A_PX, B_PX, B_PX])  # 20 is halfway: the earlier


def test_duplicate_decoded_frames_keep_the_first_box():
    garbage = [0.9, 0.9, 0.5, 0.5]
    reference = tube(targets=(15, 18, 25)).boxes_xyxy_px
    np.testing.assert_allclose(tube(box_idx=(1, 3, 3), boxes=(A01, B01, garbage), targets=(15, 18, 25))
                               .boxes_xyxy_px, reference)
    np.testing.assert_allclose(tube(box_idx=(3, 1, 3, 1), boxes=(B01, A01, garbage, garbage), targets=(15, 18, 25))
                               .boxes_xyxy_px, reference)


def test_one_decoded_frame_fills_everything():
    t = tube(box_idx=(2,), boxes=(A01,), targets=(10, 20, 27))
    np.testing.assert_allclose(t.boxes_xyxy_px, [A_PX] * 3)


def test_protocol_frames_as_targets():
    record = SentenceRecord(sentence_id=7, dataset="synthetic", video_id="v", video_path="v.mp4", fps=10.0,
                            frame_count=40, width=200, height=100, segment=(10, 28), tube=(15, 25), query="q")
    targets = get_protocol("tubedetr").eval_frame_ids(record)  # 5 fps of [10, 27): 10, 12, ..., 26
    t = tube_from_prediction(7, (1, 3), FRAME_IDS, 28, np.array([1, 3]), np.array([A01, B01]), ORIG, targets)
    np.testing.assert_array_equal(t.frame_ids, targets)
    assert t.boxes_xyxy_px.shape == (len(targets), 4)


def test_tube_rejects_bad_input():
    with pytest.raises(ValueError, match="no decoded frame"):
        tube(box_idx=(), boxes=np.zeros((0, 4)))
    with pytest.raises(ValueError, match="outside"):
        tube(box_idx=(1, -1))
    with pytest.raises(ValueError, match="fill"):
        tube(fill="cubic")
    with pytest.raises(ValueError, match="2 box frames but 1 boxes"):
        tube(boxes=(A01,))


def test_fill_boxes_with_no_target_frames():
    assert fill_boxes(np.array([1]), np.ones((1, 4)), np.zeros(0, dtype=np.int64), "linear").shape == (0, 4)


def test_postprocess_does_not_import_torch():
    code = "import sys, bridge_stg.eval.postprocess; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
