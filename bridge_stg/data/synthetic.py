"""The synthetic STVG benchmark: videos of moving 2-D shapes, one referring query each, written as real mp4 files
and real-format annotations. It is the embedded default dataset the project trains and tests on.

**A video.** ``frame_count = round(seconds * fps)`` frames of ``height_px x width_px`` on a grey, lightly textured
background, holding ``objects`` shapes (a colour, a shape, a size each). Every object follows a motion script of
consecutive phases, each ``still`` or constant-velocity motion ``left``/``right``/``up``/``down``; speeds are chosen
so that no object ever reaches past the frame (no clamping, no bouncing), and at least 1 px per frame so that every
frame of a moving phase shows motion. A phase ``[start, end)`` moves its object from frame ``f - 1`` to frame ``f``
for every ``f`` in it (frame 0 has no predecessor), so frame ``f >= 1`` lies in a ``left`` phase iff the box moved
left between frames ``f - 1`` and ``f``.

**A query** names the target by its attributes and one direction ("the small red square while it moves to the
left", three templates). The target has exactly one phase in that direction: it is the ground-truth tube (the
window), lasting ``window_fraction`` of the clip (10-30 % by default: short, so that whole-clip guesses score low);
its other phases are ``still`` or other directions. Distractors make both halves of the query necessary: each
shares attributes with the target (same shape other colour, same colour other shape, same colour and shape other
size), one moves in the query's direction at a time disjoint from the window and another during it. The size word
is said only when another object has the target's colour and shape (as a referring expression would), so no other
object matches every attribute the query names (checked). The target keeps ``min_target_visible_01`` of its pixels
visible on every frame (drawing order is random; scenes failing a check are redrawn).

**Ground truth.** The target's tight pixel box on every frame (``xyxy``, continuous pixel edges: a shape covering
pixel columns ``x0..x1-1`` spans ``[x0, x1)``), drawn with pixel-exact masks; the tube is the window.

**Determinism.** Video ``i`` of split ``s`` is drawn from its own stream ``SeedSequence([seed, crc32(s), i])``:
splits are independent, a split of n videos is the prefix of a longer one, and regeneration gives identical records,
frames and annotation files. Colours are converted to YUV here and x264 runs on one thread, which makes the mp4
bytes identical across runs of one PyAV/x264 build (another build may encode differently, decoding to nearly equal
frames).

**Files** written by :func:`generate_benchmark` under ``out_dir``::

    benchmark.json                                   config, split sizes, file layout (skip-regeneration key)
    videos/<split>/syn_<split>_<i:05d>.mp4           H.264, yuv420p, GOP ``gop`` frames, no B-frames
    annotations/vidstg/<split>_annotations.json      VidSTG official sentence file (dataset "vidstg")
    annotations/vidor/<split>/<video_id>.json        VidOR box files: the target's box on every frame
    annotations/hcstvg/<split>.json                  HC-STVG v1, only for 20 s clips

The VidSTG copies of the records say ``sentence_type="declarative"`` (the format needs a type; the queries are
declarative phrases). HC-STVG assumes 20 s clips and stores no frame rate (readers take ``fps = img_num / 20``), so
it is written only when ``frame_count / fps == 20`` (the default); its copies are 1-based (``annotation_frame_base=1``,
inclusive tube end), have no ``target_id`` and carry boxes on the tube frames only. :func:`load_split` reads a split
back.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from bridge_stg.annotations import load_annotations, write_hcstvg, write_vidstg_official
from bridge_stg.annotations.hcstvg import CLIP_SECONDS
from bridge_stg.data.video_io import write_video
from bridge_stg.structures import SentenceRecord

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
_UNIT_XY = {STILL: (0.0, 0.0), "left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
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
_BACKGROUND_GREY = (35.0, 75.0)


# ------------------------------------------------------------------------------------------------------ config


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


# ------------------------------------------------------------------------------------------------------ scenes


@dataclass(frozen=True)
class Phase:
    """A motion phase over frames ``[start_frame, end_frame)``; ``direction`` is ``"still"`` or one of DIRECTIONS."""

    start_frame: int
    end_frame: int
    direction: str


@dataclass(frozen=True)
class Attributes:
    colour: str
    shape: str
    size: str


@dataclass(frozen=True, eq=False)
class SceneObject:
    """One drawn object: its attributes, motion script and tight box ``[frame_count, 4]`` (``xyxy``, pixels)."""

    attributes: Attributes
    size_px: int
    phases: tuple[Phase, ...]
    boxes_xyxy_px: np.ndarray


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything about one synthetic video. ``objects`` are in drawing order (later ones on top); the target is
    ``objects[target_id]``; ``window`` is its phase in ``direction`` (half-open frame ids)."""

    split: str
    index: int
    objects: tuple[SceneObject, ...]
    target_id: int
    direction: str
    window: tuple[int, int]
    query: str
    mentions_size: bool
    background_rgb: np.ndarray  # uint8 [H, W, 3]

    @property
    def video_id(self) -> str:
        return video_id(self.split, self.index)


