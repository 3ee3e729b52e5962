"""Evaluation protocols: which frames count, where the ground truth lies, how predicted boxes are filled.

A protocol turns sentence records into an :class:`EvalTargets` table; :mod:`bridge_stg.eval.metrics` scores any
protocol's table with one vectorised core. Three named protocols exist (``METRICS_AND_FORMATS.md``):

``tubedetr`` (default)
    Frames of the segment minus its last frame, resampled at 5 fps (at most 200) with
    :func:`~bridge_stg.ops.sampling.sample_frame_ids`; GT tube half-open; HC-STVG's 1-based ``st_frame`` used as a
    0-based frame id (the GT lies one decoded frame late, as in the reference evaluator); boxes must be predicted on
    every sampled GT frame.
``stcat``
    Every frame counts; predicted boxes are linearly interpolated between predicted frames; the source's tube end
    number is read as inclusive (for VidSTG, whose end is exclusive, this adds one frame) and clipped to the last
    segment frame; HC-STVG's ``st_frame`` is shifted to 0-based. The arithmetic is STCAT's: tIoU and the vIoU
    intersection/union use ``[start, last)``, while gt_vIoU averages over every box frame ``start..last``.
``hcstvg_official``
    HC-STVG only. Every frame counts, tube ``[st_frame, st_frame + len(bbox))`` in 1-based numbering (0-based here),
    end inclusive in the source's terms, predicted boxes interpolated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bridge_stg.ops.sampling import EVAL_FPS, EVAL_MAX_FRAMES, sample_frame_ids
from bridge_stg.structures import SentenceRecord

PROTOCOL_NAMES = ("tubedetr", "stcat", "hcstvg_official")


@dataclass(frozen=True)
class Protocol:
    name: str
    dense_frames: bool  # every frame counts (no resampling)
    interpolate_boxes: bool  # fill GT frames between predicted frames linearly (never extrapolates)
    literal_frame_numbers: bool  # use 1-based source frame numbers as 0-based ids (TubeDETR's HC-STVG handling)
    stcat_end: bool  # STCAT's reading of the tube end (see module docstring)
    fps: float = EVAL_FPS
    max_frames: int | None = EVAL_MAX_FRAMES
    drop_last_segment_frame: bool = True
    thresholds: tuple[float, ...] = (0.3, 0.5)
    datasets: tuple[str, ...] | None = None  # None: any dataset

    def check_dataset(self, dataset: str) -> None:
        if self.datasets is not None and not any(dataset.startswith(d) for d in self.datasets):
            raise ValueError(f"protocol '{self.name}' is defined for {list(self.datasets)} only, not '{dataset}'")

    def eval_frame_ids(self, record: SentenceRecord) -> np.ndarray:
        """The sampled frames that count for this record (sampled protocols only)."""
        start, end = record.segment
        if self.drop_last_segment_frame:
            end -= 1
        return sample_frame_ids(start, end, record.fps, self.fps, self.max_frames)


def get_protocol(name: str, thresholds: Sequence[float] = (0.3, 0.5)) -> Protocol:
    thresholds = tuple(float(t) for t in thresholds)
    if name == "tubedetr":
        return Protocol(name, dense_frames=False, interpolate_boxes=False, literal_frame_numbers=True,
                        stcat_end=False, thresholds=thresholds)
    if name == "stcat":
        return Protocol(name, dense_frames=True, interpolate_boxes=True, literal_frame_numbers=False,
                        stcat_end=True, drop_last_segment_frame=False, thresholds=thresholds)
    if name == "hcstvg_official":
        return Protocol(name, dense_frames=True, interpolate_boxes=True, literal_frame_numbers=False,
                        stcat_end=False, drop_last_segment_frame=False, thresholds=thresholds,
                        datasets=("hcstvg",))
    raise ValueError(f"unknown protocol '{name}'; choose one of {list(PROTOCOL_NAMES)}")


@dataclass(frozen=True)
class EvalTargets:
    """Ground truth of ``S`` sentences under one protocol, as flat columns.

    ``gt_start/gt_end`` [S]: the span entering tIoU and vIoU (half-open). ``gt_sent/gt_frame/gt_box`` [M]: the frames
    whose box IoU enters gt_vIoU (and vIoU inside the intersection), sorted by (sentence, frame).
    ``eval_sent/eval_frame`` [F]: the frames counted in a union (sampled protocols); empty for dense protocols, where
    a union counts every frame of ``[min start, max end)``.
    """

    protocol: Protocol
    sentence_ids: np.ndarray
    sentence_types: np.ndarray  # object array of str | None
    gt_start: np.ndarray
    gt_end: np.ndarray
    gt_sent: np.ndarray
    gt_frame: np.ndarray
    gt_box: np.ndarray
    eval_sent: np.ndarray
    eval_frame: np.ndarray

    def __len__(self) -> int:
        return len(self.sentence_ids)


def _gt_frames_of(record: SentenceRecord, protocol: Protocol, eval_frames: np.ndarray | None):
    """(span_start, span_end, gt frame ids, gt boxes) of one record under ``protocol``."""
    assert record.tube is not None
    ts, te = record.tube
    if protocol.stcat_end:
        last = te if record.source_tube_end == "exclusive" else te - 1
        last = min(last, record.segment[1] - 1)
        frames = np.arange(ts, last + 1, dtype=np.int64)
        # VidSTG read this way gains the frame after the tube; when the target has no box there, STCAT repeats the
        # last box of the tube.
        known = np.isin(frames, record.box_frame_ids)
        if not known[-1] and len(frames) > 1 and last == te:
            boxes = np.concatenate([record.boxes_on(frames[:-1]), record.boxes_on(frames[-2:-1])])
        else:
            boxes = record.boxes_on(frames)
        return ts, last, frames, boxes
    shift = record.annotation_frame_base if protocol.literal_frame_numbers else 0
    span_start, span_end = ts + shift, te + shift
    if eval_frames is None:
        frames = np.arange(span_start, span_end, dtype=np.int64)
    else:
        frames = eval_frames[(eval_frames >= span_start) & (eval_frames < span_end)]
    return span_start, span_end, frames, record.boxes_on(frames - shift)


def build_targets(records: Sequence[SentenceRecord], protocol: Protocol) -> EvalTargets:
    """Evaluate-time ground truth of ``records`` (all must carry a tube) under ``protocol``."""
    n = len(records)
    sentence_ids = np.empty(n, dtype=np.int64)
    types = np.empty(n, dtype=object)
    gt_start = np.empty(n, dtype=np.int64)
    gt_end = np.empty(n, dtype=np.int64)
    gt_frames, gt_boxes, eval_frames = [], [], []
    for i, rec in enumerate(records):
        if rec.tube is None:
            raise ValueError(f"sentence {rec.sentence_id} ({rec.video_id}) has no ground-truth tube: "
                             "query-only annotation files cannot be scored")
        protocol.check_dataset(rec.dataset)
        if len(rec.box_frame_ids) == 0:
            raise ValueError(f"sentence {rec.sentence_id} ({rec.video_id}) has no GT boxes to score against: "
                             "VidSTG official sentence files need the VidOR box folder (--vidor-dir)")
        frames = None if protocol.dense_frames else protocol.eval_frame_ids(rec)
        if frames is not None:
            eval_frames.append(frames)
        s, e, f, b = _gt_frames_of(rec, protocol, frames)
        sentence_ids[i], types[i], gt_start[i], gt_end[i] = rec.sentence_id, rec.sentence_type, s, e
        gt_frames.append(f)
        gt_boxes.append(b)

    def flat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    def owners(parts):
        return np.repeat(np.arange(len(parts), dtype=np.int64), [len(p) for p in parts])

    return EvalTargets(
        protocol=protocol,
        sentence_ids=sentence_ids,
        sentence_types=types,
        gt_start=gt_start,
        gt_end=gt_end,
        gt_sent=owners(gt_frames),
        gt_frame=flat(gt_frames, np.int64),
        gt_box=np.concatenate(gt_boxes).reshape(-1, 4) if gt_boxes else np.zeros((0, 4)),
        eval_sent=owners(eval_frames),
        eval_frame=flat(eval_frames, np.int64),
    )
