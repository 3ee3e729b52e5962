"""``bridge-stg-data``: dataset tools. ``check`` tells whether the videos of annotation files are installed and
serve every annotated frame; each further tool is one ``_add_<name>(sub)`` call in :func:`build_parser`."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bridge_stg.structures import SentenceRecord

PROG = "bridge-stg-data"
DATASETS = ("vidstg", "hcstvg_v1", "hcstvg_v2")
PROBLEM_KINDS = ("missing", "unreadable", "short", "fps_mismatch")
PROBLEM_TITLES = {"missing": "missing", "unreadable": "unreadable (corrupt or not a video)",
                  "short": "shorter than annotated", "fps_mismatch": "frame rate differs from the annotation"}
FPS_TOLERANCE = 0.01  # relative
PROGRESS_EVERY = 100


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
                    f"from the annotation's by more than {FPS_TOLERANCE:.0%}. Exit 0: no problem; 1: problems "
                    "found; 2: usage or annotation error.")
    p.add_argument("--dataset", required=True, choices=DATASETS)
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
    p.add_argument("--backend", default="auto", choices=("auto", "decord", "pyav"), help="video reader")
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
    """What the annotations ask of one video file: frames ``[0, frames_needed)`` must decode."""

    video_path: str
    frames_needed: int
    annotated_frames: int
    annotated_fps: float
    sentences: int = 0


@dataclass(frozen=True)
class VideoProblem:
    kind: str  # one of PROBLEM_KINDS
    video: str
    reason: str
    sentences: int
    details: dict[str, Any] = field(default_factory=dict)


def run_check(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        raise ValueError(f"--limit must be >= 0, got {args.limit}")
    if not args.video_dir.is_dir():
        raise ValueError(f"--video-dir {args.video_dir} is not a directory")
    splits = _load_splits(args)
    records = [rec for _, recs, _ in splits for rec in recs]
    needs = video_needs(records)
    checked = needs if args.limit is None else needs[:args.limit]
    problems = check_videos(checked, args.video_dir, check_fps=args.dataset == "vidstg", backend=args.backend,
                            progress=_progress)
    report = {
        "dataset": args.dataset,
        "video_dir": str(args.video_dir),
        "splits": {name: sentence_counts(recs, args.dataset) for name, recs, _ in splits},
        "sentences": len(records),
        "videos": len(needs),
        "videos_checked": len(checked),
        "problem_counts": {kind: sum(p.kind == kind for p in problems) for kind in PROBLEM_KINDS},
        "problems": {kind: [_problem_json(p) for p in problems if p.kind == kind] for kind in PROBLEM_KINDS},
        "annotation_reports": [report.summary() for _, _, report in splits],
    }
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 1 if problems else 0


def _load_splits(args: argparse.Namespace) -> list[tuple[str, list[SentenceRecord], Any]]:
    """``(split name, records, LoadReport)`` per annotation file; the split is the file's stem (its path when
    two files share a stem)."""
    from bridge_stg.annotations import load_annotations

    stems = Counter(path.stem for path in args.annotations)
    out = []
    for path in args.annotations:
        records, report = load_annotations(path, args.dataset, vidor_dir=args.vidor_dir,
                                           exclude_videos=tuple(args.exclude_videos), skip_invalid=args.skip_invalid)
        out.append((path.stem if stems[path.stem] == 1 else str(path), records, report))
    return out


def sentence_counts(records: Sequence[SentenceRecord], dataset: str) -> dict[str, Any]:
    """Sentences of one split, by type: declarative / interrogative for VidSTG, ``all`` for HC-STVG."""
    if dataset == "vidstg":
        types = {t: sum(r.sentence_type == t for r in records) for t in ("declarative", "interrogative")}
    else:
        types = {"all": len(records)}
    return {"sentences": len(records), "types": types}


def video_needs(records: Sequence[SentenceRecord]) -> list[VideoNeed]:
    """One :class:`VideoNeed` per distinct ``video_path``, in order of first appearance; the frames needed are the
    largest ``segment``/``tube`` end over the video's sentences."""
    needs: dict[str, VideoNeed] = {}
    for rec in records:
        end = max(rec.segment[1], rec.tube[1] if rec.tube is not None else 0)
        need = needs.setdefault(rec.video_path, VideoNeed(rec.video_path, 0, 0, rec.fps))
        need.frames_needed = max(need.frames_needed, end)
        need.annotated_frames = max(need.annotated_frames, rec.frame_count)
        need.sentences += 1
    return list(needs.values())


def check_videos(
    needs: Sequence[VideoNeed],
    video_dir: Path,
    *,
    check_fps: bool,
    backend: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> list[VideoProblem]:
    """The problems of every video, probing each once; ``progress(done, total)`` every 100 videos."""
    problems: list[VideoProblem] = []
    for done, need in enumerate(needs, start=1):
        problems.extend(check_video(need, video_dir, check_fps=check_fps, backend=backend))
        if progress is not None and (done % PROGRESS_EVERY == 0 or done == len(needs)):
            progress(done, len(needs))
    return problems


def check_video(need: VideoNeed, video_dir: Path, *, check_fps: bool, backend: str = "auto") -> list[VideoProblem]:
    """Problems of one video: missing or unreadable (probe fails), short (its last needed frame does not decode),
    fps mismatch (``check_fps`` and more than 1% off)."""
    from bridge_stg.data.video_io import VideoReadError, probe_video, read_frames

    path = video_dir / need.video_path
    try:
        info = probe_video(path, backend=backend)
        if need.frames_needed > 0:
            read_frames(path, [need.frames_needed - 1], expected_frame_count=need.annotated_frames, backend=backend)
    except VideoReadError as e:
        kind = "short" if e.reason == "too_short" else e.reason
        details = {"frames_needed": need.frames_needed, "annotated_frames": need.annotated_frames,
                   "decodable_frames": e.actual_frame_count} if kind == "short" else {}
        return [VideoProblem(kind, need.video_path, str(e), need.sentences, details)]
    if check_fps and need.annotated_fps > 0 and abs(info.fps - need.annotated_fps) > FPS_TOLERANCE * need.annotated_fps:
        reason = f"{path}: the video runs at {info.fps:g} fps, the annotation says {need.annotated_fps:g} fps"
        details = {"annotated_fps": need.annotated_fps, "video_fps": info.fps}
        return [VideoProblem("fps_mismatch", need.video_path, reason, need.sentences, details)]
    return []


def _problem_json(problem: VideoProblem) -> dict[str, Any]:
    out = asdict(problem)
    out.pop("kind")
    out.update(out.pop("details"))
    return out


def _progress(done: int, total: int) -> None:
    if total >= PROGRESS_EVERY:
        print(f"{PROG}: probed {done}/{total} videos", file=sys.stderr, flush=True)


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
    for kind in PROBLEM_KINDS:
        items = report["problems"][kind]
        if items:
            lines.append(f"{PROBLEM_TITLES[kind]}: {len(items)} videos")
            lines.extend(f"  - {p['reason']} [{p['sentences']} sentences]" for p in items)
    bad = sum(report["problem_counts"].values())
    lines.append(f"result: {bad} problems in {report['videos_checked']} checked videos" if bad
                 else f"result: OK, all {report['videos_checked']} checked videos serve their annotations")
    return "\n".join(lines)
