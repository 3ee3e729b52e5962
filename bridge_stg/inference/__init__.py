"""Ground sentences in videos with an exported model (the predictor API): :class:`Grounder`, :class:`GroundedTube`.

Layering: builds on ``data``, ``eval``, ``model`` and ``viz`` (the evaluation's own sampling, collator and
postprocessing); never imports the engine, the command lines, Hydra, OmegaConf or DeepSpeed
(``tests/test_layering.py``). The command line ``bridge-stg-ground`` (``bridge_stg/cli/ground.py``) reaches the model
through this package only.

The names below are imported on first use (PEP 562), so that ``bridge_stg.inference.ground_truth`` or ``.settings``
load without torch: the command line checks its inputs before it loads a model.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "grounder": ("GroundedTube", "Grounder", "VideoFrames", "check_model_dir", "make_collator", "span_probabilities"),
    "inputs": ("MAX_QUERY_CHARS", "MAX_QUERY_TOKENS", "GroundingInputError", "check_query_text"),
    "settings": ("INFERENCE_FILE", "InferenceSettings", "read_settings"),
    "ground_truth": ("GroundTruth", "GroundTruthError", "read_gt_json"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
