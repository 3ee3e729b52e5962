"""STVG metrics, vectorised over all sentences of a split.

Per sentence (``METRICS_AND_FORMATS.md`` §1): ``tIoU`` of the half-open spans on raw frame ids;
``vIoU = sum of box IoU over counted frames in the span intersection / counted frames in the span union``;
``gt_vIoU`` = mean box IoU over the GT frames; ``vIoU@R`` = ``vIoU > R`` (strict). Means are plain means over
sentences, per sentence type when the annotation has types (VidSTG).

Shapes: ``S`` sentences scored, ``P`` predicted sentences, ``Q`` predicted boxes, ``M`` GT box frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bridge_stg.eval.protocols import EvalTargets
from bridge_stg.ops.boxes import make_valid_xyxy, paired_box_iou
from bridge_stg.ops.frame_keys import FRAME_ID_LIMIT, frame_ids_in_range, frame_keys, split_frame_keys
from bridge_stg.ops.segments import segment_iou
from bridge_stg.structures import TubePrediction


@dataclass(frozen=True)
class PredictionTable:
    """Predicted tubes as flat columns: spans ``[P]`` and boxes ``[Q]`` (``box_owner`` indexes the span arrays)."""

    sentence_ids: np.ndarray
    span_start: np.ndarray
    span_end: np.ndarray
    box_owner: np.ndarray
    box_frame: np.ndarray
    boxes_xyxy_px: np.ndarray

    def __len__(self) -> int:
        return len(self.sentence_ids)

    @classmethod
    def from_tubes(cls, tubes: Sequence[TubePrediction]) -> PredictionTable:
        counts = [len(t.frame_ids) for t in tubes]
        return cls(
            sentence_ids=np.array([t.sentence_id for t in tubes], dtype=np.int64),
            span_start=np.array([t.span[0] for t in tubes], dtype=np.int64),
            span_end=np.array([t.span[1] for t in tubes], dtype=np.int64),
            box_owner=np.repeat(np.arange(len(tubes), dtype=np.int64), counts),
            box_frame=np.concatenate([np.asarray(t.frame_ids, np.int64) for t in tubes]) if tubes
            else np.zeros(0, np.int64),
            boxes_xyxy_px=np.concatenate([np.asarray(t.boxes_xyxy_px, np.float64).reshape(-1, 4) for t in tubes])
            if tubes else np.zeros((0, 4)),
        )

    def without(self, sentence_ids: np.ndarray) -> PredictionTable:
        """The table less the given sentences (e.g. those an annotation loader excluded or skipped)."""
        keep = ~np.isin(self.sentence_ids, sentence_ids)
        new_pos = np.cumsum(keep) - 1
        keep_box = keep[self.box_owner]
        return PredictionTable(self.sentence_ids[keep], self.span_start[keep], self.span_end[keep],
                               new_pos[self.box_owner[keep_box]], self.box_frame[keep_box],
                               self.boxes_xyxy_px[keep_box])

    def validate(self, source: str = "predictions") -> None:
        """Reject what cannot be scored: duplicate ids, inverted spans, frame ids outside ``[0, 2^32)``, non-finite
        boxes."""
        uniq, counts = np.unique(self.sentence_ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"{source}: duplicate predictions for sentence ids {uniq[counts > 1][:10].tolist()}")
        bad = np.flatnonzero(self.span_end < self.span_start)
        if len(bad):
            i = bad[0]
            raise ValueError(f"{source}: sentence {self.sentence_ids[i]} has an inverted span "
                             f"[{self.span_start[i]}, {self.span_end[i]}); spans are [start, end) frame ids")
        outside = np.flatnonzero(~frame_ids_in_range(self.box_frame))
        if len(outside):
            i = outside[0]
            raise ValueError(f"{source}: sentence {self.sentence_ids[self.box_owner[i]]} has a box on frame "
                             f"{self.box_frame[i]}; frame ids are original frame indices in [0, {FRAME_ID_LIMIT})")
        finite = np.isfinite(self.boxes_xyxy_px).all(axis=1)
        if not finite.all():
            i = np.flatnonzero(~finite)[0]
            raise ValueError(f"{source}: non-finite box {self.boxes_xyxy_px[i].tolist()} for sentence "
                             f"{self.sentence_ids[self.box_owner[i]]} frame {self.box_frame[i]}")


@dataclass(frozen=True)
class SentenceScores:
    """Per-sentence results ``[S]``, aligned with the targets' ``sentence_ids``."""

    sentence_ids: np.ndarray
    sentence_types: np.ndarray
    tiou: np.ndarray
    viou: np.ndarray
    gt_viou: np.ndarray
    predicted: np.ndarray  # False where the sentence had no prediction (scored 0 under missing_as_zero)
    missing_boxes: int  # GT frames without a predicted box (scored 0 under missing_as_zero)
    thresholds: tuple[float, ...]
    protocol: str