def video_id(split: str, index: int) -> str:
    return f"syn_{split}_{index:05d}"


def scene_rng(cfg: SyntheticConfig, split: str, index: int) -> np.random.Generator:
    """The random stream of video ``index`` of ``split``: independent of every other video and split."""
    return np.random.default_rng(np.random.SeedSequence([cfg.seed, zlib.crc32(split.encode()), index]))


def make_scene(cfg: SyntheticConfig, split: str, index: int, max_attempts: int = 200) -> Scene:
    """Draw video ``index`` of ``split`` (deterministic); redraws scenes that fail :func:`scene_problem`."""
    rng = scene_rng(cfg, split, index)
    for _ in range(max_attempts):
        scene = _draw_scene(rng, cfg, split, index)
        if scene_problem(scene, cfg) is None:
            return scene
    raise RuntimeError(f"{video_id(split, index)}: no acceptable scene in {max_attempts} draws "
                       f"(last: {scene_problem(scene, cfg)}); the frame is too crowded for objects={cfg.objects}, "
                       f"size_px={cfg.size_px}, min_target_visible_01={cfg.min_target_visible_01}")


def scene_problem(scene: Scene, cfg: SyntheticConfig) -> str | None:
    """Why ``scene`` is unusable (another object matches the query, the target is too hidden), or None."""
    target = scene.objects[scene.target_id].attributes
    for i, obj in enumerate(scene.objects):
        if i != scene.target_id and matches_query(obj.attributes, target, scene.mentions_size):
            return f"object {i} matches the query '{scene.query}' too"
    visible_01 = target_visible_fraction(scene, cfg)
    if visible_01.min() < cfg.min_target_visible_01:
        return f"target only {visible_01.min():.2f} visible on frame {int(visible_01.argmin())}"
    return None


def matches_query(obj: Attributes, target: Attributes, mentions_size: bool) -> bool:
    """Whether ``obj`` has every attribute a query naming ``target`` says (size only when mentioned)."""
    same = obj.colour == target.colour and obj.shape == target.shape
    return same and (not mentions_size or obj.size == target.size)


def _draw_scene(rng: np.random.Generator, cfg: SyntheticConfig, split: str, index: int) -> Scene:
    n_objects = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    attrs = _sample_attributes(rng, cfg, n_objects)
    direction = DIRECTIONS[rng.integers(len(DIRECTIONS))]
    window = _sample_span(rng, cfg, 0, cfg.frame_count)
    forced = _motion_roles(rng, cfg, n_objects, window, direction)
    objects = [_make_object(rng, cfg, a, forced.get(i), direction if i == 0 else None) for i, a in enumerate(attrs)]
    order = rng.permutation(n_objects)
    target_id = int(np.flatnonzero(order == 0)[0])
    mentions_size = any(a.colour == attrs[0].colour and a.shape == attrs[0].shape for a in attrs[1:])
    return Scene(
        split=split,
        index=index,
        objects=tuple(objects[i] for i in order),
        target_id=target_id,
        direction=direction,
        window=window,
        query=_query_text(rng, attrs[0], direction, mentions_size),
        mentions_size=mentions_size,
        background_rgb=_background(rng, cfg),
    )


