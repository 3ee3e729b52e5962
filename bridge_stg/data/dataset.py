"""Datasets of grounding samples: sentence records + videos (or images) -> :class:`GroundingSample`.

A source states which targets it carries: tube grounding (span and boxes), temporal-only grounding (span; records
without boxes) and image referring expressions (one image as a two-frame video; boxes, no span). Missing targets are
not supervised (the criterion skips them), never zero-filled.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from bridge_stg.data.frames import FrameBudget, fit_to_pixel_budget, resize_frames, sample_window, select_frames
from bridge_stg.data.video_io import VideoReadError, read_frames
from bridge_stg.ops.sampling import span_to_indices
from bridge_stg.structures import GroundingSample, SentenceRecord, Task
from bridge_stg.text.answers import format_answer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedSample:
    """Stands in for a sample whose video could not be read, when ``skip_bad_videos`` is on."""

    sample_id: str
    video_path: str
    reason: str


def task_of(record: SentenceRecord) -> Task:
    """What a record can supervise: a tube, a span only (no boxes) or a box only (an image)."""
    if record.frame_count == 1:
        return "image"
    return "tube" if len(record.box_frame_ids) else "temporal"


def effective_fps(frame_ids: np.ndarray, video_fps: float) -> float:
    """Sampled frames per second actually seen (the sampling cap and thinning make it lower than asked)."""
    seconds = (frame_ids[-1] - frame_ids[0]) / video_fps
    return (len(frame_ids) - 1) / seconds if seconds > 0 else video_fps


def boxes_on_frames(record: SentenceRecord, frame_ids: np.ndarray, tube: tuple[int, int]) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """(cxcywh normalised boxes ``[T, 4]`` float32, mask ``[T]``) of the GT boxes on sampled frames inside ``tube``."""
    boxes = np.zeros((len(frame_ids), 4), dtype=np.float32)
    if len(record.box_frame_ids) == 0:
        return boxes, np.zeros(len(frame_ids), dtype=bool)
    pos = np.minimum(np.searchsorted(record.box_frame_ids, frame_ids), len(record.box_frame_ids) - 1)
    mask = (record.box_frame_ids[pos] == frame_ids) & (frame_ids >= tube[0]) & (frame_ids < tube[1])
    x1, y1, x2, y2 = (record.boxes_xyxy_px[pos[mask]] / [record.width, record.height, record.width, record.height]).T
    boxes[mask] = np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1)
    return boxes, mask


class GroundingDataset(Dataset):
    """Samples of one source. ``train`` enables the random temporal crop of ``budget`` (seeded per epoch/index).

    With ``skip_bad_videos`` an unreadable, missing or short video yields a :class:`SkippedSample` (dropped and
    counted by the collation step) instead of raising :class:`~bridge_stg.data.video_io.VideoReadError`.
    With ``with_answers`` every sample with a span and at least one box gets its text target ``answer``
    (:func:`~bridge_stg.text.answers.format_answer`: what the coupled baseline learns to write); others get none.
    """

    def __init__(self, records: Sequence[SentenceRecord], media_root: str | Path, budget: FrameBudget,
                 source: str, train: bool = False, seed: int = 0, skip_bad_videos: bool = False,
                 with_answers: bool = False):
        self.records = list(records)
        self.media_root = Path(media_root)
        self.budget = budget
        self.source = source
        self.train = train
        self.seed = seed
        self.skip_bad_videos = skip_bad_videos
        self.with_answers = with_answers
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> GroundingSample | SkippedSample:
        record = self.records[index]
        sample_id = f"{self.source}:{record.sentence_id}"
        try:
            return self._sample(record, sample_id, index)
        except VideoReadError as err:
            if not self.skip_bad_videos:
                raise
            log.warning("skipping %s: %s", sample_id, err)
            return SkippedSample(sample_id, record.video_path, str(err))

    def _sample(self, record: SentenceRecord, sample_id: str, index: int) -> GroundingSample:
        task = task_of(record)
        path = self.media_root / record.video_path
        if task == "image":
            frame_ids = np.zeros(2, dtype=np.int64)
            frames = _read_image(path)
            frames = np.stack([frames, frames])
        else:
            rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
            window = sample_window(record.segment, self.budget, record.tube, rng)
            frame_ids = select_frames(window, record.fps, self.budget)
            frames = read_frames(path, frame_ids, expected_frame_count=record.frame_count)
        size = fit_to_pixel_budget(frames.shape[1], frames.shape[2], self.budget.min_pixels, self.budget.max_pixels)
        tube = record.tube
        span = None
        if tube is not None and task != "image":
            span = span_to_indices(tube, frame_ids, window[1])
        boxes, mask = boxes_on_frames(record, frame_ids, tube if tube is not None else (0, 1))
        fps = record.fps if task == "image" else effective_fps(frame_ids, record.fps)
        answer = format_answer(span, boxes, mask) if self.with_answers and span is not None and mask.any() else None
        return GroundingSample(
            sample_id=sample_id, source=self.source, task=task, sentence_id=record.sentence_id, query=record.query,
            frames=resize_frames(frames, size), frame_ids=frame_ids,
            timestamps_s=(frame_ids - record.segment[0]) / max(record.fps, 1e-6) if task != "image"
            else np.zeros(2), fps=fps, orig_size=(record.height, record.width), span=span,
            boxes_cxcywh01=boxes, box_mask=mask, answer=answer)


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise VideoReadError(path, "missing", "image not found") from None
    except OSError as err:
        raise VideoReadError(path, "unreadable", f"cannot read the image: {err}") from None


def drop_skipped(items: Sequence[GroundingSample | SkippedSample]) -> tuple[list[GroundingSample],
                                                                          list[SkippedSample]]:
    """Split a list of dataset items into real samples and skipped ones (for the collation step's report)."""
    kept = [x for x in items if isinstance(x, GroundingSample)]
    return kept, [x for x in items if isinstance(x, SkippedSample)]


class MixtureDataset(Dataset):
    """A weighted mixture of sources with a fixed length per epoch.

    The epoch's schedule draws ``length`` (source, index) pairs with probabilities proportional to the weights,
    deterministically from (seed, epoch); each source is walked through a per-epoch permutation so that nothing is
    drawn twice before the whole source has been seen. An index ``>= length`` addresses a later epoch
    (``epoch * length + i``), so that persistent data-loader workers follow epochs without being restarted.
    """

    def __init__(self, sources: dict[str, tuple[Dataset, float]], length: int, seed: int = 0):
        if not sources:
            raise ValueError("a mixture needs at least one source")
        bad = {k: w for k, (_, w) in sources.items() if w < 0}
        if bad or sum(w for _, w in sources.values()) <= 0:
            raise ValueError(f"mixture weights must be >= 0 with a positive sum, got "
                             f"{ {k: w for k, (_, w) in sources.items()} }")
        self.names = list(sources)
        self.datasets = [sources[n][0] for n in self.names]
        weights = np.array([sources[n][1] for n in self.names], dtype=np.float64)
        self.probs = weights / weights.sum()
        self.length = length
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch])
        which = rng.choice(len(self.datasets), size=self.length, p=self.probs)
        local = np.empty(self.length, dtype=np.int64)
        for s, ds in enumerate(self.datasets):
            rows = np.flatnonzero(which == s)
            if len(rows) and len(ds) == 0:
                raise ValueError(f"mixture source '{self.names[s]}' is empty but has a positive weight")
            reps = int(np.ceil(len(rows) / max(len(ds), 1)))
            order = np.concatenate([rng.permutation(len(ds)) for _ in range(reps)]) if reps else np.zeros(0, int)
            local[rows] = order[: len(rows)]
        self.schedule = np.stack([which, local], axis=1)
        for ds in self.datasets:
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        epoch, index = divmod(index, self.length)
        if epoch != self.epoch:
            self.set_epoch(epoch)
        s, i = self.schedule[index]
        return self.datasets[s][int(i)]
