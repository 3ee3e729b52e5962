"""Pixels of a scene: the exact boolean mask of each shape (:func:`shape_mask`, which the boxes are computed from),
the faintly textured background, and painting the objects in drawing order into RGB frames
(:func:`render_scene`) or an object-id map (:func:`label_map`), whole videos or chosen frames, from which
:func:`target_visible_fraction` measures how much of the target stays unoccluded."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from bridge_stg.data.synthetic.config import COLOURS_RGB, SHAPES, SyntheticConfig
from bridge_stg.data.synthetic.scene import Scene, SceneObject

_BACKGROUND_GREY = (35.0, 75.0)


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


def background(rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
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
