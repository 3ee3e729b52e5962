"""The protocols written as a plain per-frame Python loop, straight from their definitions.

It is slow on purpose and shares no code with :mod:`bridge_stg.eval.metrics` beyond the records: tests check the
vectorised scorer against it on random inputs, and ``benchmarks/bench_scoring.py`` times the two side by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bridge_stg.eval.protocols import Protocol
from bridge_stg.structures import SentenceRecord, TubePrediction


def sampled_frames(start: int, end: int, video_fps: float, fps: float, max_len: int | None) -> list[int]:
    rate = fps / video_fps
    frame_ids = [start]
    for f in range(start, end):
        if int(frame_ids[-1] * rate) < int(f * rate):
            frame_ids.append(f)
    if max_len is not None and len(frame_ids) > max_len:
        frame_ids = [frame_ids[(j * len(frame_ids)) // max_len] for j in range(max_len)]
    return frame_ids


def box_iou(a, b) -> float:
    ax1, ax2 = sorted((a[0], a[2]))
    ay1, ay2 = sorted((a[1], a[3]))
    iw = max(0.0, min(ax2, b[2]) - max(ax1, b[0]))
    ih = max(0.0, min(ay2, b[3]) - max(ay1, b[1]))
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _pred_box(pred: dict[int, list[float]], f: int, interpolate: bool):
    if f in pred:
        return pred[f]
    if not interpolate:
        return None
    before = [g for g in pred if g < f]
    after = [g for g in pred if g > f]
    if not before or not after:
        return None
    f0, f1 = max(before), min(after)
    w = (f - f0) / (f1 - f0)
    a, b = sorted_box(pred[f0]), sorted_box(pred[f1])
    return [a[k] + w * (b[k] - a[k]) for k in range(4)]


def sorted_box(b):
    x1, x2 = sorted((b[0], b[2]))
    y1, y2 = sorted((b[1], b[3]))
    return [x1, y1, x2, y2]


def score_sentence(rec: SentenceRecord, pred: TubePrediction, protocol: Protocol) -> dict[str, float]:
    """tiou, viou and gt_viou of one sentence; raises ``KeyError`` on a GT frame without a predicted box."""
    gt_box = {int(f): [float(v) for v in b] for f, b in zip(rec.box_frame_ids, rec.boxes_xyxy_px)}
    ts, te = rec.tube
    if protocol.stcat_end:
        last = te if rec.source_tube_end == "exclusive" else te - 1
        last = min(last, rec.segment[1] - 1)
        if last not in gt_box and last == te:
            gt_box[last] = gt_box[te - 1]
        gt_frames, (ts, te) = list(range(ts, last + 1)), (ts, last)
    else:
        shift = rec.annotation_frame_base if protocol.literal_frame_numbers else 0
        gt_box = {f + shift: b for f, b in gt_box.items()}
        ts, te = ts + shift, te + shift
        gt_frames = list(range(ts, te))
    if protocol.dense_frames:
        frames = None
    else:
        seg_end = rec.segment[1] - 1 if protocol.drop_last_segment_frame else rec.segment[1]
        frames = sampled_frames(rec.segment[0], seg_end, rec.fps, protocol.fps, protocol.max_frames)
        gt_frames = [f for f in frames if ts <= f < te]
    ps, pe = pred.span
    pred_boxes = {int(f): [float(v) for v in b] for f, b in zip(pred.frame_ids, pred.boxes_xyxy_px)}

    max_start, min_end = max(ts, ps), min(te, pe)
    min_start, max_end = min(ts, ps), max(te, pe)
    inter = max(0, min_end - max_start)
    union_len = (te - ts) + (pe - ps) - inter
    tiou = inter / union_len if union_len > 0 else 0.0
    if frames is None:
        union_count = max(0, max_end - min_start)
    else:
        union_count = sum(1 for f in frames if min_start <= f < max_end)
    viou = gt_viou = 0.0
    for f in gt_frames:
        box = _pred_box(pred_boxes, f, protocol.interpolate_boxes)
        if box is None:
            raise KeyError(f"{rec.sentence_id}_{f}")
        iou = box_iou(box, gt_box[f])
        if max_start <= f < min_end:
            viou += iou
        gt_viou += iou
    return {"tiou": tiou, "viou": viou / max(union_count, 1), "gt_viou": gt_viou / max(len(gt_frames), 1)}


def score_all(records: Sequence[SentenceRecord], preds: Mapping[int, TubePrediction], protocol: Protocol):
    """Per-sentence dicts, in record order."""
    return [score_sentence(r, preds[r.sentence_id], protocol) for r in records]
