"""Integrity of what the project writes to disk: manifests of sizes and SHA-256 hashes, durable writes, and readers
whose errors name the damaged file.

Every training checkpoint and every exported model carries ``manifest.json``: the size and hash of each file under
its folder. Loading verifies it (a truncated or bit-flipped file is named, with the fix) unless the caller opts out;
a folder without a manifest (written before manifests existed) loads with a warning. Manifests guard against damage
(kills, full disks, bad copies between machines), not against an attacker who can rewrite the manifest too: that is
what never unpickling untrusted files is for (:mod:`bridge_stg.engine.deepspeed_backend`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 22


class DamagedFileError(ValueError):
    """A file the project wrote (or was given) cannot be read or does not match its manifest."""


# ------------------------------------------------------------------------------------------------ durable writes


def fsync_tree(root: Path) -> None:
    """Flush every file under ``root`` and the folders themselves to disk (a rename is durable only after that)."""
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (creating its folders) through a temporary file of this process in the same
    folder, flushed to disk: a kill leaves the old content or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, text.encode())


def replace_dir(new: Path, final: Path) -> None:
    """Put the complete folder ``new`` in the place of ``final``: the old one is renamed aside and deleted only
    after the swap, so a kill leaves a complete folder under one of the three names."""
    fsync_tree(new)
    old = final.with_name(final.name + ".old")
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(new, final)
    fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old)


# ------------------------------------------------------------------------------------------------ manifests


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p != root / MANIFEST)


def write_manifest(root: Path) -> dict[str, Any]:
    """Hash every file under ``root`` (hashing threads in parallel: hashlib releases the GIL) into
    ``root/manifest.json``, written durably. Returns the manifest."""
    names = _files(root)
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(names)))) as pool:
        hashes = list(pool.map(lambda n: _sha256(root / n), names))
    manifest = {"format": MANIFEST_FORMAT, "algorithm": "sha256",
                "files": {n: {"size": (root / n).stat().st_size, "sha256": h} for n, h in zip(names, hashes)}}
    write_text_atomic(root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def manifest_problems(root: Path, hashes: bool = True) -> list[str] | None:
    """What differs between ``root`` and its manifest (missing, resized or changed files), ``[]`` when it verifies,
    ``None`` when there is no manifest. Sizes are checked first; ``hashes=False`` checks sizes only."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = read_json(path)
        files = manifest["files"]
        expected = {str(n): (int(e["size"]), str(e["sha256"])) for n, e in files.items()}
    except (DamagedFileError, KeyError, TypeError, ValueError, AttributeError) as err:
        return [f"{path} is unreadable ({err})"]
    problems = []
    present = []
    for name, (size, _) in sorted(expected.items()):
        file = root / name
        if not file.is_file():
            problems.append(f"{file} is missing")
        elif file.stat().st_size != size:
            problems.append(f"{file} has {file.stat().st_size} bytes, the manifest says {size}")
        else:
            present.append(name)
    if hashes and present:
        with ThreadPoolExecutor(max_workers=min(8, len(present))) as pool:
            actual = dict(zip(present, pool.map(lambda n: _sha256(root / n), present)))
        problems += [f"{root / n} does not match its SHA-256 in {path} (damaged or modified)"
                     for n in present if actual[n] != expected[n][1]]
    return problems


def verify_manifest(root: Path, what: str, opt_out: str, hashes: bool = True) -> None:
    """Raise :class:`DamagedFileError` naming every damaged file of ``root`` (``what`` it is, e.g. "checkpoint");
    warn when there is no manifest. ``opt_out`` names the switch that skips the check."""
    problems = manifest_problems(root, hashes=hashes)
    if problems is None:
        log.warning("%s has no %s (written before manifests existed?): its files cannot be verified", root, MANIFEST)
        return
    if problems:
        listed = "\n  ".join(problems[:10]) + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise DamagedFileError(f"{what} {root} failed its integrity check:\n  {listed}\nCopy it again from its source "
                               f"(or use an intact one); to load it anyway, {opt_out}")


# ------------------------------------------------------------------------------------------------ readers


def read_json(path: Path) -> Any:
    """JSON whose parse error names the file."""
    try:
        return json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedFileError(f"{path} is not valid JSON ({err}); the file is damaged: restore it from a good "
                               "copy") from None


def load_safetensors(path: Path, device: str = "cpu") -> dict:
    """A safetensors file whose read error names the file (``safetensors`` alone does not)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise DamagedFileError(f"{path} is missing; restore the folder from a good copy")
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise DamagedFileError(f"{path} is not a readable safetensors file ({err}); the file is damaged or "
                               "truncated: restore it from a good copy") from None
