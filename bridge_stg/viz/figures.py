"""Drawing primitives for predictions: boxes on frames, captioned video frames, contact sheets, span timelines.

Used by ``bridge-stg-ground`` (:mod:`bridge_stg.inference.outputs`) and the HTML report (:mod:`bridge_stg.viz.report`).
Imports only numpy, PIL, matplotlib and the shared rules (``tests/test_layering.py``), so that drawing never pulls
in a model or a dataset. Boxes are ``xyxy`` in pixels of the original frame; colours are RGB tuples. Matplotlib is
used without pyplot (no global figure state, no display: the Agg canvas).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["GT_COLOUR", "PRED_COLOUR", "Box", "caption_frame", "contact_sheet", "draw_boxes", "save_png",
           "timeline_figure"]

PRED_COLOUR: tuple[int, int, int] = (255, 140, 0)  # orange: the prediction, everywhere
GT_COLOUR: tuple[int, int, int] = (0, 215, 255)  # cyan: the ground truth
SPAN_COLOURS = {"start": "#1f77b4", "end": "#d62728", "inside": "#2ca02c"}
Box = tuple[Sequence[float], tuple[int, int, int], str | None]  # (xyxy_px, rgb colour, label or None)


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """PIL's bundled font at ``size`` pixels (a bitmap font when PIL was built without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):
        return ImageFont.load_default()


def _line_width(height: int, width: int) -> int:
    return max(2, round(min(height, width) / 160))


def _text_colour(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``rgb``."""
    return (0, 0, 0) if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else (255, 255, 255)


def _draw_boxes_on(draw: ImageDraw.ImageDraw, boxes: Sequence[Box], height: int, width: int, scale: float = 1.0,
                   font_size: int | None = None) -> None:
    line = _line_width(height, width)
    font = _font(font_size or max(10, round(min(height, width) / 32)))
    placed: list[tuple[float, float, float, float]] = []  # label patches drawn so far
    for xyxy, colour, label in boxes:
        x1, y1, x2, y2 = (float(v) * scale for v in xyxy)
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            continue
        draw.rectangle([x1, y1, x2, y2], outline=tuple(colour), width=line)
        if label:
            left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
            tw, th = right - left, bottom - top
            pw, ph = tw + 2 * line, th + 2 * line
            tx = min(max(x1, 0), max(width - pw, 0))
            # above the box; inside its top when the frame ends there; under it when another label took the place
            ty = y1 - ph if y1 - ph >= 0 else y1 + line
            if any(tx < r and tx + pw > q and ty < b and ty + ph > t for q, t, r, b in placed):
                ty = min(y2 + line, height - ph)
            placed.append((tx, ty, tx + pw, ty + ph))
            draw.rectangle([tx, ty, tx + pw, ty + ph], fill=tuple(colour))
            draw.text((tx + line - left, ty + line - top), label, fill=_text_colour(tuple(colour)), font=font)


def draw_boxes(frame_rgb: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """A copy of the uint8 ``[H, W, 3]`` frame with each ``(xyxy_px, rgb_colour, label | None)`` box drawn: an outline
    of about ``min(H, W) / 160`` pixels and the label on a patch of the box's colour above its top-left corner."""
    image = Image.fromarray(np.ascontiguousarray(frame_rgb, dtype=np.uint8))
    _draw_boxes_on(ImageDraw.Draw(image), boxes, image.height, image.width)
    return np.asarray(image)


def _fit_lines(draw: ImageDraw.ImageDraw, text: str, font: Any, max_width: int, max_lines: int) -> list[str]:
    """``text`` wrapped to ``max_width`` pixels in at most ``max_lines`` lines (the last one cut with an ellipsis)."""
    average = max(draw.textlength("abcdefghijklmnopqrstuvwxyz", font=font) / 26, 1.0)
    lines = textwrap.wrap(text, width=max(8, int(max_width / average))) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1].rstrip() + " …"
    while any(draw.textlength(x, font=font) > max_width for x in lines):
        lines = [x if draw.textlength(x, font=font) <= max_width else x[: max(len(x) - 4, 1)] + "…" for x in lines]
    return lines


@lru_cache(maxsize=64)
def _wrapped(text: str, size: int, max_width: int, max_lines: int) -> tuple[str, ...]:
    """:func:`_fit_lines` in the bundled font at ``size``, cached: a video's every frame wraps the same sentence."""
    return tuple(_fit_lines(ImageDraw.Draw(Image.new("RGB", (1, 1))), text, _font(size), max_width, max_lines))


