"""Fixtures writing the sample annotation files of :mod:`annotation_samples` into ``tmp_path``."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from annotation_samples import VIDOR_LOCATIONS, VIDOR_TRACKS, VIDSTG_ITEMS, vidor_file


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[[str, Any], Path]:
    """Write a JSON payload (NaN literals allowed, as Python writes them) under ``tmp_path``."""

    def write(name: str, payload: Any) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload))
        return path

    return write


@pytest.fixture
def vidstg_files(write_json) -> Callable[..., tuple[Path, Path]]:
    """Write the VidSTG sentence file and VidOR box files after optional edits (a VidOR payload set to None is
    not written); returns (sentence file, vidor_dir)."""

    def make(edit_items: Callable[[list], None] | None = None,
             edit_vidor: Callable[[dict[str, dict]], None] | None = None) -> tuple[Path, Path]:
        items = copy.deepcopy(VIDSTG_ITEMS)
        vidor = {vid: vidor_file(vid) for vid in VIDOR_TRACKS}
        if edit_items:
            edit_items(items)
        if edit_vidor:
            edit_vidor(vidor)
        path = write_json("vidstg/val_annotations.json", items)
        for vid, payload in vidor.items():
            if payload is not None:
                write_json(f"vidor/{VIDOR_LOCATIONS[vid]}/{vid}.json", payload)
        return path, path.parent.parent / "vidor"

    return make
