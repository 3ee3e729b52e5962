"""Train Bridge-STG: ``python scripts/train.py [experiment=<name>] [overrides]`` (no arguments: the embedded
synthetic run on CPU). Under torchrun pass ``hydra.run.dir=...`` so that every rank uses the same run directory."""

import hydra
from omegaconf import DictConfig

from bridge_stg.engine.builder import spec_for_entry_point


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    spec = spec_for_entry_point(cfg)
    from bridge_stg.engine.errors import explained_errors
    from bridge_stg.engine.train import run  # heavy imports only once the config is known to be valid

    with explained_errors():
        run(spec)


if __name__ == "__main__":
    main()
