"""The benchmark's vocabulary and knobs: the file-format constants (``DATASET``, ``MANIFEST_VERSION``), the words
a scene is built from (colours, shapes, directions, query templates, distractor kinds, motion roles) and
:class:`SyntheticConfig`, every setting of the benchmark with its validation (a bad value raises ``ValueError``
on construction) and the frame counts derived from it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bridge_stg.annotations.hcstvg import CLIP_SECONDS

DATASET = "synthetic"
MANIFEST_VERSION = 1
COLOURS_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "white": (240, 240, 240),
    "purple": (165, 60, 205),
}
SHAPES = ("square", "circle", "triangle")
STILL = "still"
DIRECTIONS = ("left", "right", "up", "down")
QUERY_TEMPLATES = (
    "the {object} while it moves {direction}",
    "find the {object} when it is moving {direction}",
    "the {object} as it goes {direction}",
)
DIRECTION_PHRASES = {
    "left": ("left", "to the left"),
    "right": ("right", "to the right"),
    "up": ("up", "upwards"),
    "down": ("down", "downwards"),
}
# How a distractor relates to the target; the first three are used before any "random" one.
DISTRACTOR_KINDS = ("same_shape", "same_colour", "same_colour_shape")
# Distractors given a phase in the query's direction, in this order: disjoint from the window, overlapping it.
MOTION_ROLES = ("other_time", "same_time")


@dataclass(frozen=True)
class SyntheticConfig:
    """Every knob of the benchmark (validated on construction: a bad value raises ``ValueError``).

    ``num_*`` are the split sizes :func:`generate_benchmark` uses by default. ``objects`` is the (min, max) number of
    objects per video, target included; ``motion_distractors`` of them (at most 2, see ``MOTION_ROLES``) get a phase
    in the query's direction. ``window_fraction`` bounds the target's window and ``phase_fraction`` every other
    motion phase, as fractions of the clip. ``size_px[i]`` is the side of the square that size ``sizes[i]`` is
    drawn in; colours are names of ``COLOURS_RGB``. ``min_target_visible_01`` is the fraction of the target's
    pixels that must stay unoccluded on every frame; ``texture_amplitude`` the background's peak-to-peak grey-level
    variation (0: plain); ``crf`` and ``gop`` the x264 quality and keyframe interval.
    """

    num_train: int = 1000
    num_val: int = 100
    num_test: int = 200
    seconds: float = 20.0
    fps: float = 5.0
    width_px: int = 112
    height_px: int = 112
    objects: tuple[int, int] = (3, 4)
    motion_distractors: int = 2
    window_fraction: tuple[float, float] = (0.10, 0.30)
    phase_fraction: tuple[float, float] = (0.08, 0.25)
    speed_px_per_s: tuple[float, float] = (6.0, 16.0)
    colours: tuple[str, ...] = tuple(COLOURS_RGB)
    shapes: tuple[str, ...] = SHAPES
    sizes: tuple[str, ...] = ("small", "large")
    size_px: tuple[int, ...] = (12, 22)
    min_target_visible_01: float = 0.6
    texture_amplitude: float = 10.0
    crf: int = 18
    gop: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def frame_count(self) -> int:
        return round(self.seconds * self.fps)

    @property
    def split_sizes(self) -> dict[str, int]:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}

    @property
    def window_frames(self) -> tuple[int, int]:
        """(min, max) length of a window in frames."""
        return _fraction_frames(self.window_fraction, self.frame_count)

    @property
    def phase_frames(self) -> tuple[int, int]:
        return _fraction_frames(self.phase_fraction, self.frame_count)

    @property
    def speed_px_per_frame(self) -> tuple[float, float]:
        return self.speed_px_per_s[0] / self.fps, self.speed_px_per_s[1] / self.fps

    @property
    def writes_hcstvg(self) -> bool:
        """HC-STVG files are written only for 20 s clips (the format's fps is ``frame_count / 20``)."""
        return math.isclose(self.fps, self.frame_count / CLIP_SECONDS, rel_tol=1e-9)


def _fraction_frames(fraction: tuple[float, float], frame_count: int) -> tuple[int, int]:
    return max(2, math.ceil(fraction[0] * frame_count - 1e-9)), max(2, math.floor(fraction[1] * frame_count + 1e-9))


def _validate(cfg: SyntheticConfig) -> None:
    def fail(problem: str) -> ValueError:
        return ValueError(f"SyntheticConfig: {problem}")

    if min(cfg.num_train, cfg.num_val, cfg.num_test) < 0:
        raise fail("split sizes must be >= 0")
    if cfg.seed < 0:
        raise fail(f"seed must be >= 0, got {cfg.seed}")
    if not (cfg.seconds > 0 and cfg.fps > 0 and cfg.frame_count >= 10):
        raise fail(f"{cfg.seconds} s at {cfg.fps} fps: need positive values and at least 10 frames")
    if cfg.width_px % 2 or cfg.height_px % 2 or min(cfg.width_px, cfg.height_px) < 32:
        raise fail(f"frame {cfg.width_px}x{cfg.height_px}: sides must be even (yuv420p) and >= 32 px")
    if not 1 <= cfg.objects[0] <= cfg.objects[1]:
        raise fail(f"objects {cfg.objects} must be (min, max) with 1 <= min <= max")
    if not 0 <= cfg.motion_distractors <= len(MOTION_ROLES):
        raise fail(f"motion_distractors must be 0..{len(MOTION_ROLES)}")
    if not 0 < cfg.window_fraction[0] <= cfg.window_fraction[1] <= 0.5:
        raise fail(f"window_fraction {cfg.window_fraction} must satisfy 0 < min <= max <= 0.5 (a distractor "
                   "moves in the query's direction outside the window)")
    if not 0 < cfg.phase_fraction[0] <= cfg.phase_fraction[1]:
        raise fail(f"phase_fraction {cfg.phase_fraction} must satisfy 0 < min <= max")
    if not cfg.fps <= cfg.speed_px_per_s[0] <= cfg.speed_px_per_s[1]:
        raise fail(f"speed_px_per_s {cfg.speed_px_per_s} must satisfy fps ({cfg.fps}) <= min <= max, so that "
                   "every frame of a moving phase moves at least 1 px")
    _validate_attributes(cfg, fail)
    room_px = min(cfg.width_px, cfg.height_px) - max(cfg.size_px)
    if room_px < cfg.speed_px_per_frame[0] * cfg.window_frames[1]:
        raise fail(f"the largest object ({max(cfg.size_px)} px) cannot move {cfg.window_frames[1]} frames at "
                   f"{cfg.speed_px_per_frame[0]:.2f} px/frame inside the frame: use larger frames, smaller sizes, "
                   "shorter windows or a lower minimum speed")
    if not 0 <= cfg.min_target_visible_01 <= 1:
        raise fail("min_target_visible_01 must lie in [0, 1]")


def _validate_attributes(cfg: SyntheticConfig, fail) -> None:
    unknown = set(cfg.colours) - set(COLOURS_RGB)
    if unknown or len(cfg.colours) < 2 or len(set(cfg.colours)) != len(cfg.colours):
        raise fail(f"colours {cfg.colours}: need >= 2 distinct names from {list(COLOURS_RGB)}")
    if set(cfg.shapes) - set(SHAPES) or len(cfg.shapes) < 2 or len(set(cfg.shapes)) != len(cfg.shapes):
        raise fail(f"shapes {cfg.shapes}: need >= 2 distinct names from {list(SHAPES)}")
    if not cfg.sizes or len(cfg.sizes) != len(cfg.size_px) or len(set(cfg.sizes)) != len(cfg.sizes):
        raise fail(f"sizes {cfg.sizes} and size_px {cfg.size_px} must be equally long, distinct and non-empty")
    if min(cfg.size_px) < 6:
        raise fail(f"size_px {cfg.size_px}: shapes need >= 6 px to be told apart")
