"""What ``bridge-stg-ground`` writes for one grounded video: ``tube.json``, ``annotated.mp4``, ``timeline.png`` and
``contact_sheet.png`` (each function writes one, so the benchmark can time them apart).

The annotated video is streamed: frames are decoded, drawn on and encoded ``chunk_size`` at a time
(:func:`~bridge_stg.data.video_io.iter_frames`, :class:`~bridge_stg.data.video_io.VideoWriter`), never the whole
video in memory. The drawing is :mod:`bridge_stg.viz.figures`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bridge_stg.data.video_io import VideoWriter, iter_frames, read_frames
from bridge_stg.inference.ground_truth import GroundTruth, compare
from bridge_stg.inference.grounder import GroundedTube, VideoFrames
from bridge_stg.integrity import write_text_atomic
from bridge_stg.viz.figures import GT_COLOUR, PRED_COLOUR, Box, caption_frame, contact_sheet, save_png, timeline_figure

TUBE_FILE, VIDEO_FILE, TIMELINE_FILE, SHEET_FILE = "tube.json", "annotated.mp4", "timeline.png", "contact_sheet.png"
OUTPUT_FILES = (TUBE_FILE, VIDEO_FILE, TIMELINE_FILE, SHEET_FILE)
PROGRESS_MIN_FRAMES = 300  # a progress bar for videos longer than this (10 s at 30 fps)
VIDEO_OPTIONS = {"preset": "veryfast", "crf": "23"}  # libx264: a small file, fast to encode, visually clean
MIN_SHORT_SIDE = 360  # smaller videos are enlarged in annotated.mp4 (by a whole factor), so the text stays readable
WHITE, GREY = (255, 255, 255), (200, 200, 200)


def tube_document(tube: GroundedTube, gt: GroundTruth | None = None) -> dict[str, Any]:
    """``tube.json``'s content: the tube (:meth:`GroundedTube.to_json`), and with ``gt`` the ground truth and the
    comparison (:func:`~bridge_stg.inference.ground_truth.compare`)."""
    doc = tube.to_json()
    if gt is not None:
        doc["ground_truth"] = gt.to_json()
        doc["scores"] = compare(tube.span_frames, tube.boxes_by_frame(), gt)
    return doc


def write_tube_json(tube: GroundedTube, path: str | Path, gt: GroundTruth | None = None) -> Path:
    write_text_atomic(path, json.dumps(tube_document(tube, gt), indent=1) + "\n")
    return Path(path)


def write_timeline(tube: GroundedTube, path: str | Path, gt: GroundTruth | None = None) -> Path:
    """The start / end / inside probabilities of the sampled frames against time, the predicted span shaded (and the
    GT span hatched)."""
    title = f'"{tube.query}": predicted {tube.span_s[0]:.2f}-{tube.span_s[1]:.2f} s'
    if gt is not None:
        gs, ge = gt.span_s(tube.fps)
        title += f", GT {gs:.2f}-{ge:.2f} s"
    fig = timeline_figure(tube.sampled_times_s, tube.probabilities, tube.span_s,
                          gt.span_s(tube.fps) if gt is not None else None, title,
                          duration_s=tube.frame_count / tube.fps)
    return save_png(fig, path)


def sampled_frames(tube: GroundedTube, video: str | Path | VideoFrames | np.ndarray) -> dict[int, np.ndarray]:
    """The frames the model saw (``tube.sampled_frame_ids``, once each) at their original size."""
    ids = np.unique(tube.sampled_frame_ids)
    frames = _array(video)[ids] if not isinstance(video, str | Path) else read_frames(video, ids)
    return {int(f): frame for f, frame in zip(ids, frames)}


def write_contact_sheet(tube: GroundedTube, path: str | Path, frames: dict[int, np.ndarray] | None,
                        gt: GroundTruth | None = None, columns: int = 8, thumb_width: int = 160) -> Path:
    """The sampled frames in a grid with the predicted box (where the frame is in the span), the GT box (when
    given) and the time. ``frames`` as from :func:`sampled_frames` (``None``: grey canvases)."""
    ids = sorted(int(f) for f in np.unique(tube.sampled_frame_ids))
    pred = tube.boxes_by_frame()
    sheet = contact_sheet(None if frames is None else [frames[f] for f in ids], ids, tube.size_hw,
                          {f: pred[f] for f in ids if f in pred},
                          None if gt is None else {f: gt.boxes[f] for f in ids if f in gt.boxes},
                          [f / tube.fps for f in ids], columns=columns, thumb_width=thumb_width,
                          title=f'"{tube.query}"')
    return save_png(sheet, path)


def write_annotated_video(tube: GroundedTube, video: str | Path | VideoFrames | np.ndarray, path: str | Path,
                          gt: GroundTruth | None = None, chunk_size: int = 64, progress: bool = True,
                          keep_frame_ids: Iterable[int] = ()) -> dict[int, np.ndarray]:
    """Every frame of ``video`` with the sentence and the time on it, the predicted box on every frame of the span
    (orange) and the GT box where ``gt`` has one (cyan), encoded to ``path`` at the video's frame rate (a video whose
    shorter side is under :data:`MIN_SHORT_SIDE` pixels is enlarged by :func:`upscale_factor`). Streams
    ``chunk_size`` frames at a time; a tqdm bar on stderr when ``progress`` and the video has more than
    :data:`PROGRESS_MIN_FRAMES` frames. Returns the original frames of ``keep_frame_ids`` met on the way (the contact
    sheet's, so that they are not decoded twice)."""
    from tqdm import tqdm

    keep = {int(f) for f in keep_frame_ids}
    kept: dict[int, np.ndarray] = {}
    pred = tube.boxes_by_frame()
    bar = tqdm(total=tube.frame_count, unit="frame", desc="annotated.mp4", file=sys.stderr, leave=False,
               disable=not progress or tube.frame_count <= PROGRESS_MIN_FRAMES)
    frame_id, scale = 0, upscale_factor(tube.size_hw)
    with bar, VideoWriter(path, tube.fps, gop=max(1, round(2 * tube.fps)), options=VIDEO_OPTIONS) as writer:
        for chunk in _chunks(video, chunk_size):
            for frame in chunk:
                if frame_id in keep:
                    kept[frame_id] = frame.copy()  # a view would keep its whole chunk alive
                writer.write(_even(_annotate(frame, frame_id, tube, pred, gt, scale)))
                frame_id += 1
            bar.update(len(chunk))
    return kept


def upscale_factor(size_hw: tuple[int, int]) -> int:
    """How many times a small video is enlarged in the annotated copy, so that its shorter side reaches
    :data:`MIN_SHORT_SIDE` pixels and the sentence and time stay readable (1 for larger videos)."""
    return max(1, math.ceil(MIN_SHORT_SIDE / max(1, min(size_hw))))


def _annotate(frame: np.ndarray, frame_id: int, tube: GroundedTube, pred: dict[int, np.ndarray],
              gt: GroundTruth | None, scale: int) -> np.ndarray:
    if scale > 1:
        height, width = frame.shape[:2]
        frame = np.asarray(Image.fromarray(frame).resize((width * scale, height * scale), Image.BILINEAR))
    boxes: list[Box] = []
    if gt is not None and frame_id in gt.boxes:
        boxes.append((gt.boxes[frame_id] * scale, GT_COLOUR, "GT"))
    if frame_id in pred:
        boxes.append((pred[frame_id] * scale, PRED_COLOUR, "pred"))
    bottom = [(f"{frame_id / tube.fps:.2f} / {tube.frame_count / tube.fps:.2f} s", WHITE), (f"#{frame_id}", GREY)]
    if tube.span_frames[0] <= frame_id < tube.span_frames[1]:
        bottom.append(("pred span", PRED_COLOUR))
    if gt is not None and gt.span_frames[0] <= frame_id < gt.span_frames[1]:
        bottom.append(("GT span", GT_COLOUR))
    return caption_frame(frame, boxes, top=tube.query, bottom=bottom)


def _even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: an odd one gains a copy of its last row or column."""
    h, w = frame.shape[:2]
    return frame if not (h % 2 or w % 2) else np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _array(video: VideoFrames | np.ndarray) -> np.ndarray:
    return video.frames_NHW3 if isinstance(video, VideoFrames) else video


def _chunks(video: str | Path | VideoFrames | np.ndarray, chunk_size: int) -> Iterator[np.ndarray]:
    if isinstance(video, str | Path):
        yield from iter_frames(video, chunk_size)
        return
    frames = _array(video)
    for start in range(0, len(frames), chunk_size):
        yield frames[start : start + chunk_size]
