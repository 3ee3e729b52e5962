"""What a drawn video is: the frozen records :class:`Scene` (objects in drawing order, the target, its window and
query, the background), :class:`SceneObject` (attributes, motion script and per-frame box), :class:`Phase` and
:class:`Attributes`, and :func:`video_id`, the name of video ``index`` of a split. Pure data: how scenes are
sampled lives in :mod:`.sampling`, how they move in :mod:`.motion`, how they look in :mod:`.render`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
