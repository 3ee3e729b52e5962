"""``bridge-stg-data``: dataset tools. ``check`` tells whether the videos of annotation files are installed and
serve every annotated frame; each further tool is one ``_add_<name>(sub)`` call in :func:`build_parser`."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bridge_stg.eval.datasets import dataset_names, get_dataset
from bridge_stg.structures import SentenceRecord

PROG = "bridge-stg-data"
PROBLEM_KINDS = ("missing", "unreadable", "short", "corrupt", "fps_mismatch")
PROBLEM_TITLES = {"missing": "missing", "unreadable": "unreadable (corrupt or not a video)",
                  "short": "shorter than annotated", "corrupt": "damaged (a needed frame fails to decode)",
                  "fps_mismatch": "frame rate differs from the annotation"}
MODES = {"quick": "each video opened and its last needed frame decoded",
         "deep": "every frame from the start through the last needed one decoded"}
FPS_TOLERANCE = 0.01  # relative
IDS_LISTED = 20  # sentence ids per split in the readable report (the JSON lists them all)
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Dataset tools of Bridge-STG.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_check(sub)
    _add_synth(sub)
    return parser


def _add_synth(sub: argparse._SubParsersAction) -> None:
    from bridge_stg.data.synthetic import add_synth_arguments, run_synth

    p = sub.add_parser(
        "synth", help="generate the synthetic STVG benchmark (videos + VidSTG/VidOR and HC-STVG annotations)",
        description="Write videos of moving shapes with referring queries ('the small red square while it moves to "
                    "the left') and their annotations in the real formats. Deterministic from --seed; an existing "
                    "benchmark with the same configuration is kept unless --overwrite.")
    add_synth_arguments(p)
    p.set_defaults(handler=run_synth)


def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="check that the videos of annotation files are installed and long enough",
        description="Load annotation files, count their sentences per split and type, and probe every distinct "
                    "video once: report videos that are missing, unreadable, shorter than the annotation needs "
                    "(the last frame of any segment or tube must decode) and, for VidSTG, whose frame rate differs "
                    f"from the annotation's by more than {FPS_TOLERANCE:.0%}; each problem lists the sentences it "
                    "affects. --deep also decodes every frame from the start through the last needed one (what the "
                    "data loader may read), reporting damage in the middle of a file. Exit 0: no problem; 1: "
                    "problems found; 2: usage or annotation error.")
    p.add_argument("--dataset", required=True, choices=dataset_names("tube", "temporal"),
                   help="a registered dataset with videos (bridge_stg/eval/datasets.py)")
    p.add_argument("--annotations", required=True, type=Path, nargs="+",
                   help="annotation file(s), one per split (the split is the file name's stem); any format that "
                        "bridge-stg-eval reads")
    p.add_argument("--vidor-dir", type=Path, help="VidOR box folder (VidSTG official sentence files only)")
    p.add_argument("--video-dir", required=True, type=Path,
                   help="folder that the annotations' video paths are relative to")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the readable report")
    p.add_argument("--exclude-videos", nargs="*", default=[],
                   help="video names to leave out (known-bad entries of a release)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="skip annotation entries that fail validation instead of failing")
    p.add_argument("--limit", type=int, default=None, help="probe only the first N distinct videos")
    p.add_argument("--backend", default="auto", choices=("auto", "decord", "pyav"),
                   help="video reader of the probe and of the quick check's last frame")
    p.add_argument("--deep", action="store_true",
                   help="decode every frame each video must serve, with PyAV (the reader that decides when decord "
                        "fails): slow (a full decode), finds damage that the quick check's one frame misses")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help=f"videos checked in parallel worker processes (default: min(4, CPUs) = {DEFAULT_WORKERS}; "
                        "1: in this process)")
    p.set_defaults(handler=run_check)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as e:  # AnnotationError is a ValueError
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


# ------------------------------------------------------------------------------------------------------ check


@dataclass
class VideoNeed:
    """What the annotations ask of one video file: frames ``[0, frames_needed)`` must decode, for the sentences
    ``sentence_ids`` (per split)."""

    video_path: str
    frames_needed: int
    annotated_frames: int
    annotated_fps: float
    sentence_ids: dict[str, list[int]] = field(default_factory=dict)

    @property
    def sentences(self) -> int:
        return sum(len(ids) for ids in self.sentence_ids.values())


@dataclass(frozen=True)
class VideoProblem:
    kind: str  # one of PROBLEM_KINDS
    video: str
    reason: str
    sentences: int
    sentence_ids: dict[str, list[int]]  # split -> ids of the sentences the problem affects
    details: dict[str, Any] = field(default_factory=dict)


def run_check(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        raise ValueError(f"--limit must be >= 0, got {args.limit}")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if not args.video_dir.is_dir():
        raise ValueError(f"--video-dir {args.video_dir} is not a directory")
    splits = _load_splits(args)
    needs = video_needs([(name, recs) for name, recs, _ in splits])
    checked = needs if args.limit is None else needs[:args.limit]
    mode = "deep" if args.deep else "quick"
    problems = check_videos(checked, args.video_dir, check_fps=get_dataset(args.dataset).check_fps,
                            backend=args.backend, deep=args.deep, workers=args.workers, progress=True)
    report = {
        "dataset": args.dataset,
        "mode": mode,
        "video_dir": str(args.video_dir),
        "splits": {name: sentence_counts(recs, args.dataset) for name, recs, _ in splits},
        "sentences": sum(len(recs) for _, recs, _ in splits),
        "videos": len(needs),
        "videos_checked": len(checked),
        "problem_counts": {kind: sum(p.kind == kind for p in problems) for kind in PROBLEM_KINDS},
        "problems": {kind: [_problem_json(p) for p in problems if p.kind == kind] for kind in PROBLEM_KINDS},
        "annotation_reports": [report.summary() for _, _, report in splits],
        "annotation_warnings": [_warning_json(name, w) for name, _, report in splits for w in report.warnings],
    }
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 1 if problems else 0


def _load_splits(args: argparse.Namespace) -> list[tuple[str, list[SentenceRecord], Any]]:
    """``(split name, records, LoadReport)`` per annotation file; the split is the file's stem (its path when
    two files share a stem)."""
    from bridge_stg.annotations.load import ReadOptions
    from bridge_stg.data.video_io import probe_video

    options = ReadOptions(vidor_dir=args.vidor_dir, media_root=args.video_dir, probe=probe_video,
                          exclude_videos=tuple(args.exclude_videos), skip_invalid=args.skip_invalid)
    read = get_dataset(args.dataset).read
    stems = Counter(path.stem for path in args.annotations)
    out = []
    for path in args.annotations:
        records, report = read(path, args.dataset, options)
        out.append((path.stem if stems[path.stem] == 1 else str(path), records, report))
    return out


def sentence_counts(records: Sequence[SentenceRecord], dataset: str) -> dict[str, Any]:
    """Sentences of one split, by the dataset's sentence types (VidSTG: declarative / interrogative), else
    ``all``."""
    sentence_types = get_dataset(dataset).sentence_types
    if sentence_types:
        types = {t: sum(r.sentence_type == t for r in records) for t in sentence_types}
    else:
        types = {"all": len(records)}
    return {"sentences": len(records), "types": types}


def video_needs(splits: Sequence[tuple[str, Sequence[SentenceRecord]]]) -> list[VideoNeed]:
    """One :class:`VideoNeed` per distinct ``video_path`` over ``(split, records)`` pairs, in order of first
    appearance. The frames needed run from the video's start through the largest ``segment``/``tube`` end of its
    sentences: the loader reads sampled frames of the segment (a training crop: any of them), and a sequential
    decoder (PyAV) decodes every frame before them."""
    needs: dict[str, VideoNeed] = {}
    for split, records in splits:
        for rec in records:
            end = max(rec.segment[1], rec.tube[1] if rec.tube is not None else 0)
            need = needs.setdefault(rec.video_path, VideoNeed(rec.video_path, 0, 0, rec.fps))
            need.frames_needed = max(need.frames_needed, end)
            need.annotated_frames = max(need.annotated_frames, rec.frame_count)
            need.sentence_ids.setdefault(split, []).append(rec.sentence_id)
    return list(needs.values())


def check_videos(
    needs: Sequence[VideoNeed],
    video_dir: Path,
    *,
    check_fps: bool,
    backend: str = "auto",
    deep: bool = False,
    workers: int = 1,
    progress: bool = False,
) -> list[VideoProblem]:
    """The problems of every video (in the order of ``needs``), each checked once by :func:`check_video` in
    ``workers`` processes (1: in this one), with a progress bar on stderr when ``progress``."""
    from tqdm.auto import tqdm

    check = functools.partial(check_video, video_dir=video_dir, check_fps=check_fps, backend=backend, deep=deep)
    desc = f"{'deep' if deep else 'quick'} check"
    with tqdm(total=len(needs), desc=desc, unit="video", file=sys.stderr, disable=not progress) as bar:
        if workers == 1 or len(needs) <= 1:
            results = []
            for need in needs:
                results.append(check(need))
                bar.update()
        else:
            results = _check_in_workers(needs, check, min(workers, len(needs)), bar.update)
    return [problem for found in results for problem in found]


def _check_in_workers(needs: Sequence[VideoNeed], check: Callable[[VideoNeed], list[VideoProblem]], workers: int,
                      done: Callable[[], Any]) -> list[list[VideoProblem]]:
    """``check`` of every need in ``workers`` spawned processes (fresh interpreters: no decoder state is inherited),
    results in the order of ``needs``; ``done()`` after each."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    results: list[list[VideoProblem]] = [[] for _ in needs]
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(check, need): i for i, need in enumerate(needs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            done()
    except BrokenProcessPool:
        raise RuntimeError("a check worker process died (a video decoder crashed on one of the files); rerun with "
                           "--workers 1 to see on which video it stops") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on Ctrl-C or an error: drop the videos not yet started
    return results


def check_video(need: VideoNeed, video_dir: Path, *, check_fps: bool, backend: str = "auto",
                deep: bool = False) -> list[VideoProblem]:
    """Problems of one video: missing or unreadable (probe fails); quick: short (its last needed frame does not
    decode); deep: short or corrupt (a frame before the last needed one fails to decode, see
    :func:`~bridge_stg.data.video_io.verify_frames`); fps mismatch (``check_fps`` and more than 1% off)."""
    from bridge_stg.data.video_io import VideoReadError, probe_video, read_frames, verify_frames

    path = video_dir / need.video_path
    try:
        info = probe_video(path, backend=backend)
        if deep:
            verify_frames(path, need.frames_needed, expected_frame_count=need.annotated_frames)
        elif need.frames_needed > 0:
            read_frames(path, [need.frames_needed - 1], expected_frame_count=need.annotated_frames, backend=backend)
    except VideoReadError as e:
        kind = "short" if e.reason == "too_short" else e.reason
        details = {"frames_needed": need.frames_needed, "annotated_frames": need.annotated_frames,
                   "decodable_frames": e.actual_frame_count} if kind in ("short", "corrupt") else {}
        return [_problem(need, kind, str(e), details)]
    if check_fps and need.annotated_fps > 0 and abs(info.fps - need.annotated_fps) > FPS_TOLERANCE * need.annotated_fps:
        reason = f"{path}: the video runs at {info.fps:g} fps, the annotation says {need.annotated_fps:g} fps"
        return [_problem(need, "fps_mismatch", reason, {"annotated_fps": need.annotated_fps, "video_fps": info.fps})]
    return []


def _problem(need: VideoNeed, kind: str, reason: str, details: dict[str, Any]) -> VideoProblem:
    return VideoProblem(kind, need.video_path, reason, need.sentences, need.sentence_ids, details)


def _problem_json(problem: VideoProblem) -> dict[str, Any]:
    out = asdict(problem)
    out.pop("kind")
    out.update(out.pop("details"))
    return out


def _warning_json(split: str, warning: Any) -> dict[str, Any]:
    return {"split": split, "kind": warning.kind, "video": warning.video_id,
            "sentence_ids": list(warning.sentence_ids), "message": warning.message}


def format_report(report: dict[str, Any]) -> str:
    """The readable form of :func:`run_check`'s report."""
    lines = list(report["annotation_reports"])
    type_names = list(next(iter(report["splits"].values()))["types"]) if report["splits"] else []
    width = max([10, *(len(name) + 2 for name in report["splits"])])
    lines.append(f"{'split':<{width}}{'sentences':>11}" + "".join(f"{t:>15}" for t in type_names))
    for name, counts in report["splits"].items():
        lines.append(f"{name:<{width}}{counts['sentences']:>11}"
                     + "".join(f"{counts['types'][t]:>15}" for t in type_names))
    lines.append(f"videos: {report['videos']} distinct, {report['videos_checked']} checked in {report['video_dir']}")
    lines.append(f"mode: {report['mode']} ({MODES[report['mode']]})")
    for kind in PROBLEM_KINDS:
        items = report["problems"][kind]
        if items:
            lines.append(f"{PROBLEM_TITLES[kind]}: {len(items)} videos")
            for p in items:
                lines.append(f"  - {p['reason']}")
                lines.append(f"    {p['sentences']} sentences of {p['video']}: {_describe_ids(p['sentence_ids'])}")
    bad = sum(report["problem_counts"].values())
    n, mode = report["videos_checked"], report["mode"]
    lines.append(f"result: {bad} problems in {n} checked videos ({mode} check)" if bad
                 else f"result: OK, all {n} checked videos serve their annotations ({mode} check)")
    if report["annotation_warnings"]:
        lines.append(f"annotation warnings: {len(report['annotation_warnings'])} (listed with their files above)")
    return "\n".join(lines)


def _describe_ids(ids_by_split: dict[str, list[int]]) -> str:
    """``'train 0, 4; test 2'``, at most :data:`IDS_LISTED` ids per split."""
    parts = []
    for split, ids in ids_by_split.items():
        more = f", ... (+{len(ids) - IDS_LISTED} more)" if len(ids) > IDS_LISTED else ""
        parts.append(f"{split} {', '.join(map(str, ids[:IDS_LISTED]))}{more}")
    return "; ".join(parts)
