"""What the tiny backbone is pretrained on: video-text pairs of the synthetic training world (the CPU stand-in for
the instruction-tuned checkpoint a real run starts from; ``bridge_stg.engine.pretrain`` runs it).

**A sample** is one fresh clip of a training-world stream, sampled like a grounding sample (the same frame budget),
with a request naming one of its objects, ``"track the small red square"``, and after every two-frame chunk the
text the model learns to write there: how that object moves during the chunk and where it is,
``" to the left 3,7;\\n"`` (a direction phrase, then the cell of its box centre on a 10 x 10 grid of the frame).
Direction phrases alternate between synonyms ("up" / "upwards", "left" / "to the left"), as real text does, so
that the words a query may use are all grounded in motion. The texts name objects by their attributes (colour and
shape, plus the size when another object shares both), never by a query of the grounding benchmark: no text says
when an object moves "while" or "as" anything, and the evaluation splits are never drawn.

**Token targets** ``[C, V, 4]`` (int64) say, for every visual LLM token (a 28 x 28 px cell of a chunk), which
object fills the cell most over the chunk's two frames (at least ``min_pixels`` of it) by its colour, shape, size
and motion during the chunk, each as ``1 + index`` (0: no object). They supervise the backbone's visual states
directly (``bridge_stg.model.pretraining``): the miniature of a vision tower that was pretrained before the
LLM met it. Measured on 2 cores: with captions alone, a from-scratch tiny backbone still reads the first chunk's
direction at chance after 15 minutes; with token targets its visual states separate colour, size and motion within
5 minutes and the captions follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from bridge_stg.data.dataset import effective_fps
from bridge_stg.data.frames import FrameBudget, fit_to_pixel_budget, resize_frames, select_frames
from bridge_stg.data.synthetic import (
    COLOURS_RGB,
    SHAPES,
    STILL,
    Scene,
    SyntheticConfig,
    label_map,
    make_scene,
    render_scene,
)
from bridge_stg.ops.boxes import xyxy_to_cxcywh
from bridge_stg.structures import FRAMES_PER_CHUNK

MOTIONS = (STILL, "left", "right", "up", "down")
MOTION_PHRASES = {
    STILL: ("still", "stays still"),
    "left": ("left", "to the left"),
    "right": ("right", "to the right"),
    "up": ("up", "upwards"),
    "down": ("down", "downwards"),
}
POSITION_CELLS = 10  # the caption's position grid per side
TARGET_FIELDS = ("colour", "shape", "size", "motion")


@dataclass(eq=False)
class CaptionSample:
    """One pretraining example: frames like a :class:`~bridge_stg.structures.GroundingSample`'s, the request, one
    caption per chunk (what the model learns to write after that chunk) and the token targets."""

    sample_id: str
    frames: np.ndarray  # uint8 [T, H, W, 3], resized to the budget
    timestamps_s: np.ndarray  # float64 [T]
    fps: float
    request: str
    chunk_texts: list[str]  # C = T / 2 captions
    token_targets: np.ndarray  # int64 [C, V, 4]: colour, shape, size, motion of the object in each token, 0: none


def object_phrase(scene: Scene, index: int) -> str:
    """The object's attributes as a referring phrase: colour and shape, plus the size when another object shares
    both (so the phrase picks out exactly one object)."""
    attrs = scene.objects[index].attributes
    twin = any(o.attributes.colour == attrs.colour and o.attributes.shape == attrs.shape
               for j, o in enumerate(scene.objects) if j != index)
    return " ".join(([attrs.size] if twin else []) + [attrs.colour, attrs.shape])


def chunk_motions(boxes_xyxy_px: np.ndarray, frame_ids: np.ndarray, min_shift_px: float = 0.5) -> list[str]:
    """Per two-frame chunk, the direction (one of :data:`MOTIONS`) of the box centre's move from the chunk's first
    sampled frame to its second: the larger axis decides, and a move under ``min_shift_px`` is ``still``."""
    centres = xyxy_to_cxcywh(boxes_xyxy_px[frame_ids])[:, :2]
    motions = []
    for c in range(len(frame_ids) // FRAMES_PER_CHUNK):
        dx, dy = centres[FRAMES_PER_CHUNK * c + 1] - centres[FRAMES_PER_CHUNK * c]
        if max(abs(dx), abs(dy)) < min_shift_px:
            motions.append(STILL)
        elif abs(dx) >= abs(dy):
            motions.append("right" if dx > 0 else "left")
        else:
            motions.append("down" if dy > 0 else "up")
    return motions


def track_captions(scene: Scene, index: int, frame_ids: np.ndarray, rng: np.random.Generator) -> list[str]:
    """The per-chunk captions of object ``index``: a motion phrase (a random synonym) and its grid cell."""
    boxes = scene.objects[index].boxes_xyxy_px
    height, width = scene.background_rgb.shape[:2]
    captions = []
    for c, motion in enumerate(chunk_motions(boxes, frame_ids)):
        cx, cy = xyxy_to_cxcywh(boxes[frame_ids[FRAMES_PER_CHUNK * c]])[:2]
        col = min(POSITION_CELLS - 1, int(cx / width * POSITION_CELLS))
        row = min(POSITION_CELLS - 1, int(cy / height * POSITION_CELLS))
        phrases = MOTION_PHRASES[motion]
        captions.append(f" {phrases[rng.integers(len(phrases))]} {col},{row};\n")
    return captions


def target_classes(cfg: SyntheticConfig) -> tuple[int, ...]:
    """Number of classes of each of :data:`TARGET_FIELDS`, the "no object" class 0 included."""
    return 1 + len(COLOURS_RGB), 1 + len(SHAPES), 1 + len(cfg.sizes), 1 + len(MOTIONS)


def token_targets(scene: Scene, frame_ids: np.ndarray, cfg: SyntheticConfig, cell_px: int = 28,
                  min_pixels: int = 30) -> np.ndarray:
    """``[C, V, 4]`` targets of :data:`TARGET_FIELDS` per chunk and token cell (row-major ``cell_px`` cells of the
    clip's own pixels), ``1 + index`` of the value, 0 where no object covers ``min_pixels`` of the cell's pixels
    over the chunk's two frames."""
    labels = label_map(scene, frame_ids)  # [T, H, W], -1: background
    t, height, width = labels.shape
    rows, cols = height // cell_px, width // cell_px
    attrs = [o.attributes for o in scene.objects]
    values = np.array([[1 + list(COLOURS_RGB).index(a.colour), 1 + SHAPES.index(a.shape), 1 + cfg.sizes.index(a.size)]
                       for a in attrs], dtype=np.int64)
    motions = np.array([[1 + MOTIONS.index(m) for m in chunk_motions(o.boxes_xyxy_px, frame_ids)]
                        for o in scene.objects], dtype=np.int64)  # [objects, C]
    cells = labels[:, : rows * cell_px, : cols * cell_px].reshape(t // 2, 2, rows, cell_px, cols, cell_px)
    cells = cells.transpose(0, 2, 4, 1, 3, 5).reshape(t // 2, rows * cols, -1)  # [C, V, pixels of both frames]
    counts = np.stack([(cells == i).sum(-1) for i in range(len(attrs))], axis=-1)  # [C, V, objects]
    owner, covered = counts.argmax(-1), counts.max(-1) >= min_pixels
    out = np.zeros((t // 2, rows * cols, len(TARGET_FIELDS)), dtype=np.int64)
    out[..., :3] = values[owner]
    out[..., 3] = motions[owner, np.arange(t // 2)[:, None]]
    out[~covered] = 0
    return out


class PretrainStream(Dataset):
    """Fresh :class:`CaptionSample` s of the ``split`` stream of the training world ``cfg``, deterministic in
    ``(cfg.seed, split, seed, index)``; ``len()`` is nominal (indices never wrap). The split must not be an
    evaluation split: the caller names its own stream (``"pretrain"``)."""

    def __init__(self, cfg: SyntheticConfig, split: str, budget: FrameBudget, seed: int = 0,
                 forbidden_splits: Sequence[str] = ("val", "test")):
        if split in forbidden_splits:
            raise ValueError(f"pretraining may not draw the evaluation split {split!r}; name its own stream")
        self.cfg, self.split, self.budget, self.seed = cfg, split, budget, seed

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, index: int) -> CaptionSample:
        scene = make_scene(self.cfg, self.split, int(index))
        frame_ids = select_frames((0, self.cfg.frame_count), self.cfg.fps, self.budget)
        rng = np.random.default_rng([self.cfg.seed, self.seed, int(index)])
        target = int(rng.integers(len(scene.objects)))
        frames = render_scene(scene, frame_ids)
        size = fit_to_pixel_budget(frames.shape[1], frames.shape[2], self.budget.min_pixels, self.budget.max_pixels)
        if size != frames.shape[1:3]:
            raise ValueError(f"pretraining renders clips at their own size ({frames.shape[2]}x{frames.shape[1]}): "
                             f"the frame budget would resize them to {size[1]}x{size[0]}; use sides that are "
                             "multiples of 28 within the budget")
        return CaptionSample(
            sample_id=f"{self.split}:{index}", frames=resize_frames(frames, size),
            timestamps_s=frame_ids / self.cfg.fps, fps=effective_fps(frame_ids, self.cfg.fps),
            request=f"track the {object_phrase(scene, target)}",
            chunk_texts=track_captions(scene, target, frame_ids, rng),
            token_targets=token_targets(scene, frame_ids, self.cfg))
