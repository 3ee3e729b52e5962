"""Evaluate a trained Bridge-STG model on ``data.eval_source``:
``python scripts/evaluate.py experiment=<name> checkpoint=<saved model dir> [overrides]``."""

import hydra
from omegaconf import DictConfig

from bridge_stg.engine.builder import spec_for_entry_point


@hydra.main(config_path="../configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    spec = spec_for_entry_point(cfg)
    from bridge_stg.engine.evaluate import run  # heavy imports only once the config is known to be valid

    run(spec, checkpoint=cfg.get("checkpoint"))


if __name__ == "__main__":
    main()
