"""Data-loading speed at the default training settings, against decoding whole videos, in one run.

    python benchmarks/bench_loader.py [--videos 64] [--workers 2] [--workdir /tmp/bench_loader]
    python benchmarks/bench_loader.py --videos 16 --seconds 30 --fps 25 --width 480 --height 272

Generates a synthetic split (default: the benchmark's own 20 s clips at 5 fps, 112x112), then measures with a
``torch`` DataLoader:
(a) ``GroundingDataset`` with the default ``FrameBudget`` (reads only the sampled frames), with and without the
collator (tiny Qwen2-VL processor); (b) a loader that decodes every frame of each video and then keeps the same
sampled frames. Reports samples/s and decoded frames/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bridge_stg.data.collate import GroundingCollator
from bridge_stg.data.dataset import GroundingDataset
from bridge_stg.data.frames import FrameBudget, select_frames
from bridge_stg.data.synthetic import SyntheticConfig, generate_split
from bridge_stg.data.video_io import read_frames
from bridge_stg.model.tiny import save_tiny_checkpoint
from bridge_stg.tokens import GroundingTokens


class WholeVideo(Dataset):
    """Decodes every frame, then keeps the sampled ones (what a loader without frame-indexed reading does)."""

    def __init__(self, records, root: Path, budget: FrameBudget):
        self.records, self.root, self.budget = records, root, budget

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        rec = self.records[i]
        frames = read_frames(self.root / rec.video_path, np.arange(rec.frame_count))
        return frames[select_frames(rec.segment, rec.fps, self.budget)]


def measure(dataset, workers: int, batch_size: int, collate, epochs: int) -> tuple[float, int]:
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                        persistent_workers=workers > 0)
    next(iter(loader))  # start the workers outside the timing
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += len(batch)
    return time.perf_counter() - t0, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--width", type=int, default=112)
    parser.add_argument("--height", type=int, default=112)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_loader"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    speed = (max(6.0, args.fps), max(16.0, 2.5 * args.fps))  # at least 1 px per frame while moving
    cfg = SyntheticConfig(seconds=args.seconds, fps=args.fps, width_px=args.width, height_px=args.height,
                          speed_px_per_s=speed)
    args.workdir = args.workdir / f"{args.width}x{args.height}_{args.seconds:g}s_{args.fps:g}fps"
    records = generate_split(cfg, "train", args.workdir, num_videos=args.videos)
    root = args.workdir / "videos"
    budget = FrameBudget()
    ckpt = save_tiny_checkpoint(args.workdir / "tiny")
    from transformers import AutoProcessor

    collator = GroundingCollator(AutoProcessor.from_pretrained(ckpt), GroundingTokens(), "qwen2_vl")
    dataset = GroundingDataset(records, root, budget, source="synthetic", train=True)
    frames_per_sample = np.mean([len(select_frames(r.segment, r.fps, budget)) for r in records])
    rows = []
    for name, ds, collate in [("whole video", WholeVideo(records, root, budget), list),
                              ("sampled frames", dataset, list), ("sampled + collator", dataset, collator)]:
        seconds, n = measure(ds, args.workers, args.batch_size, collate, args.epochs)
        decoded = n * (records[0].frame_count if name == "whole video" else frames_per_sample)
        rows.append((name, n / seconds, decoded / seconds))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.workers} workers, batch {args.batch_size}, "
          f"{args.videos} videos of {records[0].frame_count} frames {cfg.width_px}x{cfg.height_px}, "
          f"{frames_per_sample:.0f} frames per sample ({budget})")
    print(f"{'loader':<22}{'samples/s':>12}{'decoded frames/s':>18}")
    for name, sps, fps in rows:
        print(f"{name:<22}{sps:>12.1f}{fps:>18.0f}")


if __name__ == "__main__":
    main()
