"""Trivial baselines: what a tube with no understanding of the video or the query scores.

Both baselines put one fixed box, centred in the frame and sized as the mean ground-truth box of a reference split
(:func:`mean_box_size`, normally the training split), on every frame the protocol asks a box for. They differ in
the span:

``whole_clip_centre_box``
    the whole segment a record is evaluated on (``record.segment``, the clip for the synthetic benchmark), so its
    tIoU is ``len(tube) / len(segment)`` for a tube inside the segment;
``random_span_centre_box``
    a span drawn uniformly among the non-empty ``[start, end)`` spans of the segment (two distinct boundaries of
    ``segment[0]..segment[1]``, sorted), from a seeded :class:`numpy.random.Generator`.

``sampled_gt_span_centre_box`` is a reference rather than a baseline: the ground-truth tube as a model that sees
the frames ``frame_ids(record)`` can express it (:func:`~bridge_stg.ops.sampling.span_to_indices`, then back with
:func:`~bridge_stg.ops.sampling.indices_to_span`, as a prediction is), with the centre box. Its m_tIoU is the
ceiling of any model with that frame sampling; its m_vIoU is what a perfect span scores with no box skill.

All are scored with the evaluator of :mod:`bridge_stg.eval.metrics` (what ``bridge_stg.engine.evaluate`` uses), and
:func:`evaluate_baselines` returns metrics dicts shaped as a run's ``eval/final/metrics.json`` (fractions, plus
``name``, ``dataset``, ``split``, ``protocol``, ``count``), ready for :func:`bridge_stg.eval.tables.row_from_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from bridge_stg.eval.metrics import PredictionTable, score, summarize
from bridge_stg.eval.protocols import Protocol, build_targets, get_protocol
from bridge_stg.ops.boxes import cxcywh_to_xyxy
from bridge_stg.ops.sampling import indices_to_span, span_to_indices
from bridge_stg.structures import SentenceRecord, TubePrediction

WHOLE_CLIP = "whole_clip_centre_box"
RANDOM_SPAN = "random_span_centre_box"
SAMPLED_GT_SPAN = "sampled_gt_span_centre_box"
BASELINES = (WHOLE_CLIP, RANDOM_SPAN)


def mean_box_size(records: Sequence[SentenceRecord]) -> tuple[float, float]:
    """Mean ground-truth box ``(width, height)`` in pixels: each record's mean over the boxes of its tube's frames,
    averaged over records (every record weighs the same, whatever its tube length)."""
    sizes = []
    for rec in records:
        if rec.tube is None:
            continue
        inside = (rec.box_frame_ids >= rec.tube[0]) & (rec.box_frame_ids < rec.tube[1])
        boxes = np.asarray(rec.boxes_xyxy_px, dtype=np.float64).reshape(-1, 4)[inside]
        if len(boxes):
            sizes.append((boxes[:, 2:] - boxes[:, :2]).mean(axis=0))
    if not sizes:
        raise ValueError("no record with ground-truth boxes on its tube: cannot compute a mean box size")
    width, height = np.mean(sizes, axis=0)
    return float(width), float(height)


def centre_box(frame_width: int, frame_height: int, box_size: tuple[float, float]) -> np.ndarray:
    """A ``box_size = (width, height)`` box centred in the frame, as ``xyxy`` pixels clipped to the frame."""
    box = cxcywh_to_xyxy([frame_width / 2, frame_height / 2, *box_size])
    return np.clip(box, 0.0, np.array([frame_width, frame_height, frame_width, frame_height], dtype=np.float64))


def _centre_box_tube(record: SentenceRecord, span: tuple[int, int], box_size: tuple[float, float],
                     protocol: Protocol) -> TubePrediction:
    frames = protocol.prediction_frame_ids(record)
    box = centre_box(record.width, record.height, box_size)
    return TubePrediction(record.sentence_id, span, frames, np.tile(box, (len(frames), 1)))


def whole_clip_centre_box(records: Sequence[SentenceRecord], box_size: tuple[float, float],
                          protocol: Protocol) -> list[TubePrediction]:
    """Per record: the whole segment as the span, the centre box on every box frame of ``protocol``."""
    return [_centre_box_tube(r, (int(r.segment[0]), int(r.segment[1])), box_size, protocol) for r in records]


def random_spans(records: Sequence[SentenceRecord], rng: np.random.Generator) -> np.ndarray:
    """``[S, 2]`` half-open spans, each uniform among the non-empty spans inside its record's segment."""
    starts = np.array([r.segment[0] for r in records], dtype=np.int64)
    lengths = np.array([r.segment[1] - r.segment[0] for r in records], dtype=np.int64)
    if (lengths < 1).any():
        bad = records[int(np.flatnonzero(lengths < 1)[0])]
        raise ValueError(f"sentence {bad.sentence_id} ({bad.video_id}) has an empty segment {bad.segment}")
    a = rng.integers(0, lengths + 1)  # two distinct boundaries of 0..length, uniformly: b skips a's value
    b = rng.integers(0, lengths)
    b = b + (b >= a)
    return starts[:, None] + np.sort(np.stack([a, b], axis=1), axis=1)


