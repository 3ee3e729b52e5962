"""``data.skip_bad_videos`` is a declared key of every data config, so the override that the video reader's errors
name (``SKIP_OVERRIDE``) composes on the command line and reaches the typed spec."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from bridge_stg.data.video_io import SKIP_OVERRIDE, VideoReadError, read_frames
from bridge_stg.engine.builder import build_spec
from bridge_stg.engine.specs import RunSpec

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DATA_GROUPS = sorted(p.stem for p in (CONFIGS / "data").glob("*.yaml"))


def load(config: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name=config, overrides=list(overrides))


def spec_of(cfg: DictConfig, tmp_path: Path) -> RunSpec:
    """The built spec, after creating the annotation files and media folders the real sources point at."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    for source in [*data["train_sources"], data["eval_source"]]:
        if source["kind"] in ("synthetic", "synthetic_stream"):
            continue
        Path(source["annotations"]).parent.mkdir(parents=True, exist_ok=True)
        Path(source["annotations"]).touch()
        for folder in (source["media_root"], source.get("vidor_dir")):
            if folder:
                Path(folder).mkdir(parents=True, exist_ok=True)
    return build_spec(cfg, tmp_path / "run")


def test_every_data_group_is_found():
    assert {"synthetic", "synthetic_fixed", "vidstg", "hcstvg_v1", "hcstvg_v2", "multitask"} <= set(DATA_GROUPS)


@pytest.mark.parametrize("group", DATA_GROUPS)
def test_the_override_named_by_video_errors_reaches_the_spec(tmp_path, group):
    base = ("model/backbone=tiny", f"data={group}", f"paths.data_dir={tmp_path / 'data'}")
    assert spec_of(load("train", *base), tmp_path).data.skip_bad_videos is False
    assert spec_of(load("train", *base, SKIP_OVERRIDE), tmp_path).data.skip_bad_videos is True


def test_evaluation_takes_the_override(tmp_path):
    cfg = load("evaluate", f"checkpoint={tmp_path}", SKIP_OVERRIDE)
    assert build_spec(cfg, tmp_path / "run").data.skip_bad_videos is True


def test_video_errors_name_the_exact_override(tmp_path):
    assert SKIP_OVERRIDE == "data.skip_bad_videos=true"
    with pytest.raises(VideoReadError) as info:
        read_frames(tmp_path / "nope.mp4", [0])
    assert str(info.value).endswith(f"or pass {SKIP_OVERRIDE} to skip such samples")


def test_a_misspelt_key_is_still_refused():
    with pytest.raises(ConfigCompositionException, match="data.skip_bad_video"):
        load("train", "data.skip_bad_video=true")
