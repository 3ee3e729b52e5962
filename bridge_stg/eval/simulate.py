"""Simulated ground truth and predictions for exercising the evaluation toolkit without videos.

Used by the example scoring job (``scripts/score_example.py``), the scoring benchmark and tests. Records look like
VidSTG (one question and one caption per clip, real-world frame rates) or HC-STVG (20 s clips); predictions are the
ground truth with controlled span and box noise, on the reference protocol's frame grid.
"""

from __future__ import annotations

import numpy as np

from bridge_stg.eval.protocols import get_protocol
from bridge_stg.ops.boxes import cxcywh_to_xyxy
from bridge_stg.structures import SentenceRecord, TubePrediction

_REFERENCE = get_protocol("tubedetr")
VIDSTG_FPS = (30000 / 1001, 29.97, 25.0, 24.0, 24000 / 1001, 15.0, 10.0)


def _trajectory(rng: np.random.Generator, n: int, width: int, height: int) -> np.ndarray:
    """A smooth random box track ``[n, 4]`` (xyxy px) inside the frame."""
    size = rng.uniform(0.15, 0.5, 2) * (width, height)
    centre = rng.uniform(size / 2, (width, height) - size / 2)
    step = rng.normal(0, 1.5, (n, 2)).cumsum(0)
    c = np.clip(centre + step, size / 2, (width, height) - size / 2)
    return cxcywh_to_xyxy(np.concatenate([c, np.broadcast_to(size, c.shape)], axis=1))


def simulate_vidstg(num_clips: int, seed: int = 0, max_seconds: float = 40.0) -> list[SentenceRecord]:
    """``2 * num_clips`` VidSTG-like records (ids in TubeDETR order: question, then caption, per clip)."""
    rng = np.random.default_rng(seed)
    records: list[SentenceRecord] = []
    for clip in range(num_clips):
        fps = float(rng.choice(VIDSTG_FPS))
        width, height = (640, 360) if rng.random() < 0.7 else (480, 360)
        frame_count = int(rng.integers(int(3 * fps), int(max_seconds * fps)))
        seg_start = int(rng.integers(0, frame_count // 4))
        seg_end = int(rng.integers(seg_start + frame_count // 2, frame_count + 1))  # exclusive
        ts = int(rng.integers(seg_start, seg_end - 1))
        te = int(rng.integers(ts + 1, seg_end + 1))
        box_frames = np.arange(max(seg_start, ts - 5), min(frame_count, te + 5), dtype=np.int64)
        boxes = _trajectory(rng, len(box_frames), width, height)
        boxes.setflags(write=False)
        for stype, text in (("interrogative", "who is holding the cup?"), ("declarative", "an adult holds a cup.")):
            records.append(SentenceRecord(
                sentence_id=len(records), dataset="vidstg", video_id=f"{1000000 + clip}",
                video_path=f"0000/{1000000 + clip}.mp4", fps=fps, frame_count=frame_count, width=width,
                height=height, segment=(seg_start, seg_end), tube=(ts, te), query=text, sentence_type=stype,
                target_id=0, box_frame_ids=box_frames, boxes_xyxy_px=boxes))
    return records


def simulate_hcstvg(num_clips: int, version: int = 2, seed: int = 0) -> list[SentenceRecord]:
    """``num_clips`` HC-STVG-like records (20 s clips, 1-based ``st_frame`` in the source)."""
    rng = np.random.default_rng(seed)
    records = []
    for clip in range(num_clips):
        frame_count = int(rng.choice([480, 500, 600]))
        width, height = 640, 360
        ts = int(rng.integers(0, frame_count - 40))
        te = int(rng.integers(ts + 20, frame_count))
        frames = np.arange(ts, te, dtype=np.int64)
        records.append(SentenceRecord(
            sentence_id=clip, dataset=f"hcstvg_v{version}", video_id=f"{clip}_clip", video_path=f"{clip}_clip.mp4",
            fps=frame_count / 20, frame_count=frame_count, width=width, height=height, segment=(0, frame_count),
            tube=(ts, te), query="the man in black walks to the door and opens it.", box_frame_ids=frames,
            boxes_xyxy_px=_trajectory(rng, len(frames), width, height), annotation_frame_base=1,
            source_tube_end="inclusive"))
    return records


def simulate_predictions(records: list[SentenceRecord], span_noise: float = 0.2, box_noise: float = 0.1,
                         seed: int = 0) -> list[TubePrediction]:
    """Noisy copies of the ground truth on the reference protocol's frames (and the segment's last frame).

    ``span_noise`` and ``box_noise`` are fractions of the tube length and of the box size (standard deviations).
    Frames without a GT box get the nearest GT box before noise, as a tracker would carry it.
    """
    rng = np.random.default_rng(seed)
    preds = []
    for rec in records:
        ts, te = rec.tube
        jitter = rng.normal(0, span_noise * (te - ts), 2).round().astype(int)
        ps = int(np.clip(ts + jitter[0], rec.segment[0], rec.segment[1] - 1))
        pe = int(np.clip(te + jitter[1], ps + 1, rec.segment[1]))
        # the reference grid plus the segment's last frame, so that dense protocols can interpolate up to the end
        frames = np.union1d(_REFERENCE.eval_frame_ids(rec), [rec.segment[1] - 1])
        nearest = np.clip(np.searchsorted(rec.box_frame_ids, frames), 0, len(rec.box_frame_ids) - 1)
        boxes = rec.boxes_xyxy_px[nearest]
        size = np.tile(boxes[:, 2:] - boxes[:, :2], (1, 2))
        preds.append(TubePrediction(rec.sentence_id, (ps, pe), frames,
                                    boxes + rng.normal(0, box_noise, boxes.shape) * size))
    return preds
