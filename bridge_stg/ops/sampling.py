"""The frame-sampling rule. Training, inference and every metric call this one function.

Frame ids are indices of decoded frames of the original video (0-based). Segments are half-open ``[start, end)``.
"""

from __future__ import annotations

import numpy as np

EVAL_FPS = 5.0
EVAL_MAX_FRAMES = 200


def sample_frame_ids(
    start: int, end: int, video_fps: float, fps: float = EVAL_FPS, max_frames: int | None = EVAL_MAX_FRAMES
) -> np.ndarray:
    """Frame ids of ``[start, end)`` kept when resampling a ``video_fps`` video at ``fps``.

    This is the reference (TubeDETR) rule, bit for bit: frame ``f`` is kept when
    ``int(f * fps / video_fps)`` exceeds that of the last kept frame, the first frame is always kept, and when more than
    ``max_frames`` remain they are thinned to ``ids[(j * n) // max_frames]``. Returns int64 ids, ascending.

    Raises ``ValueError`` when ``fps > video_fps`` (the rule only downsamples) or the segment is empty.
    """
    if end <= start:
        raise ValueError(f"empty segment [{start}, {end}): the end frame must be greater than the start frame")
    rate = fps / video_fps
    if rate > 1:
        raise ValueError(
            f"sampling fps {fps} is above the video's fps {video_fps}: the rule only downsamples; lower the fps"
        )
    frames = np.arange(start, end, dtype=np.int64)
    # float64 multiply then truncation: the same IEEE arithmetic as Python's int(f * rate) for f >= 0.
    bins = (frames * rate).astype(np.int64)
    keep = np.empty(len(frames), dtype=bool)
    keep[0] = True
    keep[1:] = bins[1:] != bins[:-1]
    ids = frames[keep]
    if max_frames is not None and len(ids) > max_frames:
        n = len(ids)
        ids = ids[(np.arange(max_frames, dtype=np.int64) * n) // max_frames]
    return ids
