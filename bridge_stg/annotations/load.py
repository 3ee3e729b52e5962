"""The one entry point: read any supported annotation file into sentence records, detecting its format."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bridge_stg.annotations import hcstvg, vidstg
from bridge_stg.annotations.errors import AnnotationError, Where
from bridge_stg.annotations.parsing import VideoFilter, read_json
from bridge_stg.annotations.report import Collector, LoadReport
from bridge_stg.annotations.validate import DEFAULT_BOX_MARGIN
from bridge_stg.structures import SentenceRecord

log = logging.getLogger(__name__)
DATASETS = ("vidstg", "hcstvg_v1", "hcstvg_v2")  # the datasets load_annotations reads (the registry has them all)
FORMATS = {
    "vidstg_official": "vidstg",
    "tubedetr_vidstg": "vidstg",
    "hcstvg_v1_official": "hcstvg",
    "hcstvg_v2_official": "hcstvg",
    "hcstvg_query": "hcstvg",
    "tubedetr_hcstvg": "hcstvg",
}


class VideoFacts(Protocol):
    """What a reader may need to know about a video its file does not describe (``probe_video``'s answer)."""

    fps: float
    frame_count: int
    width: int
    height: int


@dataclass(frozen=True)
class ReadOptions:
    """What a dataset reader (:data:`Reader`) is told besides the file and the dataset name.

    ``vidor_dir``: VidSTG's box folder. ``media_root``: the folder the file's video paths are relative to.
    ``exclude_videos`` / ``skip_invalid``: as in :func:`load_annotations`. ``probe``: reads a video's frame rate,
    count and size, for formats that state none (Charades-STA); the data layer passes
    :func:`~bridge_stg.data.video_io.probe_video`.
    """

    vidor_dir: Path | None = None
    media_root: Path | None = None
    exclude_videos: tuple[str, ...] = ()
    skip_invalid: bool = False
    probe: Callable[[Path], VideoFacts] | None = None


# A dataset's reader: (annotation file, dataset name, options) -> records in file order and what was left out.
Reader = Callable[[Path, str, ReadOptions], tuple[list[SentenceRecord], LoadReport]]


def read_stvg(path: Path, dataset: str, options: ReadOptions) -> tuple[list[SentenceRecord], LoadReport]:
    """The :data:`Reader` of VidSTG and HC-STVG files: :func:`load_annotations` with ``options``."""
    return load_annotations(path, dataset, vidor_dir=options.vidor_dir, exclude_videos=options.exclude_videos,
                            skip_invalid=options.skip_invalid)


def read_synthetic(path: Path, dataset: str, options: ReadOptions) -> tuple[list[SentenceRecord], LoadReport]:
    """The synthetic benchmark's files are official VidSTG sentence files with VidOR box files
    (``options.vidor_dir``); its records name their dataset and have no sentence type."""
    records, report = load_annotations(path, "vidstg", vidor_dir=options.vidor_dir,
                                       exclude_videos=options.exclude_videos, skip_invalid=options.skip_invalid)
    report.dataset = dataset
    return [dataclasses.replace(r, dataset=dataset, sentence_type=None) for r in records], report


def load_annotations(
    path: Path | str,
    dataset: str,
    vidor_dir: Path | str | None = None,
    exclude_videos: Sequence[str] = (),
    skip_invalid: bool = False,
    *,
    box_margin: float = DEFAULT_BOX_MARGIN,
) -> tuple[list[SentenceRecord], LoadReport]:
    """Sentence records of an annotation file, in file order, and a report of what was left out.

    ``dataset`` is one of ``"vidstg"``, ``"hcstvg_v1"``, ``"hcstvg_v2"``; the format (official, TubeDETR
    preprocessed, HC-STVG query file) is detected from the content. ``vidor_dir`` (official VidSTG only) is
    the VidOR annotation root searched recursively for ``<vid>.json`` box files; without it VidSTG records
    carry no boxes. ``exclude_videos`` drops entries by file name (``10__Gvp-cj3bmIY.mp4``) or bare video id.
    ``skip_invalid`` turns each entry's :class:`AnnotationError` into a skip listed in the report; otherwise
    the first one is raised. ``box_margin`` is the fraction of the frame size a box may extend beyond the
    frame. Skipping never renumbers: records keep the sentence ids they have in the full file. Suspect but valid
    sentences (repeated ones, HC-STVG boxes that do not span ``st_time``..``ed_time``) are kept, listed in
    ``report.warnings`` and counted in one logged warning.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset '{dataset}'; choose one of {list(DATASETS)}")
    if isinstance(exclude_videos, str):
        raise TypeError("exclude_videos must be a sequence of names, not one string")
    path = Path(path)
    data = read_json(path)
    file_format = detect_format(data, path)
    _check_dataset(file_format, dataset, path)
    if vidor_dir is not None and file_format != "vidstg_official":
        raise AnnotationError(f"vidor_dir only serves official VidSTG sentence files, not {file_format}",
                              path=path, field="vidor_dir", fix="leave vidor_dir out")
    has_boxes = file_format != "hcstvg_query" and (file_format != "vidstg_official" or vidor_dir is not None)
    report = LoadReport(path=path, dataset=dataset, file_format=file_format, has_boxes=has_boxes)
    collect = Collector(report, VideoFilter(tuple(exclude_videos)), skip_invalid)
    _read(file_format, data, path, collect, dataset, vidor_dir, box_margin)
    records, report = collect.finish()
    if report.warnings:
        log.warning("%s: %d annotation warnings (%s), sentences kept; LoadReport.summary() lists them", path,
                    len(report.warnings), report.warning_counts())
    return records, report


def _read(
    file_format: str,
    data: Any,
    path: Path,
    collect: Collector,
    dataset: str,
    vidor_dir: Path | str | None,
    box_margin: float,
) -> None:
    if file_format == "vidstg_official":
        vidor = None if vidor_dir is None else Path(vidor_dir)
        vidstg.read_vidstg_official(data, path, collect, vidor, box_margin)
    elif file_format == "tubedetr_vidstg":
        vidstg.read_tubedetr_vidstg(data, path, collect, box_margin)
    elif file_format == "hcstvg_query":
        hcstvg.read_hcstvg_queries(data, path, collect, dataset)
    elif file_format == "tubedetr_hcstvg":
        hcstvg.read_tubedetr_hcstvg(data, path, collect, dataset, box_margin)
    else:
        version = 2 if file_format == "hcstvg_v2_official" else 1
        hcstvg.read_hcstvg_official(data, path, collect, dataset, version, box_margin)


def detect_format(data: Any, path: Path) -> str:
    """The format of decoded file content, judged from its shape and its first entry's keys."""
    where = Where(path)
    if isinstance(data, dict) and "videos" in data and "trajectories" in data:
        return "tubedetr_vidstg"
    if not isinstance(data, (list, dict)) or not data:
        raise where.error("<file>", f"expected a non-empty JSON list or object, got {_describe(data)}",
                          fix="check that this is an annotation file and that it is complete")
    first = data[0] if isinstance(data, list) else next(iter(data.values()))
    if isinstance(data, dict) and isinstance(first, str):
        return "hcstvg_query"
    if isinstance(first, dict):
        if isinstance(data, list) and {"vid", "used_segment", "temporal_gt"} & first.keys():
            return "vidstg_official"
        if isinstance(data, list) and {"original_video_id", "trajectory"} & first.keys():
            return "tubedetr_hcstvg"
        if isinstance(data, dict) and hcstvg.is_v2_entry(first):
            return "hcstvg_v2_official"
        if isinstance(data, dict) and {"bbox", "st_frame", "caption"} & first.keys():
            return "hcstvg_v1_official"
    keys = sorted(first.keys())[:12] if isinstance(first, dict) else _describe(first)
    raise where.error("<file>", f"unrecognised annotation format: a JSON {type(data).__name__} whose first "
                                f"entry is {keys}",
                      fix="supported: VidSTG official / TubeDETR, HC-STVG v1/v2 official / query / TubeDETR")


def _describe(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return f"an empty {type(value).__name__}" if not value else type(value).__name__
    return type(value).__name__


def _check_dataset(file_format: str, dataset: str, path: Path) -> None:
    family = FORMATS[file_format]
    if not dataset.startswith(family):
        raise AnnotationError(f"the file is a {file_format} file, which does not hold {dataset}", path=path,
                              field="<file>", fix=f"pass a {family} dataset name, or the right file")
    version = {"hcstvg_v1_official": "hcstvg_v1", "hcstvg_v2_official": "hcstvg_v2"}.get(file_format)
    if version is not None and dataset != version:
        raise AnnotationError(f"the file is in the {version} layout ({'/'.join(hcstvg.V2_KEYS)} keys "
                              f"{'present' if version == 'hcstvg_v2' else 'absent'}) but dataset='{dataset}'",
                              path=path, field="<file>", fix=f"pass dataset='{version}'")
