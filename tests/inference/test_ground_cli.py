"""``bridge-stg-ground``: what it writes for one video, and one error line with exit status 2 for each bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from bridge_stg.cli.ground import main
from bridge_stg.data.video_io import probe_video, read_frames
from bridge_stg.inference.inputs import MAX_QUERY_CHARS, MAX_QUERY_TOKENS
from bridge_stg.ops.segments import segment_iou
from bridge_stg.viz.figures import PRED_COLOUR


def gt_file(record, path):
    start, end = record.tube
    boxes = {str(int(f)): [float(v) for v in b] for f, b in zip(record.box_frame_ids, record.boxes_xyxy_px)
             if start <= f < end}
    path.write_text(json.dumps({"span_frames": [start, end], "boxes": boxes}))
    return path


def orange_pixels(frame: np.ndarray) -> int:
    return int((np.abs(frame.astype(int) - np.array(PRED_COLOUR)).max(-1) < 40).sum())


def test_ground_writes_the_tube_the_pictures_and_the_annotated_video(exported, clips, tmp_path, capsys):
    record, out = clips.records[0], tmp_path / "out"
    args = ["--model", str(exported.model_dir), "--video", str(clips.path(0)), "--query", record.query,
            "--out", str(out), "--gt-json", str(gt_file(record, tmp_path / "gt.json"))]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "tIoU" in printed and str(out / "annotated.mp4") in printed
    doc = json.loads((out / "tube.json").read_text())
    (ps, pe), (gs, ge) = doc["span_frames"], record.tube
    assert doc["ground_truth"]["span_frames"] == [gs, ge]
    assert doc["scores"]["tiou"] == pytest.approx(segment_iou(gs, ge, ps, pe))
    assert doc["frame_ids"] == list(range(ps, pe)) and len(doc["boxes_xyxy_px"]) == pe - ps

    info = probe_video(out / "annotated.mp4")  # every frame, enlarged 4x (112 px clips: the text must be readable)
    assert info.frame_count == record.frame_count and (info.height, info.width) == (448, 448)
    outside = ps - 1 if ps > 0 else pe
    inside_frame, outside_frame = read_frames(out / "annotated.mp4", [ps, outside])
    assert orange_pixels(inside_frame) > 100  # the predicted box (and the "predicted span" note) on span frames
    assert orange_pixels(outside_frame) == 0
    sheet = Image.open(out / "contact_sheet.png")
    columns = 8
    assert sheet.width == columns * 160 + (columns + 1) * 6
    timeline = Image.open(out / "timeline.png")
    assert timeline.size == (800, 280)


def test_no_video_still_writes_the_rest(exported, clips, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--model", str(exported.model_dir), "--video", str(clips.path(1)), "--query",
                 clips.records[1].query, "--out", str(out), "--no-video"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet.png", "timeline.png", "tube.json"]
    assert "ground_truth" not in json.loads((out / "tube.json").read_text())


def _zero_frame_video(path):
    import av

    with av.open(str(path), "w", format="avi") as container:  # a stream, no frame
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()  # writes the header: without it PyAV writes no file at all
    assert path.is_file()
    return path


CASES = {
    "missing video": ({"--video": "{tmp}/nope.mp4"}, "nope.mp4: no such video file"),
    "unreadable video": ({"--video": "{tmp}/text.mp4"}, "text.mp4: the video cannot be opened or decoded"),
    "zero-frame video": ({"--video": "{tmp}/empty.avi"}, "empty.avi: the video has no decodable frame"),
    "empty query": ({"--query": "   "}, "the query is empty"),
    "overlong query (characters)": ({"--query": "x" * (MAX_QUERY_CHARS + 1)}, f"at most {MAX_QUERY_CHARS} are"),
    "overlong query (tokens)": ({"--query": " ".join(["red"] * (MAX_QUERY_TOKENS + 10))},
                                f"tokens; at most {MAX_QUERY_TOKENS} are accepted"),
    "not a model folder": ({"--model": "{tmp}"}, "is not an exported Bridge-STG model: missing bridge_stg_config.json "
                                                 "or coupled_config.json"),
    "model folder without heads": ({"--model": "{tmp}/partial"}, "missing heads.safetensors"),
    "gt file is not JSON": ({"--gt-json": "{tmp}/bad.json"}, "bad.json: not JSON"),
    "gt file of the wrong layout": ({"--gt-json": "{tmp}/layout.json"}, "span_frames must be two integers"),
    "gt span beyond the video": ({"--gt-json": "{tmp}/late.json"}, "span_frames ends at frame 500 but the video has "
                                                                   "100 frames"),
    "bad device": ({"--device": "tpu:9"}, "--device 'tpu:9' is not a torch device"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_error_line_and_status_2(exported, clips, tmp_path, capsys, case):
    (tmp_path / "text.mp4").write_text("not a video")
    _zero_frame_video(tmp_path / "empty.avi")
    (tmp_path / "bad.json").write_text('{"span_frames": [1, 5],')
    (tmp_path / "layout.json").write_text('{"span_frames": [5]}')
    (tmp_path / "late.json").write_text('{"span_frames": [10, 500]}')
    if case == "model folder without heads":
        shutil.copytree(exported.model_dir, tmp_path / "partial")
        (tmp_path / "partial" / "heads.safetensors").unlink()
    changes, named = CASES[case]
    options = {"--model": str(exported.model_dir), "--video": str(clips.path(0)), "--query": "the red circle",
               "--out": str(tmp_path / "out")}
    options.update({k: v.format(tmp=tmp_path) for k, v in changes.items()})
    assert main([x for kv in options.items() for x in kv]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("bridge-stg-ground: error: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    assert named in errors[0] and "Traceback" not in err
    assert "skip_bad_videos" not in errors[0]  # the training runs' advice does not apply here
    assert not (tmp_path / "out").exists()  # nothing was written
