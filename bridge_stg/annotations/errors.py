"""Errors of annotation files, and the location (file, entry, sentences, video) every error names."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

DATA_FIX = "correct the entry, or drop it with exclude_videos={videos} or skip_invalid=True"


class AnnotationError(ValueError):
    """A malformed annotation entry or file.

    The message names the file, the sentence(s) (id and video) and the field, and ends with a fix when one
    exists. The same facts are kept as attributes so that callers (and :class:`~.report.LoadReport`) need not
    parse it.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: Path | str,
        field: str,
        sentence_ids: tuple[int, ...] = (),
        video_id: str | None = None,
        entry: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = Path(path)
        self.field = field
        self.sentence_ids = sentence_ids
        self.video_id = video_id
        self.entry = entry
        self.fix = fix
        super().__init__(self._message())

    def __reduce__(self):
        """Picklable (e.g. raised in a data-loader worker) despite the keyword-only constructor."""
        kwargs = {"path": self.path, "field": self.field, "sentence_ids": self.sentence_ids,
                  "video_id": self.video_id, "entry": self.entry, "fix": self.fix}
        return functools.partial(type(self), **kwargs), (self.problem,)

    def _message(self) -> str:
        video = f"video '{self.video_id}'" if self.video_id is not None else None
        entry = f"entry {self.entry}" if self.entry is not None else None
        if self.sentence_ids:
            details = ", ".join(d for d in (video, entry) if d)
            subject = _describe_sentences(self.sentence_ids) + (f" ({details})" if details else "")
        elif entry:
            subject = entry + (f" ({video})" if video else "")
        else:
            subject = video
        where = f"{self.path}: {subject}" if subject else str(self.path)
        text = f"{where}: field '{self.field}': {self.problem}"
        return f"{text}. Fix: {self.fix}" if self.fix else text


def _describe_sentences(ids: tuple[int, ...]) -> str:
    if len(ids) == 1:
        return f"sentence {ids[0]}"
    if list(ids) == list(range(ids[0], ids[0] + len(ids))):
        return f"sentences {ids[0]}-{ids[-1]}"
    return f"sentences {', '.join(map(str, ids))}"


@dataclass(frozen=True)
class Where:
    """Where an entry lives: the file, the entry's position in it, its video and its sentence ids."""

    path: Path
    entry: int | None = None
    video_id: str | None = None
    sentence_ids: tuple[int, ...] = ()

    def error(self, field: str, problem: str, fix: str | None = DATA_FIX) -> AnnotationError:
        """The error at ``field`` of this entry; the default fix offers to drop the entry."""
        if fix is DATA_FIX:
            fix = fix.format(videos=[self.video_id] if self.video_id else "[...]")
        return AnnotationError(
            problem,
            path=self.path,
            field=field,
            sentence_ids=self.sentence_ids,
            video_id=self.video_id,
            entry=self.entry,
            fix=fix,
        )

    def sentence(self, sentence_id: int) -> Where:
        return replace(self, sentence_ids=(sentence_id,))
