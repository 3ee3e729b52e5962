"""Time to ground one video and draw the result, stage by stage, on the CPU with a tiny model.

    python benchmarks/bench_ground.py [--seconds 30 --fps 30 --width 854 --height 480] [--repeats 3] [--json out.json]

Renders a synthetic clip of the benchmark's world at the asked size (default: 30 s of 854x480 at 30 fps, 900 frames;
H.264, written in chunks), exports a random tiny Bridge-STG (the default evaluation settings: 16 frames at most, 2 fps,
112x112 pixels), then times what ``bridge-stg-ground`` does: loading the model (once), grounding (``Grounder``'s own
stage timings: ``decode`` = probing the file, reading and resizing the sampled frames; ``collate`` = prompt and
processor; ``model``; ``postprocess``; the median of ``--repeats`` calls after one warm-up call) and writing each
output (``tube.json``, ``timeline.png``, ``contact_sheet.png`` and ``annotated.mp4``: decode every frame, draw,
encode). Decoding every frame alone is timed as well, to show what the annotated video's time is made of.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from bridge_stg.data.synthetic import SyntheticConfig, make_scene, scene_record
from bridge_stg.data.synthetic.render import render_scene
from bridge_stg.data.video_io import VideoWriter, iter_frames
from bridge_stg.inference import INFERENCE_FILE, Grounder, InferenceSettings, outputs
from bridge_stg.inference.ground_truth import GroundTruth
from bridge_stg.model.bridge_stg import BridgeSTG
from bridge_stg.model.config import BackboneConfig, BridgeSTGConfig
from bridge_stg.model.tiny import save_tiny_checkpoint

CHUNK = 64


def make_video(path: Path, cfg: SyntheticConfig) -> tuple[str, GroundTruth]:
    """A synthetic clip rendered and encoded ``CHUNK`` frames at a time; its query and GT tube."""
    scene = make_scene(cfg, "test", 0)
    record = scene_record(scene, cfg)
    with VideoWriter(path, cfg.fps, gop=int(2 * cfg.fps), options={"preset": "veryfast", "crf": "23"}) as writer:
        for start in range(0, record.frame_count, CHUNK):
            writer.write(render_scene(scene, np.arange(start, min(start + CHUNK, record.frame_count))))
    start, end = record.tube
    boxes = {int(f): b for f, b in zip(record.box_frame_ids, record.boxes_xyxy_px) if start <= f < end}
    return record.query, GroundTruth((start, end), boxes)


def make_model(root: Path) -> Path:
    backbone = save_tiny_checkpoint(root / "backbone", hidden_size=64, num_layers=4)
    torch.manual_seed(0)
    cfg = BridgeSTGConfig(backbone=BackboneConfig(path=str(backbone), llm="lora", lora_rank=4),
                          backbone_layers=(-2, -1), decoder_dim=32)
    BridgeSTG(cfg).save_pretrained(root / "model", extra_files={INFERENCE_FILE: InferenceSettings().text()})
    return root / "model"


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--repeats", type=int, default=3, help="grounding calls timed after one warm-up call")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own choice, one per core); on a machine that other jobs "
                             "keep busy, 1 avoids the threads waiting for each other")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_ground_"))
    work.mkdir(parents=True, exist_ok=True)

    side = min(args.width, args.height)
    cfg = SyntheticConfig(seconds=args.seconds, fps=args.fps, width_px=args.width, height_px=args.height,
                          size_px=(max(8, side // 10), max(12, side // 5)),
                          speed_px_per_s=(side / 12, side / 5))
    video = work / "clip.mp4"
    # the clip and the model are made in a child process, so that the peak memory below is the pipeline's alone
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        query, gt = pool.submit(make_video, video, cfg).result()
        model_dir = pool.submit(make_model, work).result()

    imports_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # torch, transformers, PyAV, ...
    load_s, grounder = timed(Grounder.from_pretrained, model_dir)
    grounder.ground(video, query)  # warm-up
    runs = []
    for _ in range(args.repeats):
        total, tube = timed(grounder.ground, video, query)
        runs.append({**grounder.timings, "total": total})
    ground = {k: statistics.median(r[k] for r in runs) for k in runs[0]}

    out = work / "out"
    write = {}
    write["tube.json"], _ = timed(outputs.write_tube_json, tube, out / outputs.TUBE_FILE, gt)
    write["timeline.png"], _ = timed(outputs.write_timeline, tube, out / outputs.TIMELINE_FILE, gt)
    write["annotated.mp4"], frames = timed(outputs.write_annotated_video, tube, video, out / outputs.VIDEO_FILE, gt,
                                           progress=False, keep_frame_ids=tube.sampled_frame_ids)
    write["contact_sheet.png"], _ = timed(outputs.write_contact_sheet, tube, out / outputs.SHEET_FILE, frames, gt)
    decode_all_s, count = timed(lambda: sum(len(c) for c in iter_frames(video, CHUNK)))

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                   f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
        "load_average": list(os.getloadavg()),
        "video": {"seconds": args.seconds, "fps": args.fps, "width": args.width, "height": args.height,
                  "frames": tube.frame_count, "sampled_frames": len(tube.sampled_frame_ids),
                  "span_frames": list(tube.span_frames)},
        "load_model_s": load_s, "ground_s": ground, "write_s": write, "write_total_s": sum(write.values()),
        "decode_every_frame_s": decode_all_s, "frames_decoded": count,
        "end_to_end_s": ground["total"] + sum(write.values()),
        "output_bytes": {p.name: p.stat().st_size for p in sorted(out.iterdir())},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_after_imports_mb": imports_mb,
        "workdir": str(work),
    }
    rows = [("load the model (once)", load_s)]
    rows += [(f"ground: {k}", ground[k]) for k in ("decode", "collate", "model", "postprocess")]
    rows += [("ground: total", ground["total"])]
    rows += [(f"write {k}", v) for k, v in write.items()] + [("write: total", result["write_total_s"])]
    rows += [("ground + write", result["end_to_end_s"]),
             (f"(decoding all {count} frames alone)", decode_all_s)]
    whole_mb = count * args.width * args.height * 3 / 2**20
    print(f"{args.seconds:g} s of {args.width}x{args.height} at {args.fps:g} fps ({tube.frame_count} frames, "
          f"{len(tube.sampled_frame_ids)} sampled); {result['machine']}")
    print("| stage | seconds |\n|---|--:|")
    for name, value in rows:
        print(f"| {name} | {value:.3f} |")
    print(f"peak memory of the process: {result['peak_rss_mb']:.0f} MB, {imports_mb:.0f} MB of it after the imports "
          f"(every decoded frame at once would be {whole_mb:.0f} MB)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
