"""Evaluate a trained Bridge-STG model on ``data.eval_source``:
``python scripts/evaluate.py experiment=<name> checkpoint=<saved model dir> [overrides]``."""

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bridge_stg.engine.builder import ConfigError, build_spec


@hydra.main(config_path="../configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        spec = build_spec(cfg, Path(HydraConfig.get().runtime.output_dir),
                          world_size=int(os.environ.get("WORLD_SIZE", 1)))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    from bridge_stg.engine.evaluate import run  # heavy imports only once the config is known to be valid

    run(spec, checkpoint=cfg.get("checkpoint"))


if __name__ == "__main__":
    main()
