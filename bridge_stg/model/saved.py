"""A saved model of either kind, told apart by its config file: what the evaluation script and the predictor load.

``BridgeSTG.save_pretrained`` writes ``bridge_stg_config.json``, ``CoupledBaseline.save_pretrained`` writes
``coupled_config.json``; both write ``backbone/`` and ``manifest.json``. :func:`missing_files` names what a folder
lacks of that, so a wrong folder is refused with the missing file named before anything is loaded.
"""

from __future__ import annotations

from pathlib import Path

from bridge_stg.model import mllm
from bridge_stg.model.bridge_stg import CONFIG_FILE, HEADS_FILE, BridgeSTG
from bridge_stg.model.coupled import BACKBONE_DIR, CoupledBaseline, is_coupled_checkpoint
from bridge_stg.model.coupled import CONFIG_FILE as COUPLED_CONFIG_FILE

__all__ = ["load_saved_model", "missing_files"]


def missing_files(directory: str | Path) -> list[str]:
    """The files an exported model needs that ``directory`` lacks (``[]``: it looks like one). A folder with neither
    config file gets both named. The manifest is optional (exports older than manifests load with a warning)."""
    root = Path(directory)
    if not root.is_dir():
        return [f"{root} (no such folder)" if not root.exists() else f"{root} (a file, not a folder)"]
    backbone = [f"{BACKBONE_DIR}/{mllm.CONFIG_FILE}", f"{BACKBONE_DIR}/{mllm.TOKENS_FILE}"]
    if is_coupled_checkpoint(root):
        needed = [COUPLED_CONFIG_FILE, *backbone]
    elif (root / CONFIG_FILE).is_file():
        needed = [CONFIG_FILE, HEADS_FILE, *backbone]
    else:
        return [f"{CONFIG_FILE} or {COUPLED_CONFIG_FILE}"]
    return [name for name in needed if not (root / name).is_file()]


def load_saved_model(directory: str | Path, verify: bool = True) -> BridgeSTG | CoupledBaseline:
    """A saved model of either kind (``save_pretrained`` output), recognised by its config file; its manifest
    (``manifest.json``) is verified unless ``verify=False``."""
    kind = CoupledBaseline if is_coupled_checkpoint(directory) else BridgeSTG
    return kind.from_pretrained(directory, verify=verify)

