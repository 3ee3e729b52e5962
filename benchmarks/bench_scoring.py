"""Scoring speed: the vectorised toolkit against a straightforward per-frame Python loop, same files, same run.

    python benchmarks/bench_scoring.py [--clips 5000] [--workdir /tmp/bench_scoring]

Writes a simulated VidSTG split (TubeDETR's preprocessed annotation format, ``2 * clips`` sentences) and
reference-format predictions on the 5 fps grid, then scores them under the ``tubedetr`` protocol in two fresh
processes each:

* ``loop``: ``json`` decoding and a per-sentence, per-frame loop with a pure-Python box IoU;
* ``loop_np``: the same loop computing each frame's IoU with numpy, as the reference evaluator does;
* ``ours_ref``: ``bridge_stg`` (typed decoding, vectorised scoring) on the same reference-format predictions;
* ``ours_tubes``: ``bridge_stg`` on the same predictions in the project's tube JSONL.

Reports wall time per phase and peak RSS of each process, and checks that all per-sentence tIoU / vIoU / gt_vIoU are
identical (to 1e-9).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bridge_stg.eval.reference_loop import box_iou, sampled_frames


def setup(workdir: Path, clips: int) -> dict:
    from bridge_stg.annotations import write_tubedetr_vidstg
    from bridge_stg.eval.prediction_files import write_reference, write_tubes
    from bridge_stg.eval.simulate import simulate_predictions, simulate_vidstg

    records = simulate_vidstg(clips, seed=0, max_seconds=60)
    preds = simulate_predictions(records, seed=1)
    write_tubedetr_vidstg(records, workdir / "test.json")
    write_reference(workdir / "predictions.json", preds, {r.sentence_id: r.sentence_type for r in records})
    write_tubes(workdir / "predictions.jsonl", preds)
    return {"sentences": len(records), "predicted_boxes": int(sum(len(p.frame_ids) for p in preds)),
            "annotation_mb": round((workdir / "test.json").stat().st_size / 2**20, 1),
            "prediction_mb": round((workdir / "predictions.json").stat().st_size / 2**20, 1)}


def run_ours(workdir: Path, predictions: str) -> dict:
    t0 = time.perf_counter()
    from bridge_stg.annotations import load_annotations
    from bridge_stg.eval.metrics import score, summarize
    from bridge_stg.eval.prediction_files import read_predictions
    from bridge_stg.eval.protocols import build_targets, get_protocol

    t1 = time.perf_counter()
    records, _ = load_annotations(workdir / "test.json", "vidstg")
    t2 = time.perf_counter()
    preds = read_predictions(workdir / predictions)
    t3 = time.perf_counter()
    scores = score(build_targets(records, get_protocol("tubedetr")), preds)
    summarize(scores)
    t4 = time.perf_counter()
    np.savez(workdir / f"{predictions}.npz", ids=scores.sentence_ids, tiou=scores.tiou, viou=scores.viou,
             gt_viou=scores.gt_viou)
    return {"import_s": t1 - t0, "read_annotations_s": t2 - t1, "read_predictions_s": t3 - t2, "score_s": t4 - t3,
            "total_s": t4 - t0, "scores": f"{predictions}.npz"}


def _iou_numpy(a, b) -> float:
    a, b = np.array([a], dtype=np.float64), np.array([b], dtype=np.float64)
    a = np.concatenate([np.minimum(a[:, :2], a[:, 2:]), np.maximum(a[:, :2], a[:, 2:])], axis=1)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    union = np.prod(a[:, 2:] - a[:, :2], 1)[:, None] + np.prod(b[:, 2:] - b[:, :2], 1)[None] - inter
    return float(np.where(union > 0, inter / np.where(union > 0, union, 1), 0)[0, 0])


def run_loop(workdir: Path, iou_fn=box_iou, name: str = "loop") -> dict:
    t0 = time.perf_counter()
    anns = json.loads((workdir / "test.json").read_text())
    t1 = time.perf_counter()
    preds = json.loads((workdir / "predictions.json").read_text())
    t2 = time.perf_counter()
    boxes, spans = preds["predictions"], preds["video_predictions"]
    ids, tious, vious, gt_vious = [], [], [], []
    for video in anns["videos"]:
        vid = video["video_id"]
        ts, te = video["tube_start_frame"], video["tube_end_frame"]
        ps, pe = spans[str(vid)]["sted"]
        frame_ids = sampled_frames(video["start_frame"], video["end_frame"], video["fps"], 5.0, 200)
        track = anns["trajectories"][video["original_video_id"]][str(video["target_id"])]
        max_s, min_e, min_s, max_e = max(ts, ps), min(te, pe), min(ts, ps), max(te, pe)
        inter = max(0, min_e - max_s)
        tiou = inter / ((te - ts) + (pe - ps) - inter)
        union = [f for f in frame_ids if min_s <= f < max_e]
        viou = gt_viou = 0.0
        gt_frames = [f for f in frame_ids if ts <= f < te]
        for f in gt_frames:
            x, y, w, h = track[str(f)]["bbox"]
            iou = iou_fn(boxes[f"{vid}_{f}"]["boxes"][0], [x, y, x + w, y + h])
            if max_s <= f < min_e:
                viou += iou
            gt_viou += iou
        ids.append(vid)
        tious.append(tiou)
        vious.append(viou / max(len(union), 1))
        gt_vious.append(gt_viou / max(len(gt_frames), 1))
    t3 = time.perf_counter()
    np.savez(workdir / f"{name}.npz", ids=ids, tiou=tious, viou=vious, gt_viou=gt_vious)
    return {"read_annotations_s": t1 - t0, "read_predictions_s": t2 - t1, "score_s": t3 - t2, "total_s": t3 - t0,
            "scores": f"{name}.npz"}


def _peak_rss_mb() -> float:
    """This process's own high-water RSS (VmHWM; ``ru_maxrss`` would include the parent's peak before exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


