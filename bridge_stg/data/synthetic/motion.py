"""How an object moves: its motion script (consecutive ``still`` or constant-velocity phases, one of them possibly
forced: the target's window or a motion distractor's phase) and the integer top-left position it implies on
every frame, with speeds chosen so that the object never leaves the frame; :func:`make_object` turns that into
a :class:`~bridge_stg.data.synthetic.scene.SceneObject` with its tight ``xyxy`` box per frame."""

from __future__ import annotations

import numpy as np

from bridge_stg.data.synthetic.config import DIRECTIONS, STILL, SyntheticConfig
from bridge_stg.data.synthetic.render import shape_mask
from bridge_stg.data.synthetic.scene import Attributes, Phase, SceneObject
from bridge_stg.ops.boxes import xywh_to_xyxy

_UNIT_XY = {STILL: (0.0, 0.0), "left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


def make_object(
    rng: np.random.Generator, cfg: SyntheticConfig, attrs: Attributes, forced: Phase | None, banned: str | None
) -> SceneObject:
    size_px = cfg.size_px[cfg.sizes.index(attrs.size)]
    mask = shape_mask(attrs.shape, size_px)
    hi_xy = np.array([cfg.width_px - mask.shape[1], cfg.height_px - mask.shape[0]], dtype=np.float64)
    phases, topleft_xy = _trajectory(rng, cfg, hi_xy, forced, banned)
    wh_px = np.broadcast_to(np.array([mask.shape[1], mask.shape[0]], dtype=np.float64), topleft_xy.shape)
    boxes = xywh_to_xyxy(np.concatenate([topleft_xy, wh_px], axis=1))
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
