"""``bridge-stg-ground``: ground one sentence in one video with an exported model and write what it found.

    bridge-stg-ground --model runs/<experiment>/<time>/model --video clip.mp4 --query "the red circle ..." \\
        [--out DIR] [--gt-json FILE] [--device cpu]

Writes ``tube.json``, ``annotated.mp4``, ``timeline.png`` and ``contact_sheet.png`` into ``--out`` (default
``./grounding/<video stem>``). Every input is checked before the model is loaded where it can be (the query's text,
the video, the GT file, the output folder; then the model folder): a bad one is one ``bridge-stg-ground: error: ...``
line and exit status 2. The model is reached through :mod:`bridge_stg.inference` only, imported inside the handler so
that ``--help`` and the input checks stay fast.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from bridge_stg.data.video_io import SKIP_FIX, VideoReadError

PROG = "bridge-stg-ground"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Find when (a span) and where (a box on every frame of the span) the object a sentence "
                    "describes is in a video, with an exported Bridge-STG model (or the coupled baseline), and draw "
                    "it: tube.json, annotated.mp4 (every frame, boxes on the span), timeline.png (span probabilities "
                    "of the sampled frames) and contact_sheet.png (the sampled frames with their boxes).")
    p.add_argument("--model", required=True, type=Path,
                   help="an exported model folder (runs/<experiment>/<time>/model, written by training)")
    p.add_argument("--video", required=True, type=Path, help="the video file (any format PyAV / decord read)")
    p.add_argument("--query", required=True, help="the sentence describing the object, e.g. \"the red circle while "
                                                  "it moves left\"")
    p.add_argument("--out", type=Path, help="output folder (default: ./grounding/<video stem>); files of the same "
                                            "names there are replaced")
    p.add_argument("--gt-json", type=Path, help='a ground-truth tube to draw and score against: {"span_frames": '
                   '[start, end_exclusive], "boxes": {"<frame_id>": [x1, y1, x2, y2], ...}} with 0-based frame ids '
                   'of the video and boxes in its pixels ("boxes" is optional)')
    p.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1, ...")
    p.add_argument("--no-video", action="store_true", help="skip annotated.mp4 (the slowest output on long videos)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip checking the model files against their manifest (a damaged file may then load)")
    return p


def _device(name: str):
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a torch device; use cpu, cuda or cuda:<index>") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def run(args: argparse.Namespace) -> int:
    from bridge_stg.data.video_io import probe_video
    from bridge_stg.eval.output_paths import check_output_dir
    from bridge_stg.inference.ground_truth import read_gt_json
    from bridge_stg.inference.inputs import GroundingInputError, check_query_text

    query = check_query_text(args.query)
    info = probe_video(args.video)  # missing, unreadable: VideoReadError naming the file
    if info.frame_count <= 0:
        raise VideoReadError(args.video, "unreadable", "the container reports no frame", actual_frame_count=0)
    if not (math.isfinite(info.fps) and info.fps > 0):
        raise GroundingInputError(f"{args.video}: the video states no frame rate (fps {info.fps}); re-encode it "
                                  "with one")
    gt = read_gt_json(args.gt_json) if args.gt_json is not None else None
    if gt is not None and gt.span_frames[1] > info.frame_count:
        raise GroundingInputError(f"{args.gt_json}: span_frames ends at frame {gt.span_frames[1]} but the video has "
                                  f"{info.frame_count} frames; give 0-based frame ids of this video")
    out = args.out if args.out is not None else Path("grounding") / args.video.stem
    check_output_dir(out, "--out")

    from bridge_stg.inference import outputs
    from bridge_stg.inference.grounder import Grounder, check_model_dir

    check_model_dir(args.model)
    device = _device(args.device)
    clock = time.perf_counter()
    grounder = Grounder.from_pretrained(args.model, device=device, verify=not args.no_verify)
    tube = grounder.ground(args.video, query)
    seconds = time.perf_counter() - clock
    out.mkdir(parents=True, exist_ok=True)
    written = [outputs.write_tube_json(tube, out / outputs.TUBE_FILE, gt),
               outputs.write_timeline(tube, out / outputs.TIMELINE_FILE, gt)]
    if args.no_video:
        frames = outputs.sampled_frames(tube, args.video)
    else:
        frames = outputs.write_annotated_video(tube, args.video, out / outputs.VIDEO_FILE, gt,
                                               keep_frame_ids=tube.sampled_frame_ids)
        written.append(out / outputs.VIDEO_FILE)
    written.append(outputs.write_contact_sheet(tube, out / outputs.SHEET_FILE, frames, gt))
    print(f'"{tube.query}" in {args.video}: frames [{tube.span_frames[0]}, {tube.span_frames[1]}) = '
          f"{tube.span_s[0]:.2f}-{tube.span_s[1]:.2f} s of {tube.frame_count / tube.fps:.2f} s "
          f"(grounded in {seconds:.1f} s)")
    if gt is not None:
        scores = outputs.tube_document(tube, gt)["scores"]
        viou = "n/a (GT boxes do not cover the GT span)" if scores["viou"] is None else f"{scores['viou']:.3f}"
        print(f"against the ground truth: tIoU {scores['tiou']:.3f}, vIoU {viou}")
    for path in written:
        print(f"wrote {path}")
    return 0


def video_error_message(err: VideoReadError) -> str:
    """The reader's message without its advice for training runs (``data.skip_bad_videos``), and a video with no
    decodable frame said so."""
    if err.reason == "missing":
        return f"{err.path}: no such video file{f' ({err.detail})' if err.detail else ''}"
    if err.reason == "unreadable" and err.actual_frame_count == 0:
        return f"{err.path}: the video has no decodable frame ({err.detail}); give a video with at least one frame"
    return str(err).replace(f", {SKIP_FIX}", "")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except VideoReadError as err:
        return _fail(video_error_message(err))
    except (ValueError, OSError) as err:  # GroundingInputError, GroundTruthError, DamagedFileError: ValueErrors
        return _fail(str(err) or type(err).__name__)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