def _pick(rng: np.random.Generator, names: Sequence[str], exclude: str | None = None) -> str:
    options = [n for n in names if n != exclude]
    return options[rng.integers(len(options))]


def _sample_attributes(rng: np.random.Generator, cfg: SyntheticConfig, n_objects: int) -> list[Attributes]:
    """Attributes of the target (first) and its distractors, which take the kinds of DISTRACTOR_KINDS in random
    order (those the config allows), then "random" (anything without the target's colour and shape)."""
    target = Attributes(_pick(rng, cfg.colours), _pick(rng, cfg.shapes), _pick(rng, cfg.sizes))
    kinds = [k for k in DISTRACTOR_KINDS if k != "same_colour_shape" or len(cfg.sizes) > 1]
    kinds = [kinds[i] for i in rng.permutation(len(kinds))] + ["random"] * n_objects
    return [target] + [_distractor(rng, cfg, target, kind) for kind in kinds[: n_objects - 1]]


def _distractor(rng: np.random.Generator, cfg: SyntheticConfig, target: Attributes, kind: str) -> Attributes:
    if kind == "same_shape":
        return Attributes(_pick(rng, cfg.colours, target.colour), target.shape, _pick(rng, cfg.sizes))
    if kind == "same_colour":
        return Attributes(target.colour, _pick(rng, cfg.shapes, target.shape), _pick(rng, cfg.sizes))
    if kind == "same_colour_shape":
        return Attributes(target.colour, target.shape, _pick(rng, cfg.sizes, target.size))
    colour = _pick(rng, cfg.colours)
    shape = _pick(rng, cfg.shapes, target.shape if colour == target.colour else None)
    return Attributes(colour, shape, _pick(rng, cfg.sizes))


def _sample_span(rng: np.random.Generator, cfg: SyntheticConfig, lo: int, hi: int) -> tuple[int, int]:
    """A window-length span inside ``[lo, hi)`` (shortened to fit when needed), uniformly placed."""
    length = min(int(rng.integers(cfg.window_frames[0], cfg.window_frames[1] + 1)), hi - lo)
    start = int(rng.integers(lo, hi - length + 1))
    return start, start + length


def _motion_roles(
    rng: np.random.Generator, cfg: SyntheticConfig, n_objects: int, window: tuple[int, int], direction: str
) -> dict[int, Phase]:
    """Forced phases per object index (0 = target): the target's window and the motion distractors' phases."""
    forced = {0: Phase(window[0], window[1], direction)}
    distractors = rng.permutation(np.arange(1, n_objects))
    for role, obj in zip(MOTION_ROLES[: cfg.motion_distractors], distractors):
        span = _other_time_span(rng, cfg, window) if role == "other_time" else _same_time_span(rng, cfg, window)
        forced[int(obj)] = Phase(span[0], span[1], direction)
    return forced


def _other_time_span(rng: np.random.Generator, cfg: SyntheticConfig, window: tuple[int, int]) -> tuple[int, int]:
    """A span disjoint from ``window``, before or after it (the longer side when only one fits)."""
    n = cfg.frame_count
    sides = [(0, window[0]), (window[1], n)]
    fits = [s for s in sides if s[1] - s[0] >= cfg.window_frames[0]]
    lo, hi = fits[rng.integers(len(fits))] if fits else max(sides, key=lambda s: s[1] - s[0])
    return _sample_span(rng, cfg, lo, hi)


def _same_time_span(rng: np.random.Generator, cfg: SyntheticConfig, window: tuple[int, int]) -> tuple[int, int]:
    """A window-length span overlapping ``window``."""
    length = int(rng.integers(cfg.window_frames[0], cfg.window_frames[1] + 1))
    lo, hi = max(0, window[0] - length + 1), min(window[1] - 1, cfg.frame_count - length)
    start = int(rng.integers(lo, hi + 1))
    return start, start + length


