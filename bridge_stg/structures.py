"""Shared records. Frame ids are 0-based indices of decoded video frames unless a name says otherwise.

Shape letters, one meaning each across the model, data and loss code (a module's docstring lists those it uses; a
tensor's name ends in its shape, ``visual_BCVd``): B batch, L padded sequence length, T sampled frames, C = T/2
temporal chunks, V visual tokens per chunk (a decoded frame's candidate tokens), K bridging queries, S LLM layers read,
D LLM width, d decoder width, F frames sent to the spatial decoder, k tokens kept per frame, Ld decoder layers, P
motion probes, N a flat selection of rows gathered by a mask (which rows: the function's docstring says). The numpy
evaluation code has its own table (``eval/metrics.py``: S sentences, M GT box frames, Q predicted boxes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

FRAMES_PER_CHUNK = 2  # sampled frames per temporal chunk: Qwen2-VL's temporal patch size (C = T / 2)
SentenceType = Literal["declarative", "interrogative"]
TubeEndConvention = Literal["exclusive", "inclusive"]


@dataclass(frozen=True, eq=False)
class SentenceRecord:
    """One grounding query (one sentence) with its ground truth, independent of the source format.

    ``segment`` is the annotated video segment and ``tube`` the ground-truth span, both half-open ``[start, end)`` in
    0-based decoded-frame ids. ``box_frame_ids``/``boxes_xyxy_px`` hold every annotated box of the target (sorted
    frame ids, absolute pixels of the original frame); every frame of ``tube`` has one. ``tube`` is ``None`` for
    query-only files (no ground truth).

    Two facts about the source are kept so that protocols can reproduce published evaluators exactly:
    ``annotation_frame_base`` (1 when the source numbers frames from 1, as HC-STVG's ``st_frame``) and
    ``source_tube_end`` (whether the source wrote the tube's end number as exclusive, as VidSTG's
    ``temporal_gt.end_fid``, or inclusive).
    """

    sentence_id: int
    dataset: str
    video_id: str
    video_path: str
    fps: float
    frame_count: int
    width: int
    height: int
    segment: tuple[int, int]
    tube: tuple[int, int] | None
    query: str
    sentence_type: SentenceType | None = None
    target_id: int | None = None
    box_frame_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    boxes_xyxy_px: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.float64))
    annotation_frame_base: int = 0
    source_tube_end: TubeEndConvention = "exclusive"

    @property
    def has_ground_truth(self) -> bool:
        return self.tube is not None

    def boxes_on(self, frame_ids: np.ndarray) -> np.ndarray:
        """GT boxes ``[len(frame_ids), 4]`` on the given frames; every frame must carry an annotated box."""
        pos = np.searchsorted(self.box_frame_ids, frame_ids)
        pos = np.minimum(pos, len(self.box_frame_ids) - 1)
        if len(self.box_frame_ids) == 0 or not np.array_equal(self.box_frame_ids[pos], frame_ids):
            missing = np.setdiff1d(frame_ids, self.box_frame_ids)[:5].tolist()
            raise ValueError(f"sentence {self.sentence_id} ({self.video_id}): no GT box on frames {missing}")
        return self.boxes_xyxy_px[pos]


@dataclass(frozen=True, eq=False)
class TubePrediction:
    """A predicted tube for one sentence: a half-open span and boxes on some frames (absolute pixels, ``xyxy``).

    Optionally what the span was read from, for pictures (never scored): ``probabilities [T, 3]`` (start, end,
    inside) on the ``sampled_frame_ids [T]`` the model saw."""

    sentence_id: int
    span: tuple[int, int]
    frame_ids: np.ndarray
    boxes_xyxy_px: np.ndarray
    sampled_frame_ids: np.ndarray | None = None
    probabilities: np.ndarray | None = None


Task = Literal["tube", "temporal", "image"]


@dataclass(eq=False)
class GroundingSample:
    """One example after frame sampling, before tokenisation (what a dataset returns and the collator consumes).

    ``frames`` are already resized to the pixel budget (sides multiples of 28) and ``T`` is even (Qwen2-VL merges
    frame pairs into one temporal chunk). ``span`` is the target span in sampled-frame indices ``[s, e)``;
    ``boxes_cxcywh01`` are normalised to the frame, with ``box_mask`` marking frames that carry a GT box. What a
    sample lacks (``span is None``, no ``box_mask``) is simply not supervised: a temporal-only source has no boxes,
    an image source no span. ``frame_ids``/``orig_size`` map predictions back to the original video.
    """

    sample_id: str
    source: str
    task: Task
    sentence_id: int
    query: str
    frames: np.ndarray  # uint8 [T, H, W, 3]
    frame_ids: np.ndarray  # int64 [T] original frame ids
    timestamps_s: np.ndarray  # float64 [T] seconds since the first sampled frame's segment start
    fps: float  # sampled frames per second
    orig_size: tuple[int, int]  # (height, width) of the original frames
    span: tuple[int, int] | None
    boxes_cxcywh01: np.ndarray  # float32 [T, 4]; rows where box_mask is False are 0
    box_mask: np.ndarray  # bool [T]
    answer: str | None = None  # text target (LM loss, coupled baseline)

    @property
    def has_span(self) -> bool:
        return self.span is not None

    @property
    def has_boxes(self) -> bool:
        return bool(self.box_mask.any())
