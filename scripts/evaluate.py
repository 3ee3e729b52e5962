"""Evaluate a trained Bridge-STG model on ``data.eval_source``:
``python scripts/evaluate.py experiment=<name> checkpoint=<saved model dir> [overrides]``."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bridge_stg.engine.builder import spec_for_entry_point
from bridge_stg.eval.output_paths import check_output_dir, check_output_file

OUTPUT_OVERRIDES = ("hydra.run.dir", "paths.output_root")


def check_output_overrides(argv: list[str]) -> None:
    """Hydra creates the run directory before ``main`` runs: check the folders given on the command line first, so a
    bad one is a one-line error instead of Hydra's traceback (values with interpolations are left to Hydra)."""
    for arg in argv:
        key, _, value = arg.partition("=")
        value = value.strip("'\"")
        if key.lstrip("+") in OUTPUT_OVERRIDES and value and "$" not in value:
            check_output_dir(Path(value), key.lstrip("+"))


def check_outputs(eval_dir: Path) -> None:
    """Everything the evaluation writes at its end can be written (checked before the model is loaded)."""
    from bridge_stg.engine.evaluate import OUTPUT_FILES

    fix = "the evaluation writes its results there: move that away or choose another hydra.run.dir"
    check_output_dir(eval_dir, "the evaluation folder", fix)
    for name in OUTPUT_FILES:
        check_output_file(eval_dir / name, "the evaluation output", fix=fix)


@hydra.main(config_path="../configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    spec = spec_for_entry_point(cfg)
    try:
        check_outputs(spec.run_dir / "eval")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    from bridge_stg.engine.errors import explained_errors
    from bridge_stg.engine.evaluate import run

    with explained_errors():
        run(spec, checkpoint=cfg.get("checkpoint"), verify=cfg.get("verify_checkpoint", True))


if __name__ == "__main__":
    try:
        check_output_overrides(sys.argv[1:])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    main()
