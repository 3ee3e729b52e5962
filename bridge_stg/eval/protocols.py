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

from bridge_stg.ops.frame_keys import FRAME_ID_LIMIT, frame_ids_in_range, frame_keys
from bridge_stg.ops.sampling import EVAL_FPS, EVAL_MAX_FRAMES, sample_frame_ids, sample_frame_ids_batch
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

    def prediction_frame_ids(self, record: SentenceRecord) -> np.ndarray:
        """The frames on which a predicted tube needs a box: every segment frame (dense protocols) or the sampled
        ones."""
        if self.dense_frames:
            return np.arange(record.segment[0], record.segment[1], dtype=np.int64)
        return self.eval_frame_ids(record)


def check_thresholds(thresholds: Sequence[float], key: str | None = None) -> None:
    """vIoU@R thresholds must be finite and in (0, 1] (``vIoU > R`` is always true below 0 and never above 1);
    ``key``, when given, names the option at the start of the message."""
    prefix = f"{key}: " if key else ""
    if not thresholds:
        raise ValueError(f"{prefix}no thresholds given: give at least one vIoU@R threshold, e.g. 0.3 0.5")
    for t in thresholds:
        if not 0 < t <= 1:  # also rejects NaN
            raise ValueError(f"{prefix}{t!r} is not a vIoU@R threshold; thresholds are numbers in (0, 1] "
                             "(vIoU > R counts), e.g. 0.3 0.5")


def get_protocol(name: str, thresholds: Sequence[float] = (0.3, 0.5)) -> Protocol:
    check_thresholds(thresholds)
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


class _Tracks:
    """Every record's annotated boxes in one sorted table, for vectorised look-ups by (record, frame).

    Records of the same target share their box arrays, so each distinct array is stored once.
    """

    def __init__(self, records: Sequence[SentenceRecord]):
        index: dict[int, int] = {}
        frames, boxes = [], []
        self.of_record = np.empty(len(records), dtype=np.int64)
        for i, rec in enumerate(records):
            key = id(rec.box_frame_ids)
            if key not in index:
                index[key] = len(frames)
                frames.append(rec.box_frame_ids)
                boxes.append(rec.boxes_xyxy_px)
            self.of_record[i] = index[key]
        owner = np.repeat(np.arange(len(frames), dtype=np.int64), [len(f) for f in frames])
        all_frames = np.concatenate(frames).astype(np.int64)
        outside = np.flatnonzero(~frame_ids_in_range(all_frames))
        if len(outside):
            rec = records[int(np.flatnonzero(self.of_record == owner[outside[0]])[0])]
            raise ValueError(f"sentence {rec.sentence_id} ({rec.video_id}): GT box on frame {all_frames[outside[0]]}"
                             f"; frame ids are original frame indices in [0, {FRAME_ID_LIMIT})")
        self.keys = frame_keys(owner, all_frames)
        self.boxes = np.concatenate(boxes).reshape(-1, 4)
        if len(self.keys) > 1 and not (np.diff(self.keys) > 0).all():
            raise ValueError("box frame ids of a record must be sorted and unique")

    def find(self, record_idx: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row of each box, mask of the (record, frame) pairs that have a box)."""
        keys = frame_keys(self.of_record[record_idx], frame)
        pos = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))
        found = self.keys[pos] == keys if len(self.keys) else np.zeros(len(keys), dtype=bool)
        return pos, found & frame_ids_in_range(frame)  # other frames would alias another record's


def _ranges(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, value) of every integer of ``[starts[i], ends[i])``, grouped by ``i``."""
    counts = np.maximum(ends - starts, 0)
    owner = np.repeat(np.arange(len(starts), dtype=np.int64), counts)
    return owner, np.arange(counts.sum(), dtype=np.int64) - (np.cumsum(counts) - counts)[owner] + starts[owner]


def _check_records(records: Sequence[SentenceRecord], protocol: Protocol) -> None:
    for dataset in {r.dataset for r in records}:
        protocol.check_dataset(dataset)
    for rec in records:
        if rec.tube is None:
            raise ValueError(f"sentence {rec.sentence_id} ({rec.video_id}) has no ground-truth tube: "
                             "query-only annotation files cannot be scored")
        if len(rec.box_frame_ids) == 0:
            raise ValueError(f"sentence {rec.sentence_id} ({rec.video_id}) has no GT boxes to score against: "
                             "VidSTG official sentence files need the VidOR box folder (--vidor-dir)")


def build_targets(records: Sequence[SentenceRecord], protocol: Protocol) -> EvalTargets:
    """Evaluate-time ground truth of ``records`` (all must carry a tube and boxes) under ``protocol``."""
    _check_records(records, protocol)
    seg_start = np.array([r.segment[0] for r in records], dtype=np.int64)
    seg_end = np.array([r.segment[1] for r in records], dtype=np.int64)
    ts = np.array([r.tube[0] for r in records], dtype=np.int64)
    te = np.array([r.tube[1] for r in records], dtype=np.int64)
    tracks = _Tracks(records)
    if protocol.stcat_end:
        exclusive = np.array([r.source_tube_end == "exclusive" for r in records])
        last = np.minimum(np.where(exclusive, te, te - 1), seg_end - 1)
        gt_start, gt_end, shift = ts, last, np.zeros_like(ts)
        gt_sent, gt_frame = _ranges(ts, last + 1)
    else:
        shift = np.array([r.annotation_frame_base for r in records], dtype=np.int64) if protocol.literal_frame_numbers \
            else np.zeros_like(ts)
        gt_start, gt_end = ts + shift, te + shift
        if protocol.dense_frames:
            gt_sent, gt_frame = _ranges(gt_start, gt_end)
    if protocol.dense_frames:
        eval_sent = eval_frame = np.zeros(0, dtype=np.int64)
    else:
        fps = np.array([r.fps for r in records], dtype=np.float64)
        seg_last = seg_end - 1 if protocol.drop_last_segment_frame else seg_end
        eval_sent, eval_frame = sample_frame_ids_batch(seg_start, seg_last, fps, protocol.fps, protocol.max_frames)
        inside = (eval_frame >= gt_start[eval_sent]) & (eval_frame < gt_end[eval_sent])
        gt_sent, gt_frame = eval_sent[inside], eval_frame[inside]

    pos, found = tracks.find(gt_sent, gt_frame - shift[gt_sent])
    if protocol.stcat_end:
        # VidSTG read this way gains the frame after the tube; without a box there STCAT repeats the tube's last box
        extra = ~found & (gt_frame == te[gt_sent]) & (gt_frame > ts[gt_sent])
        pos[extra], found[extra] = tracks.find(gt_sent[extra], gt_frame[extra] - 1)
    if not found.all():
        r = int(np.flatnonzero(~found)[0])
        rec = records[gt_sent[r]]
        missing = (gt_frame[gt_sent == gt_sent[r]] - shift[gt_sent[r]])[~found[gt_sent == gt_sent[r]]]
        raise ValueError(f"sentence {rec.sentence_id} ({rec.video_id}): no GT box on frames {missing[:5].tolist()}")
    return EvalTargets(
        protocol=protocol,
        sentence_ids=np.array([r.sentence_id for r in records], dtype=np.int64),
        sentence_types=np.array([r.sentence_type for r in records], dtype=object),
        gt_start=gt_start, gt_end=gt_end, gt_sent=gt_sent, gt_frame=gt_frame, gt_box=tracks.boxes[pos],
        eval_sent=eval_sent, eval_frame=eval_frame,
    )
