"""Trivial baselines: box size, spans, and their scores checked against plain per-sentence arithmetic."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bridge_stg.data.synthetic import SyntheticConfig, generate_benchmark, load_split
from bridge_stg.eval.baselines import (
    BASELINES,
    RANDOM_SPAN,
    SAMPLED_GT_SPAN,
    WHOLE_CLIP,
    centre_box,
    evaluate_baselines,
    mean_box_size,
    random_span_centre_box,
    random_spans,
    sampled_gt_span_centre_box,
    whole_clip_centre_box,
)
from bridge_stg.eval.protocols import get_protocol
from bridge_stg.eval.tables import format_value, render_markdown, row_from_metrics
from bridge_stg.structures import SentenceRecord

# 4 s clips at 5 fps (20 frames): under "tubedetr" (5 fps sampling, last frame dropped) frames 0..18 count.
TINY = SyntheticConfig(seconds=4.0, fps=5.0, width_px=64, height_px=64, size_px=(8, 14))


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, list[SentenceRecord], list[SentenceRecord]]:
    out = tmp_path_factory.mktemp("synth")
    generate_benchmark(TINY, out, {"train": 3, "test": 6})
    return out, load_split(out, "train"), load_split(out, "test")


def record(sentence_id: int, segment: tuple[int, int], tube: tuple[int, int], boxes: dict[int, list[float]],
           width: int = 100, height: int = 50) -> SentenceRecord:
    frames = np.array(sorted(boxes), dtype=np.int64)
    return SentenceRecord(sentence_id, "synthetic", f"v{sentence_id}", "", 5.0, segment[1], width, height, segment,
                          tube, "q", box_frame_ids=frames,
                          boxes_xyxy_px=np.array([boxes[f] for f in frames], dtype=np.float64).reshape(-1, 4))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_mean_box_size_averages_tube_boxes_per_record() -> None:
    a = record(0, (0, 10), (2, 4), {1: [0, 0, 50, 50], 2: [0, 0, 10, 20], 3: [0, 0, 20, 40]})  # frame 1: off tube
    b = record(1, (0, 10), (0, 1), {0: [5, 5, 45, 25]})
    assert mean_box_size([a, b]) == pytest.approx(((15 + 40) / 2, (30 + 20) / 2))
    with pytest.raises(ValueError, match="mean box size"):
        mean_box_size([])


def test_centre_box() -> None:
    assert centre_box(100, 50, (20, 10)).tolist() == [40, 20, 60, 30]
    assert centre_box(100, 50, (120, 10)).tolist() == [0, 20, 100, 30]  # clipped to the frame


def test_mean_box_size_of_the_synthetic_train_split(bench) -> None:
    _, train, _ = bench
    w, h = mean_box_size(train)
    assert 8 <= w <= 14 and 8 <= h <= 14  # the two shape sizes of TINY


def test_whole_clip_tubes(bench) -> None:
    _, train, test = bench
    size = mean_box_size(train)
    protocol = get_protocol("tubedetr")
    tubes = whole_clip_centre_box(test, size, protocol)
    assert [t.sentence_id for t in tubes] == [r.sentence_id for r in test]
    for t, r in zip(tubes, test, strict=True):
        assert t.span == r.segment == (0, 20)
        assert t.frame_ids.tolist() == list(range(19))
        assert np.allclose(t.boxes_xyxy_px, centre_box(64, 64, size))
    dense = whole_clip_centre_box(test[:1], size, get_protocol("stcat"))[0]
    assert dense.frame_ids.tolist() == list(range(20))


def test_whole_clip_scores_match_per_sentence_arithmetic(bench) -> None:
    _, train, test = bench
    size = mean_box_size(train)
    metrics = evaluate_baselines(test, size, "test")[WHOLE_CLIP]
    box = centre_box(64, 64, size)
    tiou, viou, gt_viou = [], [], []
    for r in test:
        (s, e), (ts, te) = r.segment, r.tube
        tiou.append((te - ts) / (e - s))
        counted = range(s, e - 1)  # every frame at 5 fps but the segment's last
        ious = [box_iou(box, r.boxes_on(np.array([f]))[0]) for f in counted if ts <= f < te]
        viou.append(sum(ious) / len(counted))
        gt_viou.append(np.mean(ious))
    assert metrics["tiou"] == pytest.approx(np.mean(tiou))
    assert metrics["viou"] == pytest.approx(np.mean(viou))
    assert metrics["gt_viou"] == pytest.approx(np.mean(gt_viou))
    assert metrics["viou@0.3"] == pytest.approx(np.mean(np.array(viou) > 0.3))
    assert 0 < metrics["tiou"] < 1


def test_random_spans_are_uniform_non_empty_and_seeded() -> None:
    recs = [record(i, (3, 7), (3, 4), {3: [0, 0, 1, 1]}) for i in range(20000)]
    spans = random_spans(recs, np.random.default_rng(0))
    assert ((spans[:, 0] >= 3) & (spans[:, 1] <= 7) & (spans[:, 1] > spans[:, 0])).all()
    counts = Counter(map(tuple, spans.tolist()))
    assert len(counts) == 10  # every non-empty [s, e) of a 4-frame segment
    assert all(abs(c / len(recs) - 0.1) < 0.01 for c in counts.values())
    assert np.array_equal(spans, random_spans(recs, np.random.default_rng(0)))
    assert not np.array_equal(spans, random_spans(recs, np.random.default_rng(1)))


def test_random_span_scores_match_their_spans(bench) -> None:
    _, train, test = bench
    size = mean_box_size(train)
    tubes = random_span_centre_box(test, size, get_protocol("tubedetr"), np.random.default_rng(7))
    spans = random_spans(test, np.random.default_rng(7))
    assert [t.span for t in tubes] == [tuple(s) for s in spans.tolist()]
    tiou = []
    for (ps, pe), r in zip(spans.tolist(), test, strict=True):
        (ts, te) = r.tube
        inter = max(0, min(pe, te) - max(ps, ts))
        tiou.append(inter / ((te - ts) + (pe - ps) - inter))
    metrics = evaluate_baselines(test, size, "test", seed=7)
    assert metrics[RANDOM_SPAN]["tiou"] == pytest.approx(np.mean(tiou))
    assert metrics[RANDOM_SPAN]["seed"] == 7
    # same boxes on the same frames: gt_vIoU does not depend on the span
    assert metrics[RANDOM_SPAN]["gt_viou"] == pytest.approx(metrics[WHOLE_CLIP]["gt_viou"])


def test_metrics_have_the_shape_of_a_run_metrics_file(bench) -> None:
    _, train, test = bench
    metrics = evaluate_baselines(test, mean_box_size(train), "test")
    assert tuple(metrics) == BASELINES
    for name, m in metrics.items():
        assert (m["name"], m["dataset"], m["split"], m["protocol"], m["count"]) == (name, "synthetic", "test",
                                                                                   "tubedetr", len(test))
        assert m["missing_predictions"] == 0 and m["missing_boxes"] == 0
        assert all(0.0 <= m[k] <= 1.0 for k in ("tiou", "viou", "viou@0.3", "viou@0.5", "gt_viou"))
    rows = [row_from_metrics(m, name, name) for name, m in metrics.items()]
    text = render_markdown("synthetic", rows)
    assert f"| **{WHOLE_CLIP}** | tubedetr | {format_value(100 * metrics[WHOLE_CLIP]['tiou'], '')} |" in text


def test_sampled_gt_span_is_the_tube_the_frame_sampling_can_express(bench) -> None:
    _, train, test = bench
    size = mean_box_size(train)
    every_frame = evaluate_baselines(test, size, "test", frame_ids=lambda r: np.arange(*r.segment))
    assert list(every_frame) == [*BASELINES, SAMPLED_GT_SPAN]
    assert every_frame[SAMPLED_GT_SPAN]["tiou"] == pytest.approx(1.0)  # every frame sampled: the tube itself
    # same boxes on the same frames as the whole clip: only the span differs
    assert every_frame[SAMPLED_GT_SPAN]["gt_viou"] == pytest.approx(every_frame[WHOLE_CLIP]["gt_viou"])

    tubes = sampled_gt_span_centre_box(test, size, get_protocol("tubedetr"), lambda r: np.arange(0, 20, 5))
    checked = 0
    for t, r in zip(tubes, test, strict=True):
        start, end = min(round(r.tube[0] / 5), 3) * 5, max(round(r.tube[1] / 5), 1) * 5  # the nearest boundaries
        if end > start:
            assert t.span == (start, end)
            checked += 1
    assert checked >= 4
