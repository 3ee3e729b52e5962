"""What a predictor needs besides the weights: the evaluation settings the training config held, exported beside the
model as ``inference.json`` (``bridge_stg/engine/train.py`` writes it into ``runs/<exp>/<time>/model/``).

Without them a predictor would sample frames differently from the evaluation that measured the model (another frame
rate or frame cap, other pixel sizes, prompts with or without ``<t=..s>`` texts) and report numbers of a different
model. The file is small JSON, read without unpickling::

    {"format": 1, "eval_budget": {"fps": 2.0, "max_frames": 16, ...}, "timestamps": true, "box_fill": "linear",
     "protocol": "tubedetr"}
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from bridge_stg.data.frames import FrameBudget

log = logging.getLogger(__name__)

INFERENCE_FILE = "inference.json"
SETTINGS_FORMAT = 1
BoxFill = Literal["linear", "nearest"]
PROTOCOLS = ("tubedetr", "stcat", "hcstvg_official")  # bridge_stg.eval.protocols.PROTOCOL_NAMES (checked by a test)


@dataclass(frozen=True)
class InferenceSettings:
    """The evaluation settings of a trained model.

    ``eval_budget`` (``data.eval_budget``): the frames and pixels the model sees. ``timestamps`` (``data.timestamps``):
    whether prompts carry ``<t=..s>`` texts. ``box_fill`` (``eval.box_fill``): how boxes of the decoded frames are
    spread over the other frames. ``protocol`` (``eval.protocol``): the protocol the run was scored with; it decides
    which frames an evaluation asks boxes on (:meth:`~bridge_stg.eval.protocols.Protocol.prediction_frame_ids`),
    while a predictor puts a box on every frame of the predicted span.
    """

    eval_budget: FrameBudget = field(default_factory=FrameBudget)
    timestamps: bool = True
    box_fill: BoxFill = "linear"
    protocol: str = "tubedetr"

    def __post_init__(self) -> None:
        if self.box_fill not in get_args(BoxFill):
            raise ValueError(f"box_fill must be one of {list(get_args(BoxFill))}, got {self.box_fill!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {self.protocol!r}")
        if not isinstance(self.timestamps, bool):
            raise ValueError(f"timestamps must be true or false, got {self.timestamps!r}")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types, with the file format's version."""
        return {"format": SETTINGS_FORMAT, "eval_budget": dataclasses.asdict(self.eval_budget),
                "timestamps": self.timestamps, "box_fill": self.box_fill, "protocol": self.protocol}

    @classmethod
    def from_json(cls, data: Any) -> InferenceSettings:
        """Inverse of :meth:`to_json`; an unknown format, key or a wrong value raises ``ValueError`` naming it."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != SETTINGS_FORMAT:
            raise ValueError(f"format {data.get('format')!r} is not {SETTINGS_FORMAT}, the only one this version reads")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields - {"format"})
        if unknown:
            raise ValueError(f"unknown keys {unknown}; expected {sorted(fields)}")
        budget = data.get("eval_budget", {})
        budget_fields = {f.name for f in dataclasses.fields(FrameBudget)}
        if not isinstance(budget, dict) or set(budget) - budget_fields:
            raise ValueError(f"eval_budget must be an object with keys among {sorted(budget_fields)}, got {budget!r}")
        values = {k: v for k, v in data.items() if k in fields and k != "eval_budget"}
        try:
            return cls(eval_budget=FrameBudget(**budget), **values)
        except TypeError as err:
            raise ValueError(str(err)) from None

    def write(self, directory: str | Path) -> Path:
        """Write ``<directory>/inference.json`` (call before the folder's manifest is written)."""
        path = Path(directory) / INFERENCE_FILE
        path.write_text(self.text())
        return path

    def text(self) -> str:
        """The file's content."""
        return json.dumps(self.to_json(), indent=2) + "\n"


def read_settings(model_dir: str | Path) -> InferenceSettings:
    """The settings exported with the model in ``model_dir``; a model exported before ``inference.json`` existed gets
    the defaults (``FrameBudget()``, timestamps on, linear fill, ``tubedetr``), with a log line saying so. A file that
    does not parse raises ``ValueError`` naming it."""
    path = Path(model_dir) / INFERENCE_FILE
    if not path.is_file():
        log.warning("%s has no %s (exported before the file existed): using the default evaluation settings %s",
                    model_dir, INFERENCE_FILE, InferenceSettings())
        return InferenceSettings()
    try:
        return InferenceSettings.from_json(json.loads(path.read_text()))
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not a valid inference settings file ({err}); re-export the model or delete the "
                         "file to use the defaults") from None
