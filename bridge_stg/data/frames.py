"""Which frames a model sees and at what size: training and inference budgets on top of the one sampling rule.

Frame ids always come from :func:`bridge_stg.ops.sampling.sample_frame_ids` (the rule the metrics use); the
budget only decides the fps, the cap, a random crop for training, the even count Qwen2-VL needs (it merges frame
pairs) and the pixel size (sides multiples of 28).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from bridge_stg.ops.sampling import sample_frame_ids

PATCH_MULTIPLE = 28  # Qwen2-VL: 14 px patches merged 2x2


@dataclass(frozen=True)
class FrameBudget:
    """How many frames at which size. ``fps`` is the sampling rate before the ``max_frames`` cap (even)."""

    fps: float = 2.0
    max_frames: int = 16
    max_pixels: int = 112 * 112
    min_pixels: int = 56 * 56
    crop_prob: float = 0.0  # training: probability of a random temporal crop that keeps the whole tube
    crop_min_fraction: float = 0.5  # the crop keeps at least this fraction of the segment

    def __post_init__(self) -> None:
        if self.max_frames < 2 or self.max_frames % 2:
            raise ValueError(f"max_frames must be even and >= 2 (Qwen2-VL merges frame pairs), got {self.max_frames}")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} > max_pixels {self.max_pixels}")


def make_even(frame_ids: np.ndarray) -> np.ndarray:
    """Repeat the last frame when the count is odd, so frames pair into Qwen2-VL's 2-frame chunks."""
    return np.append(frame_ids, frame_ids[-1]) if len(frame_ids) % 2 else frame_ids


def select_frames(window: tuple[int, int], video_fps: float, budget: FrameBudget) -> np.ndarray:
    """Frame ids the model sees for a stretch of frames (even count, ascending, duplicates only as padding): the
    segment, or in training the crop :func:`sample_window` drew. The rate never exceeds the video's own fps."""
    start, end = window
    fps = min(budget.fps, video_fps)
    return make_even(sample_frame_ids(start, end, video_fps, fps, budget.max_frames))


def sample_window(segment: tuple[int, int], budget: FrameBudget, tube: tuple[int, int] | None = None,
                  rng: np.random.Generator | None = None) -> tuple[int, int]:
    """The half-open stretch of frames a sample is drawn from: ``segment``, or with ``rng`` and probability
    ``budget.crop_prob`` a random sub-segment containing ``tube``. Its end closes the last sampled frame's interval
    (:func:`bridge_stg.ops.sampling.span_to_indices`)."""
    if rng is not None and budget.crop_prob > 0 and rng.random() < budget.crop_prob:
        return _random_crop(segment, tube, budget.crop_min_fraction, rng)
    return segment


def _random_crop(segment, tube, min_fraction, rng) -> tuple[int, int]:
    start, end = segment
    keep_start, keep_end = tube if tube is not None else (start, start + 1)
    min_len = max(int(math.ceil(min_fraction * (end - start))), keep_end - keep_start, 1)
    length = int(rng.integers(min_len, end - start + 1))
    lo, hi = max(start, keep_end - length), min(keep_start, end - length)
    crop_start = int(rng.integers(lo, hi + 1)) if hi >= lo else start
    return crop_start, crop_start + length


def fit_to_pixel_budget(height: int, width: int, min_pixels: int, max_pixels: int,
                        multiple: int = PATCH_MULTIPLE) -> tuple[int, int]:
    """(height, width) with sides multiples of ``multiple``, area within the budget, aspect ratio kept closely."""
    h = max(multiple, round(height / multiple) * multiple)
    w = max(multiple, round(width / multiple) * multiple)
    if h * w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        h = max(multiple, math.floor(height / scale / multiple) * multiple)
        w = max(multiple, math.floor(width / scale / multiple) * multiple)
    elif h * w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * scale / multiple) * multiple
        w = math.ceil(width * scale / multiple) * multiple
    return h, w


def resize_frames(frames: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` resized (bicubic) to ``size_hw``; returned as is when already that size."""
    if frames.shape[1:3] == tuple(size_hw):
        return frames
    h, w = size_hw
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])
