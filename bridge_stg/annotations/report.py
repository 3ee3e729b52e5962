"""What a load kept, excluded, skipped and flagged, and the collector that applies ``exclude_videos`` /
``skip_invalid`` and flags repeated sentences."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bridge_stg.annotations.errors import AnnotationError, Where
from bridge_stg.annotations.parsing import VideoFilter
from bridge_stg.structures import SentenceRecord

T = TypeVar("T")
WARNINGS_LISTED = 10  # per report summary; LoadReport.warnings holds them all
DUPLICATE_FIX = ("keep one copy unless the sentence is meant to count twice (the official VidSTG files repeat some "
                 "sentences across items, and the reference evaluators count every copy, so copies are kept)")


@dataclass(frozen=True)
class DroppedEntry:
    """An entry (or one sentence of it) left out of the records, with the sentence ids it would have had."""

    entry: int
    video_id: str
    sentence_ids: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class FlaggedEntry:
    """A sentence kept in the records whose annotation is suspect: ``kind`` is ``"duplicate"`` (it repeats an
    earlier sentence) or ``"box_count"`` (its boxes do not span its annotated times); ``message`` names the file,
    the sentence, the field and the fix."""

    entry: int
    video_id: str
    sentence_ids: tuple[int, ...]
    kind: str
    message: str


@dataclass
class LoadReport:
    """Outcome of :func:`~bridge_stg.annotations.load_annotations`.

    ``file_format`` is the detected format; ``num_entries`` counts the file's top-level entries (a VidSTG item
    holds several sentences). ``has_boxes`` is False when the format carries boxes but none were loaded
    (VidSTG without ``vidor_dir``) or when it has none (query files). ``unmatched_excludes`` lists
    ``exclude_videos`` names that matched no entry (often a typo). ``warnings`` flags kept sentences whose
    annotation is suspect but not invalid (see :class:`FlaggedEntry`).
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
    warnings: list[FlaggedEntry] = field(default_factory=list)

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
        if self.warnings:
            lines.append(f"  {len(self.warnings)} warnings ({self.warning_counts()}), sentences kept:")
            lines.extend(f"    - {w.message}" for w in self.warnings[:WARNINGS_LISTED])
            if len(self.warnings) > WARNINGS_LISTED:
                lines.append(f"    ... and {len(self.warnings) - WARNINGS_LISTED} more")
        return "\n".join(lines)

    def warning_counts(self) -> str:
        """``'3 duplicate, 1 box_count'``: the warnings per kind."""
        return ", ".join(f"{n} {kind}" for kind, n in Counter(w.kind for w in self.warnings).items())


class Collector:
    """Gathers records of one file; drops excluded videos; turns entry errors into skips when
    ``skip_invalid``; flags a sentence that repeats an earlier one (same video, target, type, segment, tube and
    text up to case and spacing)."""

    def __init__(self, report: LoadReport, exclude: VideoFilter, skip_invalid: bool) -> None:
        self.report = report
        self.records: list[SentenceRecord] = []
        self._exclude = exclude
        self._skip_invalid = skip_invalid
        self._first: dict[tuple, tuple[int, int | None]] = {}  # duplicate key -> (sentence id, entry)

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
                self.add(record, where)

    def add(self, record: SentenceRecord, where: Where) -> None:
        """Keep ``record`` (built from the entry at ``where``), flagged when it repeats an earlier sentence."""
        key = _duplicate_key(record)
        first = self._first.setdefault(key, (record.sentence_id, where.entry))
        if first != (record.sentence_id, where.entry):
            self.warn(where, "duplicate", "<sentence>",
                      f"repeats sentence {first[0]} (entry {first[1]}): same video, target, type, segment, tube "
                      f"and text {record.query!r}", DUPLICATE_FIX)
        self.records.append(record)
        self.report.num_records += 1

    def warn(self, where: Where, kind: str, field: str, problem: str, fix: str) -> None:
        """Flag the sentence(s) at ``where`` (kept in the records) with a message naming file, sample and fix."""
        assert where.entry is not None
        message = str(where.error(field, problem, fix=fix))
        self.report.warnings.append(FlaggedEntry(where.entry, where.video_id or "?", where.sentence_ids, kind,
                                                 message))

    def finish(self) -> tuple[list[SentenceRecord], LoadReport]:
        self.report.unmatched_excludes = self._exclude.unmatched()
        return self.records, self.report


def _duplicate_key(record: SentenceRecord) -> tuple:
    text = " ".join(record.query.casefold().split())
    return record.video_id, record.target_id, record.sentence_type, record.segment, record.tube, text