def _query_text(rng: np.random.Generator, target: Attributes, direction: str, mentions_size: bool) -> str:
    words = ([target.size] if mentions_size else []) + [target.colour, target.shape]
    template = QUERY_TEMPLATES[rng.integers(len(QUERY_TEMPLATES))]
    phrases = DIRECTION_PHRASES[direction]
    return template.format(object=" ".join(words), direction=phrases[rng.integers(len(phrases))])


# ------------------------------------------------------------------------------------------------------ motion


def _make_object(
    rng: np.random.Generator, cfg: SyntheticConfig, attrs: Attributes, forced: Phase | None, banned: str | None
) -> SceneObject:
    size_px = cfg.size_px[cfg.sizes.index(attrs.size)]
    mask = shape_mask(attrs.shape, size_px)
    hi_xy = np.array([cfg.width_px - mask.shape[1], cfg.height_px - mask.shape[0]], dtype=np.float64)
    phases, topleft_xy = _trajectory(rng, cfg, hi_xy, forced, banned)
    x0, y0 = topleft_xy[:, 0], topleft_xy[:, 1]
    boxes = np.stack([x0, y0, x0 + mask.shape[1], y0 + mask.shape[0]], axis=1).astype(np.float64)
    boxes.flags.writeable = False
    return SceneObject(attrs, size_px, phases, boxes)


def _trajectory(
    rng: np.random.Generator, cfg: SyntheticConfig, hi_xy: np.ndarray, forced: Phase | None, banned: str | None
) -> tuple[tuple[Phase, ...], np.ndarray]:
    """Phases and integer top-left positions ``[frame_count, 2]`` in ``[0, hi_xy]``.

    The walk starts at the forced phase (placed where it fits), goes forward to the last frame and backward to
    frame 0; each free phase takes a direction (never ``banned``, never its walk-neighbour's) whose speed fits the
    room left in the frame. ``vel[f]`` is the displacement from frame ``f - 1`` to ``f``.
    """
    n = cfg.frame_count
    vel_xy = np.zeros((n, 2))
    if forced is None:
        start_xy = end_xy = rng.uniform(0.0, hi_xy)
        before, after, prev = [], _partition(rng, cfg, 0, n), None
    else:
        start_xy, end_xy = _place_forced(rng, cfg, hi_xy, forced, vel_xy)
        before, after = _partition(rng, cfg, 0, forced.start_frame), _partition(rng, cfg, forced.end_frame, n)
        prev = forced.direction
    later, _ = _walk(rng, cfg, after, end_xy, hi_xy, vel_xy, banned, prev, backward=False)
    earlier, first_xy = _walk(rng, cfg, before[::-1], start_xy, hi_xy, vel_xy, banned, prev, backward=True)
    phases = tuple(earlier[::-1]) + ((forced,) if forced is not None else ()) + tuple(later)
    pos_xy = first_xy + np.cumsum(vel_xy, axis=0)
    topleft_xy = np.clip(np.floor(pos_xy + 0.5), 0.0, hi_xy)  # floor(x + .5): a >= 1 px step never rounds to 0
    return phases, topleft_xy


def _partition(rng: np.random.Generator, cfg: SyntheticConfig, start: int, end: int) -> list[tuple[int, int]]:
    """``[start, end)`` cut into consecutive spans of ``phase_frames`` length (the last one may be longer)."""
    lo, hi = cfg.phase_frames
    spans = []
    while start < end:
        length = int(rng.integers(lo, hi + 1))
        if end - start - length < lo:
            length = end - start
        spans.append((start, start + length))
        start += length
    return spans


def _steps(start_frame: int, end_frame: int) -> int:
    """Frame-to-frame moves inside ``[start_frame, end_frame)`` (frame 0 has no predecessor)."""
    return end_frame - max(start_frame, 1)


