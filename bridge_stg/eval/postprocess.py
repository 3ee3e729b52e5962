"""Model predictions of one sample -> a :class:`~bridge_stg.structures.TubePrediction` (DESIGN step 10). Numpy only.

Units: ``frame_idx`` is a position among the sample's sampled frames (what the model sees), ``frame_id`` an original
video frame; ``01`` boxes are normalised to the frame, ``_px`` boxes are absolute pixels of the original frame.
Spans are half-open everywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from bridge_stg.ops.boxes import cxcywh_to_xyxy, make_valid_xyxy
from bridge_stg.ops.sampling import indices_to_span
from bridge_stg.ops.segments import decode_span, span_probabilities
from bridge_stg.structures import GroundingSample, SentenceRecord, TubePrediction

__all__ = ["boxes_cxcywh01_to_xyxy_px", "decode_span", "fill_boxes", "predicted_tube", "tube_from_prediction"]

Fill = Literal["linear", "nearest"]


def boxes_cxcywh01_to_xyxy_px(boxes_cxcywh01: np.ndarray, orig_size: tuple[int, int]) -> np.ndarray:
    """Normalised centre boxes ``[N, 4]`` -> absolute corner boxes of a ``(height, width)`` frame, clipped to it."""
    height, width = orig_size
    xyxy01 = make_valid_xyxy(cxcywh_to_xyxy(np.asarray(boxes_cxcywh01).reshape(-1, 4)))
    scale = np.array([width, height, width, height], dtype=np.float64)
    return np.clip(xyxy01, 0.0, 1.0) * scale


def fill_boxes(known_frame_ids: np.ndarray, known_boxes: np.ndarray, frame_ids: np.ndarray, fill: Fill) -> np.ndarray:
    """Boxes ``[len(frame_ids), 4]`` on ``frame_ids`` from boxes on ascending unique ``known_frame_ids``.

    ``"linear"``: coordinates interpolated linearly between the two known frames around a frame, the nearest known
    box outside their range. ``"nearest"``: the nearest known box everywhere (ties: the earlier frame).
    """
    frame_ids = np.asarray(frame_ids, dtype=np.int64)
    if fill == "linear":
        columns = [np.interp(frame_ids, known_frame_ids, known_boxes[:, c]) for c in range(4)]
        return np.stack(columns, axis=-1).reshape(len(frame_ids), 4)
    if fill == "nearest":
        right = np.clip(np.searchsorted(known_frame_ids, frame_ids), 0, len(known_frame_ids) - 1)
        left = np.maximum(right - 1, 0)
        take_right = np.abs(known_frame_ids[right] - frame_ids) < np.abs(frame_ids - known_frame_ids[left])
        return known_boxes[np.where(take_right, right, left)].reshape(len(frame_ids), 4)
    raise ValueError(f"unknown fill {fill!r}: expected 'linear' or 'nearest'")


def tube_from_prediction(
    sentence_id: int,
    span_idx: tuple[int, int],
    frame_ids: np.ndarray,
    segment_end: int,
    box_frame_idx: np.ndarray,
    boxes_cxcywh01: np.ndarray,
    orig_size: tuple[int, int],
    target_frame_ids: np.ndarray | None,
    fill: Fill = "linear",
) -> TubePrediction:
    """One sample's predictions as a tube in original frame ids and pixels.

    ``span_idx`` is a half-open frame_idx span (e.g. :func:`~bridge_stg.ops.segments.decode_span`), mapped with
    :func:`~bridge_stg.ops.sampling.indices_to_span`. ``box_frame_idx [F]`` (frame_idx of the decoded frames; a repeat,
    such as the padding to an even count, keeps its first box) and ``boxes_cxcywh01 [F, 4]`` are turned into pixel
    boxes of the ``orig_size = (height, width)`` frame and filled onto every ``target_frame_ids`` frame (the frames the
    evaluation protocol asks for, e.g. ``Protocol.prediction_frame_ids``; ``None``: every frame of the predicted span,
    what a predictor without ground truth draws) with :func:`fill_boxes`. Raises ``ValueError`` when no frame was
    decoded.
    """
    frame_ids = np.asarray(frame_ids, dtype=np.int64)
    box_frame_idx = np.asarray(box_frame_idx, dtype=np.int64).reshape(-1)
    boxes_cxcywh01 = np.asarray(boxes_cxcywh01, dtype=np.float64).reshape(-1, 4)
    if len(box_frame_idx) == 0:
        raise ValueError(f"sentence {sentence_id}: no decoded frame, so no box to build a tube from")
    if len(box_frame_idx) != len(boxes_cxcywh01):
        raise ValueError(f"sentence {sentence_id}: {len(box_frame_idx)} box frames but {len(boxes_cxcywh01)} boxes")
    if box_frame_idx.min() < 0 or box_frame_idx.max() >= len(frame_ids):
        raise ValueError(f"sentence {sentence_id}: box frame indices {box_frame_idx.tolist()} outside "
                         f"[0, {len(frame_ids)}); drop padded decoder slots before calling")
    unique_idx, first = np.unique(box_frame_idx, return_index=True)  # ascending frame_idx, first occurrence of each
    known_px = boxes_cxcywh01_to_xyxy_px(boxes_cxcywh01[first], orig_size)
    span = indices_to_span(span_idx, frame_ids, segment_end)
    target_frame_ids = np.arange(*span, dtype=np.int64) if target_frame_ids is None else \
        np.asarray(target_frame_ids, dtype=np.int64).reshape(-1)
    return TubePrediction(
        sentence_id=int(sentence_id),
        span=span,
        frame_ids=target_frame_ids,
        boxes_xyxy_px=fill_boxes(frame_ids[unique_idx], known_px, target_frame_ids, fill),
    )


def predicted_tube(pred: dict[str, Any], sample: GroundingSample, record: SentenceRecord,
                   target_frame_ids: np.ndarray | None, fill: Fill = "linear") -> TubePrediction:
    """The tube of one ``predict`` result (``span_idx``, ``decoded_frames``, ``boxes_cxcywh01``) for the ``sample``
    built from ``record``: what the evaluation loop (``target_frame_ids``: the protocol's frames) and the predictor
    (``None``: every frame of the predicted span) both call, so that they never differ."""
    tube = tube_from_prediction(record.sentence_id, pred["span_idx"], sample.frame_ids, record.segment[1],
                                pred["decoded_frames"], pred["boxes_cxcywh01"], sample.orig_size, target_frame_ids,
                                fill=fill)
    logits = pred.get("temporal_logits")  # none from the coupled baseline, which writes its span as text
    if logits is None:
        return tube
    return dataclasses.replace(tube, sampled_frame_ids=np.asarray(sample.frame_ids, dtype=np.int64),
                               probabilities=span_probabilities(logits))