MODES = {
    "loop": lambda d: run_loop(d),
    "loop_np": lambda d: run_loop(d, _iou_numpy, "loop_np"),
    "ours_ref": lambda d: run_ours(d, "predictions.json"),
    "ours_tubes": lambda d: run_ours(d, "predictions.jsonl"),
}


def child(mode: str, workdir: Path) -> None:
    result = MODES[mode](workdir)
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=5000, help="clips; two sentences each")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_scoring"))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.workdir)
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = setup(args.workdir, args.clips)
    results = {}
    for mode in args.modes:
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--workdir", str(args.workdir)],
                             check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
    ref = np.load(args.workdir / results[args.modes[0]]["scores"])
    diff = 0.0
    for mode in args.modes[1:]:
        other = np.load(args.workdir / results[mode]["scores"])
        assert np.array_equal(ref["ids"], other["ids"]), mode
        diff = max(diff, *(float(np.abs(ref[k] - other[k]).max()) for k in ("tiou", "viou", "gt_viou")))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"data: {data}")
    print(f"{'phase (s)':<20}" + "".join(f"{m:>12}" for m in args.modes))
    for phase in ("read_annotations_s", "read_predictions_s", "score_s", "total_s"):
        print(f"{phase:<20}" + "".join(f"{results[m][phase]:>12.3f}" for m in args.modes))
    print(f"{'peak RSS (MB)':<20}" + "".join(f"{results[m]['peak_rss_mb']:>12.0f}" for m in args.modes))
    base = results[args.modes[0]]
    for mode in args.modes[1:]:
        print(f"speed-up of {mode} over {args.modes[0]}: total {base['total_s'] / results[mode]['total_s']:.1f}x, "
              f"scoring phase {base['score_s'] / results[mode]['score_s']:.1f}x")
    print(f"max |difference| of per-sentence tIoU/vIoU/gt_vIoU across modes: {diff:.2e}")
    if diff > 1e-9:
        raise SystemExit("results differ")


if __name__ == "__main__":
    main()
