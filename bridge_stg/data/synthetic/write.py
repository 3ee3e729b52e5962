"""The benchmark on disk: :func:`encode_mp4` (reproducible H.264), a scene's :class:`SentenceRecord` and its
VidSTG / HC-STVG v1 copies, :func:`generate_split` (videos of one split), the annotation files of a split
(:func:`annotation_paths`, :func:`write_split_annotations`, :func:`load_split`) and :func:`generate_benchmark`,
which writes every split and, last, ``benchmark.json`` (the manifest that lets an up-to-date benchmark be kept)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from bridge_stg.annotations import write_hcstvg, write_vidstg_official
from bridge_stg.annotations.load import ReadOptions, read_synthetic
from bridge_stg.data.synthetic.config import DATASET, MANIFEST_VERSION, SyntheticConfig
from bridge_stg.data.synthetic.render import render_scene
from bridge_stg.data.synthetic.sampling import make_scene
from bridge_stg.data.synthetic.scene import Scene
from bridge_stg.data.video_io import write_video
from bridge_stg.structures import SentenceRecord


def encode_mp4(path: Path, frames_rgb: np.ndarray, fps: float, crf: int, gop: int) -> None:
    """Write uint8 ``[T, H, W, 3]`` frames as a reproducible H.264 mp4 (:func:`~bridge_stg.data.video_io.write_video`
    with ``reproducible_crf``). The file appears atomically (written beside, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    # the frame rate with a denominator of at most 10^5, as the benchmark's files have always stored it
    write_video(tmp, frames_rgb, Fraction(fps).limit_denominator(100_000), gop=gop, reproducible_crf=crf,
                container_format="mp4")
    tmp.replace(path)


def scene_record(scene: Scene, cfg: SyntheticConfig) -> SentenceRecord:
    """The scene's sentence record (``dataset="synthetic"``): target boxes on every frame, tube = window."""
    target = scene.objects[scene.target_id]
    n = cfg.frame_count
    frame_ids = np.arange(n, dtype=np.int64)
    frame_ids.flags.writeable = False
    return SentenceRecord(
        sentence_id=scene.index,
        dataset=DATASET,
        video_id=scene.video_id,
        video_path=f"{scene.split}/{scene.video_id}.mp4",
        fps=float(cfg.fps),
        frame_count=n,
        width=cfg.width_px,
        height=cfg.height_px,
        segment=(0, n),
        tube=(int(scene.window[0]), int(scene.window[1])),
        query=scene.query,
        sentence_type=None,
        target_id=int(scene.target_id),
        box_frame_ids=frame_ids,
        boxes_xyxy_px=target.boxes_xyxy_px,
        annotation_frame_base=0,
        source_tube_end="exclusive",
    )


def generate_split(
    cfg: SyntheticConfig, split: str, out_dir: Path | str, num_videos: int | None = None
) -> list[SentenceRecord]:
    """Write ``out_dir/videos/<split>/<video_id>.mp4`` for videos ``0..num_videos-1`` and return their records.

    ``num_videos`` defaults to the config's size of ``split``; record ``i`` has ``sentence_id == i`` and
    ``video_path`` relative to ``out_dir/videos``.
    """
    if num_videos is None:
        if split not in cfg.split_sizes:
            raise ValueError(f"split '{split}' has no size in the config; pass num_videos")
        num_videos = cfg.split_sizes[split]
    video_dir = Path(out_dir) / "videos"
    records = []
    for index in range(num_videos):
        scene = make_scene(cfg, split, index)
        record = scene_record(scene, cfg)
        encode_mp4(video_dir / record.video_path, render_scene(scene), cfg.fps, cfg.crf, cfg.gop)
        records.append(record)
    return records


def to_vidstg_record(record: SentenceRecord) -> SentenceRecord:
    """The record as the VidSTG reader returns it from the written files (declarative sentence)."""
    return dataclasses.replace(record, dataset="vidstg", sentence_type="declarative")


def to_hcstvg_record(record: SentenceRecord) -> SentenceRecord:
    """The record as the HC-STVG v1 reader returns it: boxes on the tube frames only, 1-based source numbering,
    no target id (the format has one target per video)."""
    assert record.tube is not None
    start, end = record.tube
    keep = (record.box_frame_ids >= start) & (record.box_frame_ids < end)
    return dataclasses.replace(record, dataset="hcstvg_v1", sentence_type=None, target_id=None,
                               box_frame_ids=record.box_frame_ids[keep], boxes_xyxy_px=record.boxes_xyxy_px[keep],
                               annotation_frame_base=1, source_tube_end="inclusive")


def annotation_paths(out_dir: Path | str, split: str) -> dict[str, Path]:
    """Where :func:`generate_benchmark` writes a split's annotations (keys: vidstg, vidor_dir, hcstvg)."""
    root = Path(out_dir) / "annotations"
    return {"vidstg": root / "vidstg" / f"{split}_annotations.json", "vidor_dir": root / "vidor" / split,
            "hcstvg": root / "hcstvg" / f"{split}.json"}


def write_split_annotations(records: Sequence[SentenceRecord], cfg: SyntheticConfig, out_dir: Path | str,
                            split: str) -> None:
    """Write a split's records in the VidSTG (+ VidOR) format and, for 20 s clips, in the HC-STVG v1 format."""
    paths = annotation_paths(out_dir, split)
    vidor_dir = paths["vidor_dir"]
    write_vidstg_official([to_vidstg_record(r) for r in records], paths["vidstg"], vidor_dir.parent,
                          vidor_group=vidor_dir.name)
    if cfg.writes_hcstvg:
        write_hcstvg([to_hcstvg_record(r) for r in records], paths["hcstvg"], version=1)


def load_split(out_dir: Path | str, split: str) -> list[SentenceRecord]:
    """A generated split's records (``dataset="synthetic"``), read back from its VidSTG + VidOR files."""
    paths = annotation_paths(out_dir, split)
    records, _ = read_synthetic(paths["vidstg"], DATASET, ReadOptions(vidor_dir=paths["vidor_dir"]))
    return records


def _manifest(cfg: SyntheticConfig, split_sizes: Mapping[str, int]) -> dict:
    return json.loads(json.dumps({
        "version": MANIFEST_VERSION,
        "config": dataclasses.asdict(cfg),
        "splits": dict(split_sizes),
        "formats": ["vidstg"] + (["hcstvg_v1"] if cfg.writes_hcstvg else []),
        "layout": {"videos": "videos/<split>/<video_id>.mp4", "vidstg": "annotations/vidstg/<split>_annotations.json",
                   "vidor_dir": "annotations/vidor/<split>", "hcstvg": "annotations/hcstvg/<split>.json"},
    }))


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def generate_benchmark(
    cfg: SyntheticConfig,
    out_dir: Path | str,
    splits: Mapping[str, int] | None = None,
    *,
    overwrite: bool = False,
) -> dict[str, list[SentenceRecord]]:
    """Generate every split (``{name: num_videos}``, default the config's sizes) with its videos and annotation
    files, then ``out_dir/benchmark.json``. When that file already describes the same config and splits (and
    ``overwrite`` is False) nothing is written and the records are read back from the annotations.

    ``benchmark.json`` is removed first and written last, so an interrupted run regenerates. Files of an earlier,
    larger benchmark in the same folder are not deleted (the annotation files say which videos belong).
    """
    out_dir = Path(out_dir)
    split_sizes = dict(cfg.split_sizes if splits is None else splits)
    manifest = _manifest(cfg, split_sizes)
    manifest_path = out_dir / "benchmark.json"
    if not overwrite and _read_manifest(manifest_path) == manifest:
        return {split: load_split(out_dir, split) if n else [] for split, n in split_sizes.items()}
    manifest_path.unlink(missing_ok=True)
    records = {}
    for split, num_videos in split_sizes.items():
        records[split] = generate_split(cfg, split, out_dir, num_videos)
        if records[split]:
            write_split_annotations(records[split], cfg, out_dir, split)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return records