def random_span_centre_box(records: Sequence[SentenceRecord], box_size: tuple[float, float], protocol: Protocol,
                           rng: np.random.Generator) -> list[TubePrediction]:
    """Per record: a uniformly random non-empty span of the segment (:func:`random_spans`), the centre box on
    every box frame of ``protocol``."""
    spans = random_spans(records, rng)
    return [_centre_box_tube(r, (int(s), int(e)), box_size, protocol) for r, (s, e) in zip(records, spans)]


def sampled_gt_span_centre_box(records: Sequence[SentenceRecord], box_size: tuple[float, float],
                               protocol: Protocol,
                               frame_ids: Callable[[SentenceRecord], np.ndarray]) -> list[TubePrediction]:
    """Per record: the ground-truth tube snapped to the sampled frames ``frame_ids(record)`` the way training
    targets are (:func:`~bridge_stg.ops.sampling.span_to_indices`) and mapped back as predictions are, with the centre
    box on every box frame of ``protocol``. Records without a tube get the whole segment."""
    tubes = []
    for r in records:
        span = (int(r.segment[0]), int(r.segment[1]))
        if r.tube is not None:
            ids = np.asarray(frame_ids(r), dtype=np.int64)
            span = indices_to_span(span_to_indices(r.tube, ids, r.segment[1]), ids, r.segment[1])
        tubes.append(_centre_box_tube(r, span, box_size, protocol))
    return tubes


def score_baseline(tubes: Sequence[TubePrediction], records: Sequence[SentenceRecord], protocol: Protocol,
                   name: str, split: str) -> dict:
    """Metrics of ``tubes`` as in a run's ``eval/final/metrics.json`` (every sentence must have a tube)."""
    if not records:
        raise ValueError("no records to score a baseline on")
    datasets = sorted({r.dataset for r in records})
    if len(datasets) > 1:
        raise ValueError(f"records of several datasets {datasets}: score one dataset at a time")
    metrics = summarize(score(build_targets(records, protocol), PredictionTable.from_tubes(tubes)))
    metrics.update(dataset=datasets[0], split=split, name=name)
    return metrics


def evaluate_baselines(records: Sequence[SentenceRecord], box_size: tuple[float, float], split: str,
                       protocol: str = "tubedetr", thresholds: Sequence[float] = (0.3, 0.5),
                       seed: int = 0,
                       frame_ids: Callable[[SentenceRecord], np.ndarray] | None = None) -> dict[str, dict]:
    """Metrics of both baselines on ``records`` (keys of :data:`BASELINES`, in that order), then, given the model's
    frame sampling ``frame_ids``, of the :data:`SAMPLED_GT_SPAN` reference.

    ``box_size`` is the ``(width, height)`` of the centre box, normally :func:`mean_box_size` of the training split;
    ``seed`` seeds the random spans (recorded as ``seed`` in that baseline's metrics).
    """
    proto = get_protocol(protocol, thresholds)
    whole = whole_clip_centre_box(records, box_size, proto)
    random = random_span_centre_box(records, box_size, proto, np.random.default_rng(seed))
    out = {
        WHOLE_CLIP: score_baseline(whole, records, proto, WHOLE_CLIP, split),
        RANDOM_SPAN: {**score_baseline(random, records, proto, RANDOM_SPAN, split), "seed": seed},
    }
    if frame_ids is not None:
        sampled = sampled_gt_span_centre_box(records, box_size, proto, frame_ids)
        out[SAMPLED_GT_SPAN] = score_baseline(sampled, records, proto, SAMPLED_GT_SPAN, split)
    return out
