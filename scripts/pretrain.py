"""Build the pretrained tiny backbone of the synthetic experiments alone: ``python scripts/pretrain.py [overrides]``.

The recipe is the composed config's ``pretrain`` section (configs/pretrain/synthetic.yaml) with the world, frame
budget and timestamps of its ``data`` section, exactly what ``python scripts/train.py`` with the same overrides would
build on first use. An existing build of the same recipe is reused; either way its report is printed.
"""

import json

import hydra
from omegaconf import DictConfig

from bridge_stg.engine.builder import is_pretrained_tiny, spec_for_entry_point


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    spec = spec_for_entry_point(cfg)
    if not is_pretrained_tiny(spec.model.backbone.path):
        raise SystemExit(f"error: model.backbone.path is {spec.model.backbone.path}, not a pretrained tiny backbone; "
                         "use model/backbone=tiny_pretrained")
    from pathlib import Path

    from bridge_stg.engine.pretrain import build_pretrained_backbone
    from bridge_stg.engine.run_logging import setup_logging

    setup_logging(spec.run_dir, 0)
    report = build_pretrained_backbone(spec, Path(spec.model.backbone.path))
    summary = {"backbone": spec.model.backbone.path, "minutes": round(report["seconds"] / 60, 2),
               "heldout": {k: round(v, 4) for k, v in report["heldout"].items()}}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
