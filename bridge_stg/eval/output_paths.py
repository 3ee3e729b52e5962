"""Output paths, checked before any work so that a long evaluation never fails at its last step, and written whole.

The checks raise ``ValueError`` naming the option, the path and the fix; ``option`` is how the user gave the path
(``--out``, ``hydra.run.dir``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def check_output_dir(path: str | Path, option: str, fix: str = "choose another path") -> None:
    """``path`` is a writable folder, or can be created: its nearest existing ancestor is a writable folder."""
    _check_creatable(Path(path), Path(path), option, fix)


def check_output_file(path: str | Path, option: str, inputs: Iterable[str | Path] = (),
                      fix: str = "choose another path") -> None:
    """``path`` can be written as a file (its missing folders are created on writing) and is none of ``inputs``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is an existing folder, not a file; {fix}")
    if path.exists():
        if any(Path(p).exists() and path.samefile(p) for p in inputs):
            raise ValueError(f"{option} {path} is one of the input files and would be overwritten; {fix}")
        if not os.access(path, os.W_OK):
            raise ValueError(f"{option} {path} exists and is not writable; {fix}")
    _check_creatable(path, path.parent, option, fix)


def _check_creatable(target: Path, folder: Path, option: str, fix: str) -> None:
    existing = folder
    while not (existing.exists() or existing.is_symlink()) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{option} {target}: {existing} is a file, not a folder; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {target}: no permission to write in {existing}; {fix}")


def check_distinct(paths: dict[str, str | Path | None]) -> None:
    """No two options (``{option: path}``, unset ones ``None``) name the same file."""
    seen: dict[Path, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        key = Path(path).resolve()
        if key in seen:
            raise ValueError(f"{seen[key]} and {option} both name {path}; give each output its own file")
        seen[key] = option