def caption_frame(frame_rgb: np.ndarray, boxes: Sequence[Box], top: str | None = None,
                  bottom: Sequence[tuple[str, tuple[int, int, int]]] = ()) -> np.ndarray:
    """A copy of the frame with its boxes (:func:`draw_boxes`), ``top`` (the sentence; at most two lines) on a darkened
    band at the top and the ``bottom`` pieces of ``(text, rgb colour)`` side by side on a band at the bottom (the
    time, whether the frame is in the predicted span)."""
    frame = np.array(frame_rgb, dtype=np.uint8, copy=True)
    height, width = frame.shape[:2]
    size = max(10, round(min(height, width) / 26))
    font, pad = _font(size), max(2, size // 3)
    line_h = size + pad
    lines = list(_wrapped(top, size, width - 2 * pad, 2)) if top else []
    top_h = len(lines) * line_h + pad if lines else 0
    bottom_h = line_h + pad if bottom else 0
    for rows in (slice(0, top_h), slice(height - bottom_h, height)):  # darken the bands in numpy: cheap per frame
        if rows.stop > rows.start:
            frame[rows] = (frame[rows].astype(np.uint16) * 2 // 5).astype(np.uint8)
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    _draw_boxes_on(draw, boxes, height, width)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * line_h), line, fill=(255, 255, 255), font=font)
    x = pad
    for text, colour in bottom:  # side by side; what does not fit the width is left out
        length = int(draw.textlength(text, font=font))
        if x + length > width - pad:
            break
        draw.text((x, height - bottom_h + pad // 2), text, fill=tuple(colour), font=font)
        x += length + 2 * size
    return np.asarray(image)


def contact_sheet(frames_rgb: Sequence[np.ndarray] | np.ndarray | None, frame_ids: Sequence[int],
                  size_hw: tuple[int, int], pred_boxes: Mapping[int, Sequence[float]],
                  gt_boxes: Mapping[int, Sequence[float]] | None, times_s: Sequence[float], columns: int = 8,
                  thumb_width: int = 160, title: str | None = None) -> Image.Image:
    """The frames ``frame_ids`` in a grid of ``columns``, each ``thumb_width`` pixels wide (the aspect of
    ``size_hw = (height, width)``), with its predicted box (orange, from ``pred_boxes[frame_id]``; none where the
    frame has none, e.g. outside the predicted span) and its GT box (cyan, when ``gt_boxes`` has one), and its time
    and frame id below. A frame with a predicted box gets an orange bar under it (inside the predicted span).
    ``frames_rgb is None`` draws on grey canvases of the right aspect (boxes still drawn); ``title`` (optional) and a
    colour key head the sheet."""
    if len(frame_ids) != len(times_s) or (frames_rgb is not None and len(frames_rgb) != len(frame_ids)):
        raise ValueError(f"{len(frame_ids)} frame ids, {len(times_s)} times and "
                         f"{'no' if frames_rgb is None else len(frames_rgb)} frames: give one of each per frame")
    height, width = size_hw
    if height <= 0 or width <= 0 or columns < 1 or thumb_width < 8:
        raise ValueError(f"size_hw {size_hw}, columns {columns}, thumb_width {thumb_width}: need positive sizes")
    thumb_h = max(1, round(thumb_width * height / width))
    scale = thumb_width / width
    font = _font(max(10, thumb_width // 13))
    caption_h = (font.size if hasattr(font, "size") else 10) + 8
    gap, bar = 6, 4
    header: list[tuple[str, tuple[int, int, int]]] = []
    if title:
        header.append((title, (30, 30, 30)))
    key = [("prediction", PRED_COLOUR)] + ([("ground truth", GT_COLOUR)] if gt_boxes is not None else [])
    head_h = (len(header) + 1) * (caption_h + 2) + gap
    rows = max(1, math.ceil(len(frame_ids) / columns))
    cols = min(columns, max(1, len(frame_ids)))
    sheet_w = cols * thumb_width + (cols + 1) * gap
    cell_h = thumb_h + bar + caption_h
    sheet = Image.new("RGB", (sheet_w, head_h + rows * (cell_h + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = gap
    for text, colour in header:
        draw.text((gap, y), _fit_lines(draw, text, font, sheet_w - 2 * gap, 1)[0], fill=colour, font=font)
        y += caption_h + 2
    x, swatch = gap, caption_h - 8
    for text, colour in key:  # a drawn swatch: the bundled font has no square glyph
        draw.rectangle([x, y + 2, x + swatch, y + 2 + swatch], outline=colour, width=max(2, swatch // 5))
        x += swatch + gap
        draw.text((x, y), text, fill=colour, font=font)
        x += int(draw.textlength(text, font=font)) + 3 * gap
    for i, (frame_id, t) in enumerate(zip(frame_ids, times_s)):
        r, c = divmod(i, columns)
        left, top = gap + c * (thumb_width + gap), head_h + r * (cell_h + gap)
        if frames_rgb is None:
            thumb = Image.new("RGB", (thumb_width, thumb_h), (150, 150, 150))
        else:
            thumb = Image.fromarray(np.asarray(frames_rgb[i], dtype=np.uint8)).resize((thumb_width, thumb_h),
                                                                                      Image.BILINEAR)
        boxes: list[Box] = []
        if gt_boxes is not None and int(frame_id) in gt_boxes:
            boxes.append((gt_boxes[int(frame_id)], GT_COLOUR, None))
        if int(frame_id) in pred_boxes:
            boxes.append((pred_boxes[int(frame_id)], PRED_COLOUR, None))
        _draw_boxes_on(ImageDraw.Draw(thumb), boxes, thumb_h, thumb_width, scale=scale)
        sheet.paste(thumb, (left, top))
        if int(frame_id) in pred_boxes:
            draw.rectangle([left, top + thumb_h, left + thumb_width - 1, top + thumb_h + bar - 1], fill=PRED_COLOUR)
        draw.text((left + 2, top + thumb_h + bar + 2), f"{float(t):.1f} s · #{int(frame_id)}", fill=(30, 30, 30),
                  font=font)
    return sheet


def timeline_figure(times_s: Sequence[float] | np.ndarray, probabilities: np.ndarray | None,
                    pred_span_s: tuple[float, float], gt_span_s: tuple[float, float] | None, title: str,
                    duration_s: float | None = None) -> Figure:
    """Per sampled frame (at ``times_s``) the start, end and inside probabilities (``probabilities [T, 3]``; ``None``:
    the spans only), the predicted span shaded orange and the GT span (when given) hatched cyan, against time in
    seconds up to ``duration_s`` (default: the latest time shown). A matplotlib ``Figure`` on the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    times = np.asarray(times_s, dtype=np.float64).reshape(-1)
    fig = Figure(figsize=(8.0, 2.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    handles = [Patch(facecolor=np.array(PRED_COLOUR) / 255, alpha=0.35, label="predicted span")]
    ax.axvspan(*pred_span_s, color=np.array(PRED_COLOUR) / 255, alpha=0.3, lw=0)
    if gt_span_s is not None:
        ax.axvspan(*gt_span_s, facecolor="none", edgecolor=np.array(GT_COLOUR) / 255 * 0.8, hatch="///", lw=1.5)
        handles.append(Patch(facecolor="none", edgecolor=np.array(GT_COLOUR) / 255 * 0.8, hatch="///",
                             label="GT span"))
    if probabilities is not None:
        probs = np.asarray(probabilities, dtype=np.float64).reshape(len(times), 3)
        for column, name in enumerate(("start", "end", "inside")):
            (line,) = ax.plot(times, probs[:, column], marker="o", ms=3, lw=1.4, color=SPAN_COLOURS[name],
                              label=f"P({name})")
            handles.append(line)
        ax.set_ylabel("probability")
    ax.plot(times, np.full(len(times), -0.03), "|", color="0.4", ms=6)  # the sampled frames
    ends = [float(times.max(initial=0.0)), pred_span_s[1], *(gt_span_s[1:] if gt_span_s else ()), duration_s or 0.0]
    ax.set_xlim(min(0.0, float(times.min(initial=0.0))), max(ends) or 1.0)
    ax.set_ylim(-0.06, 1.3)  # the legend sits above the probabilities
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0] if probabilities is not None else [])
    ax.set_xlabel("time (s)")
    ax.set_title("\n".join(textwrap.wrap(title, 110)[:2]), fontsize=9)
    ax.legend(handles=handles, loc="upper center", fontsize=8, framealpha=0.9, ncol=len(handles))
    ax.grid(alpha=0.25)
    fig.tight_layout()
    return fig


def save_png(fig_or_image: Figure | Image.Image, path: str | Path) -> Path:
    """Write a matplotlib figure or a PIL image as PNG to ``path`` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(fig_or_image, Image.Image):
        fig_or_image.save(path, format="PNG", optimize=True)
    else:
        fig_or_image.savefig(path, format="png", dpi=fig_or_image.dpi)
    return path
