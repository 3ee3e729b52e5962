"""Shared fixtures: a synthetic split on disk and collated batches for tiny backbones."""

import pytest

from bridge_stg.data.dataset import GroundingDataset
from bridge_stg.data.frames import FrameBudget
from bridge_stg.data.synthetic import SyntheticConfig, generate_split
from bridge_stg.model.tiny import save_tiny_checkpoint


@pytest.fixture(scope="session")
def synthetic_samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    records = generate_split(SyntheticConfig(), "train", root, num_videos=4)
    dataset = GroundingDataset(records, root / "videos", FrameBudget(), source="synthetic")
    return [dataset[i] for i in range(len(dataset))]


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {family: save_tiny_checkpoint(root / family, family=family, hidden_size=64, num_layers=3)
            for family in ("qwen2_vl", "qwen2_5_vl")}

