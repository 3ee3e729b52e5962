"""What a resume may change: the resolved config of the run against the one its checkpoint was written with.

Three kinds of key:

* **free** — how the run is watched, kept and where its files live (``logging.*``, ``eval.*``, logging / saving
  intervals, data loader workers, dataset and checkpoint paths, the run directory): changed values are logged
  and used.
* **schedule** — ``optim.*`` and ``train.max_steps``: refused by default, naming each key with both values; with
  ``train.on_resume_change=apply`` the new values hold from the resumed step on (the learning rates jump to the new
  schedule's value at that step; Adam's moments are kept), and ``run.json`` records both.
* **fixed** — everything else (model, loss, data, batch sizes, seed, engine, pretraining recipe): the checkpoint
  was trained under them, so a change is always refused.

Never a mix: either every changed schedule key is applied, or the resume is refused.
"""

from __future__ import annotations

import json
from typing import Any

from bridge_stg.engine.errors import ResumeError

FREE_KEYS = ("run_dir", "train.resume", "train.on_resume_change", "train.verify_checkpoints", "train.max_bad_steps",
             "train.log_every", "train.eval_every", "train.save_every", "train.keep_last", "data.num_workers",
             "data.synthetic_dir", "model.backbone.path", "model.backbone.attn_implementation")
FREE_PREFIXES = ("logging.", "eval.")
FREE_PATH_FIELDS = ("annotations", "media_root", "vidor_dir")  # of every data source: the dataset copy may move
SCHEDULE_PREFIXES = ("optim.",)
SCHEDULE_KEYS = ("train.max_steps",)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [{"d": 2}]}`` -> ``{"a.b": 1, "c[0].d": 2}``; lists of scalars stay whole."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(tree, list) and any(isinstance(v, (dict, list)) for v in tree):
        out = {}
        for i, value in enumerate(tree):
            out.update(flatten(value, f"{prefix}[{i}]"))
        out[f"{prefix}.__len__"] = len(tree)
        return out
    return {prefix: tree}


def kind_of(key: str) -> str:
    if key in FREE_KEYS or key.startswith(FREE_PREFIXES) or key.rsplit(".", 1)[-1] in FREE_PATH_FIELDS:
        return "free"
    if key in SCHEDULE_KEYS or key.startswith(SCHEDULE_PREFIXES):
        return "schedule"
    return "fixed"


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every key whose value differs, ``{key: {"checkpoint": old, "now": new, "kind": ...}}`` (absent = None)."""
    old, new = flatten(saved), flatten(current)
    changes = {}
    for key in sorted(set(old) | set(new)):
        if json.dumps(old.get(key), sort_keys=True) != json.dumps(new.get(key), sort_keys=True):
            changes[key] = {"checkpoint": old.get(key), "now": new.get(key), "kind": kind_of(key)}
    return changes


def check_resume(changes: dict[str, dict[str, Any]], policy: str, checkpoint: str) -> dict[str, dict[str, Any]]:
    """Raise :class:`ResumeError` for the changes that may not be resumed under ``policy``; return the schedule
    changes to apply (empty when there are none)."""
    fixed = {k: v for k, v in changes.items() if v["kind"] == "fixed"}
    schedule = {k: v for k, v in changes.items() if v["kind"] == "schedule"}
    if fixed:
        raise ResumeError(f"cannot resume from {checkpoint}: it was trained with a different configuration:\n"
                          f"{_listing(fixed)}\nResume with the checkpoint's values (the run's run.json holds them), "
                          "or start a new run directory for the new configuration")
    if schedule and policy != "apply":
        raise ResumeError(f"resuming from {checkpoint} with changed optimisation settings:\n{_listing(schedule)}\n"
                          "Pass train.on_resume_change=apply to train on with the new values from the resumed step "
                          "on, or resume with the checkpoint's values")
    return schedule


def _listing(changes: dict[str, dict[str, Any]]) -> str:
    rows = [f"  {key}: {v['checkpoint']!r} in the checkpoint, {v['now']!r} now" for key, v in changes.items()]
    return "\n".join(rows[:20] + ([f"  ... and {len(rows) - 20} more"] if len(rows) > 20 else []))
