"""Drawing a scene: video ``index`` of a split gets its own random stream (:func:`scene_rng`), from which
:func:`make_scene` draws the target's attributes and distractors, the query's direction and the window, the
motion distractors' phases, the drawing order and the query text, redrawing until :func:`scene_problem` finds
nothing wrong (no other object matches the query, :func:`matches_query`; the target stays visible enough)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from bridge_stg.data.synthetic.config import (
    DIRECTION_PHRASES,
    DIRECTIONS,
    DISTRACTOR_KINDS,
    MOTION_ROLES,
    QUERY_TEMPLATES,
    SyntheticConfig,
)
from bridge_stg.data.synthetic.motion import make_object
from bridge_stg.data.synthetic.render import background, target_visible_fraction
from bridge_stg.data.synthetic.scene import Attributes, Phase, Scene, video_id


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
    objects = [make_object(rng, cfg, a, forced.get(i), direction if i == 0 else None) for i, a in enumerate(attrs)]
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
        background_rgb=background(rng, cfg),
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
