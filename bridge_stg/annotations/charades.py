"""Charades-STA sentence files (``charades_sta_{train,test}.txt``): temporal-only grounding.

One sentence per line, ``<video_id> <start_s> <end_s>##<sentence>``. The file gives times in seconds and nothing
about the video, so each video is probed once (``ReadOptions.probe``) for its frame rate, frame count and size. The
records carry a span and no boxes; sentence ids count the file's non-blank lines, so skipping never renumbers.
"""

from __future__ import annotations

from pathlib import Path

from bridge_stg.annotations.errors import Where
from bridge_stg.annotations.load import ReadOptions
from bridge_stg.annotations.parsing import VideoFilter
from bridge_stg.annotations.report import Collector, LoadReport
from bridge_stg.structures import SentenceRecord

LINE_FORMAT = "'<video_id> <start_s> <end_s>##<sentence>'"


def read_charades_sta(path: Path, dataset: str, options: ReadOptions) -> tuple[list[SentenceRecord], LoadReport]:
    """Records of a Charades-STA file; ``options.media_root`` holds ``<video_id>.mp4``, probed by
    ``options.probe``."""
    if options.probe is None or options.media_root is None:
        raise ValueError(f"{path}: Charades-STA files state no frame rate; reading them needs the video folder "
                         "(media_root) and a probe (bridge_stg.data.video_io.probe_video)")
    report = LoadReport(path=path, dataset=dataset, file_format="charades_sta", has_boxes=False)
    collect = Collector(report, VideoFilter(tuple(options.exclude_videos)), options.skip_invalid)
    infos: dict = {}
    numbered = [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    for sentence_id, (line_no, line) in enumerate(numbered):
        parts = line.partition("##")[0].split()
        where = Where(path, sentence_id, parts[0] if parts else "?", (sentence_id,))
        collect.entry(where, _record, where, f"line {line_no}", line, dataset, options, infos)
    return collect.finish()


def _record(where: Where, field: str, line: str, dataset: str, options: ReadOptions, infos: dict) -> SentenceRecord:
    head, sep, sentence = line.partition("##")
    parts = head.split()
    if not sep or len(parts) != 3 or not sentence.strip():
        raise where.error(field, f"expected {LINE_FORMAT}, got {line!r}")
    vid = parts[0]
    try:
        start_s, end_s = float(parts[1]), float(parts[2])
    except ValueError:
        raise where.error(field, f"start and end must be seconds, got {parts[1]!r} and {parts[2]!r}") from None
    if not end_s > start_s >= 0:
        raise where.error(field, f"the span {start_s}-{end_s} s must satisfy 0 <= start < end")
    if vid not in infos:
        infos[vid] = options.probe(options.media_root / f"{vid}.mp4")
    info = infos[vid]
    start = min(int(round(start_s * info.fps)), info.frame_count - 1)
    end = min(max(int(round(end_s * info.fps)), start + 1), info.frame_count)
    return SentenceRecord(
        sentence_id=where.sentence_ids[0], dataset=dataset, video_id=vid, video_path=f"{vid}.mp4", fps=info.fps,
        frame_count=info.frame_count, width=info.width, height=info.height, segment=(0, info.frame_count),
        tube=(start, end), query=sentence.strip())