class MissingPredictionError(ValueError):
    pass


def _sorted_keys(owner: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Sorted (owner, frame) keys and the sorting order (None when already sorted, as written files are)."""
    keys = frame_keys(owner, frame)
    if len(keys) < 2 or (keys[1:] > keys[:-1]).all():
        return keys, None
    order = np.argsort(keys, kind="stable")
    return keys[order], order


def _pred_boxes_on_gt_frames(targets: EvalTargets, preds: PredictionTable, pred_pos: np.ndarray):
    """Predicted box on every GT frame ``[M, 4]`` and a mask ``[M]`` of frames that have one."""
    m = len(targets.gt_frame)
    out = np.zeros((m, 4))
    pred_keys, order = _sorted_keys(preds.box_owner, preds.box_frame)
    if len(pred_keys) == 0:
        return out, np.zeros(m, dtype=bool)
    if (pred_keys[1:] == pred_keys[:-1]).any():
        pos, frame = split_frame_keys(pred_keys[1:][pred_keys[1:] == pred_keys[:-1]][0])
        raise ValueError(f"two predicted boxes for sentence {preds.sentence_ids[pos]} on frame {frame}")
    boxes = preds.boxes_xyxy_px if order is None else preds.boxes_xyxy_px[order]
    owner = pred_pos[targets.gt_sent]
    has_owner = (owner >= 0) & (targets.gt_frame < FRAME_ID_LIMIT)  # a larger frame id would alias
    gt_keys = frame_keys(np.where(has_owner, owner, 0), targets.gt_frame)
    right = np.searchsorted(pred_keys, gt_keys, side="left")
    exact = (right < len(pred_keys)) & (pred_keys[np.minimum(right, len(pred_keys) - 1)] == gt_keys) & has_owner
    out[exact] = make_valid_xyxy(boxes[right[exact]])
    found = exact.copy()
    if targets.protocol.interpolate_boxes:
        left = right - 1
        inside = (~exact) & has_owner & (left >= 0) & (right < len(pred_keys))
        li, ri = left[inside], right[inside]
        (owner0, f0), (owner1, f1) = split_frame_keys(pred_keys[li]), split_frame_keys(pred_keys[ri])
        same = (owner0 == owner[inside]) & (owner1 == owner[inside])
        li, ri, rows, f0, f1 = li[same], ri[same], np.flatnonzero(inside)[same], f0[same], f1[same]
        w = ((targets.gt_frame[rows] - f0) / (f1 - f0))[:, None]
        b0, b1 = make_valid_xyxy(boxes[li]), make_valid_xyxy(boxes[ri])
        out[rows] = b0 + w * (b1 - b0)
        found[rows] = True
    return out, found


def score(targets: EvalTargets, preds: PredictionTable, missing_as_zero: bool = False) -> SentenceScores:
    """Score ``preds`` against ``targets``. Predictions for sentences outside ``targets`` are an error.

    A sentence without prediction, or a GT frame without a predicted box, raises :class:`MissingPredictionError`
    listing the first ones, unless ``missing_as_zero`` (then they score 0 and are counted).
    """
    preds.validate()
    s = len(targets)
    order = np.argsort(preds.sentence_ids)
    sorted_ids = preds.sentence_ids[order]
    at = np.searchsorted(sorted_ids, targets.sentence_ids)
    hit = (at < len(sorted_ids)) & (sorted_ids[np.minimum(at, max(len(sorted_ids) - 1, 0))] == targets.sentence_ids) \
        if len(sorted_ids) else np.zeros(s, dtype=bool)
    pred_pos = np.where(hit, order[np.minimum(at, max(len(order) - 1, 0))], -1) if len(order) else np.full(s, -1)
    unknown = np.setdiff1d(preds.sentence_ids, targets.sentence_ids)
    if len(unknown):
        raise ValueError(f"predictions for {len(unknown)} sentence ids not in the annotation, e.g. "
                         f"{unknown[:10].tolist()}: check that predictions and annotations are the same split")
    if not hit.all() and not missing_as_zero:
        missing = targets.sentence_ids[~hit]
        raise MissingPredictionError(f"no prediction for {len(missing)} of {s} sentences, e.g. {missing[:10].tolist()}"
                                     " (pass missing_as_zero / --missing-as-zero to score them as 0)")

    ps = np.append(preds.span_start, 0)[pred_pos]  # position -1 (no prediction) reads the appended 0
    pe = np.append(preds.span_end, 0)[pred_pos]
    ts, te = targets.gt_start, targets.gt_end
    tiou = np.where(hit, segment_iou(ts, te, ps, pe), 0.0)

    pred_box, found = _pred_boxes_on_gt_frames(targets, preds, pred_pos)
    lacking = ~found & hit[targets.gt_sent]
    if lacking.any() and not missing_as_zero:
        rows = np.flatnonzero(lacking)[:10]
        pairs = [f"{targets.sentence_ids[targets.gt_sent[r]]}_{targets.gt_frame[r]}" for r in rows]
        raise MissingPredictionError(f"{int(lacking.sum())} GT frames have no predicted box, e.g. (sentence_frame) "
                                     f"{pairs} (pass missing_as_zero / --missing-as-zero to score them as 0)")
    iou = np.where(found, paired_box_iou(pred_box, targets.gt_box), 0.0)

    max_start, min_end = np.maximum(ts, ps), np.minimum(te, pe)
    min_start, max_end = np.minimum(ts, ps), np.maximum(te, pe)
    g = targets.gt_sent
    in_inter = (targets.gt_frame >= max_start[g]) & (targets.gt_frame < min_end[g])
    inter_sum = np.bincount(g, weights=iou * in_inter, minlength=s)
    if targets.protocol.dense_frames:
        union = np.maximum(max_end - min_start, 0)
    else:
        e = targets.eval_sent
        in_union = (targets.eval_frame >= min_start[e]) & (targets.eval_frame < max_end[e])
        union = np.bincount(e, weights=in_union, minlength=s)
    viou = np.where(hit, inter_sum / np.maximum(union, 1), 0.0)
    gt_count = np.bincount(g, minlength=s)
    gt_viou = np.where(hit, np.bincount(g, weights=iou, minlength=s) / np.maximum(gt_count, 1), 0.0)
    return SentenceScores(
        sentence_ids=targets.sentence_ids, sentence_types=targets.sentence_types, tiou=tiou, viou=viou,
        gt_viou=gt_viou, predicted=hit, missing_boxes=int(lacking.sum()),
        thresholds=targets.protocol.thresholds, protocol=targets.protocol.name,
    )


def _means(scores: SentenceScores, mask: np.ndarray, prefix: str) -> dict[str, float]:
    n = int(mask.sum())

    def mean(x):
        return float(x[mask].mean()) if n else 0.0

    out = {f"{prefix}tiou": mean(scores.tiou), f"{prefix}viou": mean(scores.viou)}
    for t in scores.thresholds:
        out[f"{prefix}viou@{t:g}"] = mean((scores.viou > t).astype(np.float64))
    out[f"{prefix}gt_viou"] = mean(scores.gt_viou)
    for t in scores.thresholds:
        out[f"{prefix}gt_viou@{t:g}"] = mean((scores.gt_viou > t).astype(np.float64))
    return out


def summarize(scores: SentenceScores) -> dict:
    """Means as fractions, keyed as the reference evaluator keys them.

    With sentence types (VidSTG): ``declarative_*`` and ``interrogative_*`` plus ``average_viou`` (the mean of the two
    m_vIoU, the number papers quote); otherwise unprefixed keys. Counts and the protocol are included.
    """
    types = scores.sentence_types
    out: dict = {}
    present = sorted({t for t in types if t is not None})
    if present:
        if any(t is None for t in types):
            raise ValueError("some sentences have a sentence type and others do not; cannot summarise per type")
        for t in present:
            out.update(_means(scores, types == t, f"{t}_"))
            out[f"{t}_count"] = int((types == t).sum())
        out["average_viou"] = float(np.mean([out[f"{t}_viou"] for t in present]))
    else:
        out.update(_means(scores, np.ones(len(types), dtype=bool), ""))
    out["count"] = len(types)
    out["missing_predictions"] = int((~scores.predicted).sum())
    out["missing_boxes"] = scores.missing_boxes
    out["protocol"] = scores.protocol
    return out