def _place_forced(
    rng: np.random.Generator, cfg: SyntheticConfig, hi_xy: np.ndarray, phase: Phase, vel_xy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fill ``vel_xy`` over ``phase`` and return its start and end positions, placed so the move fits the frame."""
    unit_xy = np.array(_UNIT_XY[phase.direction])
    axis = int(np.flatnonzero(unit_xy)[0])
    steps = _steps(phase.start_frame, phase.end_frame)
    v_min, v_max = cfg.speed_px_per_frame
    speed = rng.uniform(v_min, max(v_min, min(v_max, hi_xy[axis] / max(steps, 1))))
    travel = speed * steps
    start_xy = rng.uniform(0.0, hi_xy)
    lo = travel if unit_xy[axis] < 0 else 0.0
    start_xy[axis] = rng.uniform(lo, lo + hi_xy[axis] - travel)
    vel_xy[max(phase.start_frame, 1): phase.end_frame] = unit_xy * speed
    return start_xy, start_xy + unit_xy * travel


def _walk(
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    spans: list[tuple[int, int]],
    pos_xy: np.ndarray,
    hi_xy: np.ndarray,
    vel_xy: np.ndarray,
    banned: str | None,
    prev: str | None,
    backward: bool,
) -> tuple[list[Phase], np.ndarray]:
    """Give each span (in walk order) a direction and speed, writing ``vel_xy``; returns the phases and the position
    where the walk ends (frame 0's when walking backward). ``prev`` is the direction of the phase the walk leaves."""
    phases, sign = [], -1.0 if backward else 1.0
    for start, end in spans:
        steps = _steps(start, end)
        direction, speed = _choose_motion(rng, cfg, pos_xy, hi_xy, steps, sign, {banned, prev})
        unit_xy = np.array(_UNIT_XY[direction])
        vel_xy[max(start, 1): end] = unit_xy * speed
        pos_xy = pos_xy + sign * unit_xy * speed * steps
        phases.append(Phase(start, end, direction))
        prev = direction
    return phases, pos_xy


def _choose_motion(
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    pos_xy: np.ndarray,
    hi_xy: np.ndarray,
    steps: int,
    sign: float,
    excluded: set[str | None],
) -> tuple[str, float]:
    """A direction not in ``excluded`` whose move of ``steps`` frames at >= the minimum speed stays in the frame
    (walking backward, ``sign = -1``, the room is counted the other way), and a speed in ``px/frame``. ``still`` is
    always possible and is the fallback when nothing else fits."""
    v_min, v_max = cfg.speed_px_per_frame
    options: list[tuple[str, float]] = [] if STILL in excluded else [(STILL, 0.0)]
    for direction in DIRECTIONS if steps > 0 else ():
        if direction in excluded:
            continue
        unit_xy = sign * np.array(_UNIT_XY[direction])
        axis = int(np.flatnonzero(unit_xy)[0])
        room_px = hi_xy[axis] - pos_xy[axis] if unit_xy[axis] > 0 else pos_xy[axis]
        cap = min(v_max, room_px / steps)
        if cap >= v_min:
            options.append((direction, cap))
    if not options:
        return STILL, 0.0
    direction, cap = options[rng.integers(len(options))]
    return direction, (rng.uniform(v_min, cap) if direction != STILL else 0.0)


# ----------------------------------------------------------------------------------------------------- drawing


@functools.lru_cache(maxsize=64)
def shape_mask(shape: str, size_px: int) -> np.ndarray:
    """Read-only boolean mask of ``shape`` drawn in a ``size_px`` square, cropped to its tight box (so the mask
    touches all four sides: boxes computed from it are exact)."""
    yy, xx = np.mgrid[0:size_px, 0:size_px] + 0.5  # pixel centres
    half = size_px / 2
    if shape == "square":
        mask = np.ones((size_px, size_px), dtype=bool)
    elif shape == "circle":
        mask = (xx - half) ** 2 + (yy - half) ** 2 <= half**2
    elif shape == "triangle":  # apex up, base on the bottom edge
        mask = np.abs(xx - half) <= yy / 2
    else:
        raise ValueError(f"unknown shape '{shape}'; choose from {list(SHAPES)}")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    mask = mask[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1].copy()
    mask.flags.writeable = False
    return mask


def _background(rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """A grey frame with two faint random plane waves (``texture_amplitude`` grey levels peak to peak)."""
    yy, xx = np.mgrid[0:cfg.height_px, 0:cfg.width_px] / max(cfg.height_px, cfg.width_px)
    grey = np.full(yy.shape, rng.uniform(*_BACKGROUND_GREY))
    for _ in range(2):
        fx, fy = rng.uniform(-3.0, 3.0, size=2)
        grey += cfg.texture_amplitude / 4 * np.sin(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))
    rgb = np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    rgb.flags.writeable = False
    return rgb


def _paint(canvas: np.ndarray, obj: SceneObject, value: Any, frame_ids: np.ndarray | None = None) -> None:
    """Set ``canvas[i]`` (``[N, H, W, ...]``) to ``value`` under ``obj``'s mask as it is on frame ``frame_ids[i]``
    (every frame when None), in one indexing op."""
    dy, dx = np.nonzero(shape_mask(obj.attributes.shape, obj.size_px))
    boxes = obj.boxes_xyxy_px if frame_ids is None else obj.boxes_xyxy_px[frame_ids]
    x0 = boxes[:, 0].astype(np.int64)
    y0 = boxes[:, 1].astype(np.int64)
    frame_idx = np.arange(len(x0))[:, None]
    canvas[frame_idx, y0[:, None] + dy, x0[:, None] + dx] = value


def render_scene(scene: Scene, frame_ids: np.ndarray | None = None) -> np.ndarray:
    """The video's frames, uint8 ``[T, H, W, 3]`` RGB; with ``frame_ids`` only those frames (``[N, H, W, 3]``),
    pixel-identical to the same rows of the whole video (what the streaming training source draws)."""
    count = len(scene.objects[0].boxes_xyxy_px) if frame_ids is None else len(frame_ids)
    frames = np.repeat(scene.background_rgb[None], count, axis=0)
    for obj in scene.objects:
        _paint(frames, obj, COLOURS_RGB[obj.attributes.colour], frame_ids)
    return frames


def label_map(scene: Scene, frame_ids: np.ndarray | None = None) -> np.ndarray:
    """Which object is visible at each pixel, int8 ``[T, H, W]`` (-1: background); with ``frame_ids`` only those
    frames (``[N, H, W]``)."""
    height, width = scene.background_rgb.shape[:2]
    count = len(scene.objects[0].boxes_xyxy_px) if frame_ids is None else len(frame_ids)
    labels = np.full((count, height, width), -1, dtype=np.int8)
    for i, obj in enumerate(scene.objects):
        _paint(labels, obj, i, frame_ids)
    return labels


def target_visible_fraction(scene: Scene, cfg: SyntheticConfig) -> np.ndarray:
    """Fraction of the target's pixels not hidden by objects drawn above it, per frame ``[T]``."""
    target = scene.objects[scene.target_id]
    if scene.target_id == len(scene.objects) - 1:
        return np.ones(len(target.boxes_xyxy_px))
    visible = (label_map(scene) == scene.target_id).sum(axis=(1, 2))
    return visible / shape_mask(target.attributes.shape, target.size_px).sum()


def encode_mp4(path: Path, frames_rgb: np.ndarray, fps: float, crf: int, gop: int) -> None:
    """Write uint8 ``[T, H, W, 3]`` frames as a reproducible H.264 mp4 (:func:`~bridge_stg.data.video_io.write_video`
    with ``reproducible_crf``). The file appears atomically (written beside, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    # the frame rate with a denominator of at most 10^5, as the benchmark's files have always stored it
    write_video(tmp, frames_rgb, Fraction(fps).limit_denominator(100_000), gop=gop, reproducible_crf=crf,
                container_format="mp4")
    tmp.replace(path)


# -------------------------------------------------------------------------------------------------- generation


def scene_record(scene: Scene, cfg: SyntheticConfig) -> SentenceRecord:
    """The scene's sentence record (``dataset="synthetic"``): target boxes on every frame, tube = window."""
    target = scene.objects[scene.target_id]
    n = cfg.frame_count
    frame_ids = np.arange(n, dtype=np.int64)
    frame_ids.flags.writeable = False
    return SentenceRecord(
        sentence_id=scene.index,
        dataset=DATASET,
        video_id=scene.video_id,
        video_path=f"{scene.split}/{scene.video_id}.mp4",
        fps=float(cfg.fps),
        frame_count=n,
        width=cfg.width_px,
        height=cfg.height_px,
        segment=(0, n),
        tube=(int(scene.window[0]), int(scene.window[1])),
        query=scene.query,
        sentence_type=None,
        target_id=int(scene.target_id),
        box_frame_ids=frame_ids,
        boxes_xyxy_px=target.boxes_xyxy_px,
        annotation_frame_base=0,
        source_tube_end="exclusive",
    )


def generate_split(
    cfg: SyntheticConfig, split: str, out_dir: Path | str, num_videos: int | None = None
) -> list[SentenceRecord]:
    """Write ``out_dir/videos/<split>/<video_id>.mp4`` for videos ``0..num_videos-1`` and return their records.

    ``num_videos`` defaults to the config's size of ``split``; record ``i`` has ``sentence_id == i`` and
    ``video_path`` relative to ``out_dir/videos``.
    """
    if num_videos is None:
        if split not in cfg.split_sizes:
            raise ValueError(f"split '{split}' has no size in the config; pass num_videos")
        num_videos = cfg.split_sizes[split]
    video_dir = Path(out_dir) / "videos"
    records = []
    for index in range(num_videos):
        scene = make_scene(cfg, split, index)
        record = scene_record(scene, cfg)
        encode_mp4(video_dir / record.video_path, render_scene(scene), cfg.fps, cfg.crf, cfg.gop)
        records.append(record)
    return records


def to_vidstg_record(record: SentenceRecord) -> SentenceRecord:
    """The record as the VidSTG reader returns it from the written files (declarative sentence)."""
    return dataclasses.replace(record, dataset="vidstg", sentence_type="declarative")


def to_hcstvg_record(record: SentenceRecord) -> SentenceRecord:
    """The record as the HC-STVG v1 reader returns it: boxes on the tube frames only, 1-based source numbering,
    no target id (the format has one target per video)."""
    assert record.tube is not None
    start, end = record.tube
    keep = (record.box_frame_ids >= start) & (record.box_frame_ids < end)
    return dataclasses.replace(record, dataset="hcstvg_v1", sentence_type=None, target_id=None,
                               box_frame_ids=record.box_frame_ids[keep], boxes_xyxy_px=record.boxes_xyxy_px[keep],
                               annotation_frame_base=1, source_tube_end="inclusive")


def annotation_paths(out_dir: Path | str, split: str) -> dict[str, Path]:
    """Where :func:`generate_benchmark` writes a split's annotations (keys: vidstg, vidor_dir, hcstvg)."""
    root = Path(out_dir) / "annotations"
    return {"vidstg": root / "vidstg" / f"{split}_annotations.json", "vidor_dir": root / "vidor" / split,
            "hcstvg": root / "hcstvg" / f"{split}.json"}


def write_split_annotations(records: Sequence[SentenceRecord], cfg: SyntheticConfig, out_dir: Path | str,
                            split: str) -> None:
    """Write a split's records in the VidSTG (+ VidOR) format and, for 20 s clips, in the HC-STVG v1 format."""
    paths = annotation_paths(out_dir, split)
    vidor_dir = paths["vidor_dir"]
    write_vidstg_official([to_vidstg_record(r) for r in records], paths["vidstg"], vidor_dir.parent,
                          vidor_group=vidor_dir.name)
    if cfg.writes_hcstvg:
        write_hcstvg([to_hcstvg_record(r) for r in records], paths["hcstvg"], version=1)


def load_split(out_dir: Path | str, split: str) -> list[SentenceRecord]:
    """A generated split's records (``dataset="synthetic"``), read back from its VidSTG + VidOR files."""
    paths = annotation_paths(out_dir, split)
    records, _ = load_annotations(paths["vidstg"], "vidstg", vidor_dir=paths["vidor_dir"])
    return [dataclasses.replace(r, dataset=DATASET, sentence_type=None) for r in records]


def _manifest(cfg: SyntheticConfig, split_sizes: Mapping[str, int]) -> dict:
    return json.loads(json.dumps({
        "version": MANIFEST_VERSION,
        "config": dataclasses.asdict(cfg),
        "splits": dict(split_sizes),
        "formats": ["vidstg"] + (["hcstvg_v1"] if cfg.writes_hcstvg else []),
        "layout": {"videos": "videos/<split>/<video_id>.mp4", "vidstg": "annotations/vidstg/<split>_annotations.json",
                   "vidor_dir": "annotations/vidor/<split>", "hcstvg": "annotations/hcstvg/<split>.json"},
    }))


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def generate_benchmark(
    cfg: SyntheticConfig,
    out_dir: Path | str,
    splits: Mapping[str, int] | None = None,
    *,
    overwrite: bool = False,
) -> dict[str, list[SentenceRecord]]:
    """Generate every split (``{name: num_videos}``, default the config's sizes) with its videos and annotation
    files, then ``out_dir/benchmark.json``. When that file already describes the same config and splits (and
    ``overwrite`` is False) nothing is written and the records are read back from the annotations.

    ``benchmark.json`` is removed first and written last, so an interrupted run regenerates. Files of an earlier,
    larger benchmark in the same folder are not deleted (the annotation files say which videos belong).
    """
    out_dir = Path(out_dir)
    split_sizes = dict(cfg.split_sizes if splits is None else splits)
    manifest = _manifest(cfg, split_sizes)
    manifest_path = out_dir / "benchmark.json"
    if not overwrite and _read_manifest(manifest_path) == manifest:
        return {split: load_split(out_dir, split) if n else [] for split, n in split_sizes.items()}
    manifest_path.unlink(missing_ok=True)
    records = {}
    for split, num_videos in split_sizes.items():
        records[split] = generate_split(cfg, split, out_dir, num_videos)
        if records[split]:
            write_split_annotations(records[split], cfg, out_dir, split)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return records


# --------------------------------------------------------------------------------------------------------- CLI


def add_synth_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``bridge-stg-data synth`` (defaults: :class:`SyntheticConfig`)."""
    d = SyntheticConfig()
    parser.add_argument("--out", type=Path, required=True, help="benchmark folder (videos/, annotations/, "
                                                                   "benchmark.json)")
    parser.add_argument("--train", type=int, default=d.num_train, help="training videos (one query each)")
    parser.add_argument("--val", type=int, default=d.num_val, help="validation videos")
    parser.add_argument("--test", type=int, default=d.num_test, help="test videos")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--seconds", type=float, default=d.seconds,
                        help="clip length; HC-STVG files are written only for 20 s clips")
    parser.add_argument("--fps", type=float, default=d.fps)
    parser.add_argument("--width", type=int, default=d.width_px, help="frame width in pixels (even)")
    parser.add_argument("--height", type=int, default=d.height_px, help="frame height in pixels (even)")
    parser.add_argument("--objects", type=int, nargs=2, default=list(d.objects), metavar=("MIN", "MAX"),
                        help="objects per video, target included")
    parser.add_argument("--window-fraction", type=float, nargs=2, default=list(d.window_fraction),
                        metavar=("MIN", "MAX"), help="target window length as a fraction of the clip")
    parser.add_argument("--overwrite", action="store_true", help="regenerate even when benchmark.json matches")
    return parser


def config_from_args(args: argparse.Namespace) -> SyntheticConfig:
    return SyntheticConfig(num_train=args.train, num_val=args.val, num_test=args.test, seed=args.seed,
                           seconds=args.seconds, fps=args.fps, width_px=args.width, height_px=args.height,
                           objects=tuple(args.objects), window_fraction=tuple(args.window_fraction))


def run_synth(args: argparse.Namespace) -> int:
    """Generate the benchmark described by parsed :func:`add_synth_arguments` options; 0 on success, 2 on a bad
    option (the message goes to stderr)."""
    try:
        cfg = config_from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    records = generate_benchmark(cfg, args.out, overwrite=args.overwrite)
    counts = ", ".join(f"{split} {len(recs)}" for split, recs in records.items())
    print(f"synthetic benchmark in {args.out}: {counts} videos ({time.perf_counter() - started:.1f} s)")
    return 0
