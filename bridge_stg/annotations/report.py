"""What a load kept, excluded and skipped, and the collector that applies ``exclude_videos`` /
``skip_invalid``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bridge_stg.annotations.errors import AnnotationError, Where
from bridge_stg.annotations.parsing import VideoFilter
from bridge_stg.structures import SentenceRecord

T = TypeVar("T")


@dataclass(frozen=True)
class DroppedEntry:
    """An entry (or one sentence of it) left out of the records, with the sentence ids it would have had."""

    entry: int
    video_id: str
    sentence_ids: tuple[int, ...]
    reason: str


@dataclass
class LoadReport:
    """Outcome of :func:`~bridge_stg.annotations.load_annotations`.

    ``file_format`` is the detected format; ``num_entries`` counts the file's top-level entries (a VidSTG item
    holds several sentences). ``has_boxes`` is False when the format carries boxes but none were loaded
    (VidSTG without ``vidor_dir``) or when it has none (query files). ``unmatched_excludes`` lists
    ``exclude_videos`` names that matched no entry (often a typo).
    """

    path: Path
    dataset: str
    file_format: str
    has_boxes: bool
    num_entries: int = 0
    num_records: int = 0
    excluded: list[DroppedEntry] = field(default_factory=list)
    skipped: list[DroppedEntry] = field(default_factory=list)
    unmatched_excludes: tuple[str, ...] = ()

    @property
    def num_excluded_sentences(self) -> int:
        return sum(len(e.sentence_ids) for e in self.excluded)

    @property
    def num_skipped_sentences(self) -> int:
        return sum(len(e.sentence_ids) for e in self.skipped)

    def summary(self) -> str:
        lines = [
            f"{self.path} ({self.file_format}, {self.dataset}): {self.num_records} records from "
            f"{self.num_entries} entries" + ("" if self.has_boxes else ", no boxes"),
        ]
        if self.excluded:
            videos = ", ".join(sorted({e.video_id for e in self.excluded}))
            lines.append(f"  excluded {self.num_excluded_sentences} sentences of {len(self.excluded)} "
                         f"entries (exclude_videos): {videos}")
        if self.skipped:
            lines.append(f"  skipped {self.num_skipped_sentences} invalid sentences in "
                         f"{len(self.skipped)} places (skip_invalid):")
            lines.extend(f"    - {e.reason}" for e in self.skipped)
        if self.unmatched_excludes:
            lines.append(f"  exclude_videos names matching no entry: {', '.join(self.unmatched_excludes)}")
        return "\n".join(lines)


class Collector:
    """Gathers records of one file; drops excluded videos; turns entry errors into skips when
    ``skip_invalid``."""

    def __init__(self, report: LoadReport, exclude: VideoFilter, skip_invalid: bool) -> None:
        self.report = report
        self.records: list[SentenceRecord] = []
        self._exclude = exclude
        self._skip_invalid = skip_invalid

    def entry_seen(self) -> None:
        self.report.num_entries += 1

    def is_excluded(self, where: Where) -> bool:
        assert where.entry is not None and where.video_id is not None
        if not self._exclude.matches(where.video_id):
            return False
        reason = f"video '{where.video_id}' is listed in exclude_videos"
        self.report.excluded.append(DroppedEntry(where.entry, where.video_id, where.sentence_ids, reason))
        return True

    def attempt(self, where: Where, build: Callable[..., T], *args: Any) -> T | None:
        """``build(*args)``; ``None`` (recorded as a skip) when it raises :class:`AnnotationError` and
        skipping is on."""
        try:
            return build(*args)
        except AnnotationError as exc:
            if not self._skip_invalid:
                raise
            assert where.entry is not None
            ids = exc.sentence_ids or where.sentence_ids
            self.report.skipped.append(DroppedEntry(where.entry, where.video_id or "?", ids, str(exc)))
            return None

    def admit(self, where: Where) -> bool:
        """Count an entry of the file; False when it is excluded (and so recorded)."""
        self.entry_seen()
        return not self.is_excluded(where)

    def entry(self, where: Where, build: Callable[..., SentenceRecord], *args: Any) -> None:
        """One entry that yields one record: counted, excluded or built (a failure raised or skipped)."""
        if self.admit(where):
            record = self.attempt(where, build, *args)
            if record is not None:
                self.add(record)

    def add(self, record: SentenceRecord) -> None:
        self.records.append(record)
        self.report.num_records += 1

    def finish(self) -> tuple[list[SentenceRecord], LoadReport]:
        self.report.unmatched_excludes = self._exclude.unmatched()
        return self.records, self.report
