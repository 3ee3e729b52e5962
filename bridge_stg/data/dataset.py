"""Datasets of grounding samples: sentence records + videos (or images) -> :class:`GroundingSample`.

A source states which targets it carries: tube grounding (span and boxes), temporal-only grounding (span; records
without boxes) and image referring expressions (one image as a two-frame video; boxes, no span). Missing targets are
not supervised (the criterion skips them), never zero-filled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from bridge_stg.data.frames import FrameBudget, fit_to_pixel_budget, resize_frames, sample_window, select_frames
from bridge_stg.data.synthetic import SyntheticConfig, make_scene, render_scene, scene_record
from bridge_stg.data.video_io import VideoReadError, read_frames
from bridge_stg.ops.boxes import xyxy_to_cxcywh
from bridge_stg.ops.sampling import span_to_indices
from bridge_stg.structures import GroundingSample, SentenceRecord, Task
from bridge_stg.text.answers import format_answer

log = logging.getLogger(__name__)
STREAM_STRIDE = 1 << 32  # clips per seed in a synthetic stream: runs with different seeds never share a clip


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
    scale = [record.width, record.height, record.width, record.height]
    boxes[mask] = xyxy_to_cxcywh(record.boxes_xyxy_px[pos[mask]] / scale)
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
        path = self.media_root / record.video_path
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        if task_of(record) == "image":
            return make_sample(record, lambda _: np.stack([_read_image(path)] * 2), self.budget, self.source,
                               sample_id, with_answers=self.with_answers)
        return make_sample(record, partial(read_frames, path, expected_frame_count=record.frame_count), self.budget,
                           self.source, sample_id, rng=rng, with_answers=self.with_answers)


def make_sample(record: SentenceRecord, frames_for: Callable[[np.ndarray], np.ndarray], budget: FrameBudget,
                source: str, sample_id: str, rng: np.random.Generator | None = None,
                with_answers: bool = False) -> GroundingSample:
    """One :class:`GroundingSample` of ``record``, whatever stores its pixels: ``frames_for(frame_ids)`` returns the
    uint8 ``[T, H, W, 3]`` frames of those ids (a video reader, a renderer). ``rng`` enables the random temporal crop
    of ``budget`` (training). Image records (one frame) become a two-frame video of frame 0."""
    task = task_of(record)
    if task == "image":
        window, frame_ids = (0, 1), np.zeros(2, dtype=np.int64)
    else:
        window = sample_window(record.segment, budget, record.tube, rng)
        frame_ids = select_frames(window, record.fps, budget)
    frames = frames_for(frame_ids)
    size = fit_to_pixel_budget(frames.shape[1], frames.shape[2], budget.min_pixels, budget.max_pixels)
    tube = record.tube
    span = span_to_indices(tube, frame_ids, window[1]) if tube is not None and task != "image" else None
    boxes, mask = boxes_on_frames(record, frame_ids, tube if tube is not None else (0, 1))
    fps = record.fps if task == "image" else effective_fps(frame_ids, record.fps)
    answer = format_answer(span, boxes, mask) if with_answers and span is not None and mask.any() else None
    return GroundingSample(
        sample_id=sample_id, source=source, task=task, sentence_id=record.sentence_id, query=record.query,
        frames=resize_frames(frames, size), frame_ids=frame_ids,
        timestamps_s=(frame_ids - record.segment[0]) / max(record.fps, 1e-6) if task != "image"
        else np.zeros(2), fps=fps, orig_size=(record.height, record.width), span=span,
        boxes_cxcywh01=boxes, box_mask=mask, answer=answer)


class SyntheticStream(Dataset):
    """Fresh synthetic clips for training, rendered in the loader workers: item ``i`` is clip ``offset + i`` of the
    ``split`` stream of the world ``cfg`` (:func:`~bridge_stg.data.synthetic.make_scene`, the generator the mp4 writer
    uses), drawn directly at the sampled frames. Deterministic in ``(cfg.seed, split, offset + i)``; an index is
    never reused, so a run that reads indices ``0, 1, 2, ...`` (:class:`MixtureDataset` does, across epochs) never
    sees a clip twice. ``offset`` separates the streams of runs with different seeds (``seed * STREAM_STRIDE``).

    ``len()`` is the nominal epoch, the config's size of ``split``: an epoch of new clips as long as the fixed split.
    The clips skip H.264 (the fixed splits are mp4 files read back): pixels equal the renderer's, and the boxes and
    span are the same as the mp4 benchmark's for the same clip.
    """

    streaming = True  # MixtureDataset addresses it with run-unique indices instead of epoch permutations

    def __init__(self, cfg: SyntheticConfig, split: str, budget: FrameBudget, source: str, seed: int = 0,
                 train: bool = True, with_answers: bool = False):
        self.cfg, self.split, self.budget, self.source = cfg, split, budget, source
        self.offset = seed * STREAM_STRIDE
        self.train, self.with_answers = train, with_answers

    def __len__(self) -> int:
        return max(1, self.cfg.split_sizes.get(self.split, self.cfg.num_train))

    def __getitem__(self, index: int) -> GroundingSample:
        clip = self.offset + int(index)
        scene = make_scene(self.cfg, self.split, clip)
        record = scene_record(scene, self.cfg)
        rng = np.random.default_rng([self.cfg.seed, clip]) if self.train else None
        return make_sample(record, partial(render_scene, scene), self.budget, self.source,
                           f"{self.source}:{clip}", rng=rng, with_answers=self.with_answers)


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
    """Split a list of dataset items into the readable samples and the skipped ones, each in order (for the
    collation step's report)."""
    kept = [x for x in items if not isinstance(x, SkippedSample)]
    return kept, [x for x in items if isinstance(x, SkippedSample)]


class MixtureDataset(Dataset):
    """A weighted mixture of sources with a fixed length per epoch.

    The epoch's schedule draws ``length`` (source, index) pairs with probabilities proportional to the weights,
    deterministically from (seed, epoch); each source is walked through a per-epoch permutation so that nothing is
    drawn twice before the whole source has been seen; a streaming source (``streaming = True``, e.g.
    :class:`SyntheticStream`) gets the run-unique index ``epoch * length + row`` instead, so it never repeats an item
    within a run. An index ``>= length`` addresses a later epoch
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
            if getattr(ds, "streaming", False):  # every (epoch, row) its own clip: never repeats within a run
                local[rows] = epoch * self.length + rows
                continue
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
