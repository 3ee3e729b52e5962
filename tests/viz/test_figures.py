"""The drawing primitives: boxes land where they should, sheets and timelines have the promised layout."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bridge_stg.viz.figures import (
    GT_COLOUR,
    PRED_COLOUR,
    caption_frame,
    contact_sheet,
    draw_boxes,
    save_png,
    timeline_figure,
)


def has_colour(image: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    return bool((np.abs(image.astype(int) - np.array(rgb)).max(-1) == 0).any())


def test_draw_boxes_outlines_on_a_copy():
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    out = draw_boxes(frame, [((20, 30, 80, 90), PRED_COLOUR, "pred"), ((100, 10, 150, 60), GT_COLOUR, None)])
    assert frame.max() == 0 and out.shape == frame.shape  # the input is untouched
    assert tuple(out[60, 20]) == PRED_COLOUR and tuple(out[60, 50]) == (0, 0, 0)  # outline, not filled
    assert tuple(out[35, 100]) == GT_COLOUR
    assert has_colour(out[:30, 20:80], PRED_COLOUR)  # the label patch above the box


def test_caption_frame_keeps_the_size_and_darkens_the_bands():
    frame = np.full((240, 320, 3), 200, dtype=np.uint8)
    out = caption_frame(frame, [((10, 60, 100, 160), PRED_COLOUR, None)], top="the red circle",
                        bottom=[("1.00 s / 2.00 s", (255, 255, 255))])
    assert out.shape == frame.shape and out[2, -2].max() < 100 and out[-2, -2].max() < 100
    assert tuple(out[120, 120]) == (200, 200, 200)


def test_contact_sheet_without_frames_draws_boxes_on_grey(tmp_path):
    sheet = contact_sheet(None, [0, 5, 10], (90, 160), {5: (10, 10, 60, 60)}, {5: (20, 20, 80, 70)},
                          [0.0, 0.5, 1.0], columns=2, thumb_width=80, title="q")
    pixels = np.asarray(sheet)
    assert sheet.width == 2 * 80 + 3 * 6
    assert has_colour(pixels, (150, 150, 150)) and has_colour(pixels, PRED_COLOUR) and has_colour(pixels, GT_COLOUR)
    frames = [np.zeros((90, 160, 3), dtype=np.uint8)] * 3
    assert contact_sheet(frames, [0, 5, 10], (90, 160), {}, None, [0.0, 0.5, 1.0]).width == 3 * 160 + 4 * 6
    save_png(sheet, tmp_path / "a" / "sheet.png")
    assert Image.open(tmp_path / "a" / "sheet.png").size == sheet.size


def test_timeline_with_and_without_probabilities(tmp_path):
    times = np.arange(8) * 0.5
    probs = np.tile([0.1, 0.1, 0.5], (8, 1))
    for name, p, gt in (("p.png", probs, (1.0, 2.0)), ("spans.png", None, None)):
        fig = timeline_figure(times, p, (0.5, 1.5), gt, "a title", duration_s=4.0)
        assert fig.axes[0].get_xlim() == (0.0, 4.0)
        save_png(fig, tmp_path / name)
        assert Image.open(tmp_path / name).size == (800, 280)
