"""Manifests catch every kind of damage by name; the readers name the file they could not read."""

import json

import pytest
import torch
from safetensors.torch import save_file

from bridge_stg.integrity import (
    MANIFEST,
    DamagedFileError,
    load_safetensors,
    manifest_problems,
    read_json,
    replace_dir,
    verify_manifest,
    write_manifest,
)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "model"
    (root / "backbone").mkdir(parents=True)
    (root / "config.json").write_text('{"a": 1}')
    (root / "backbone" / "weights.bin").write_bytes(bytes(range(256)) * 16)
    write_manifest(root)
    return root


def test_an_intact_folder_verifies_and_the_manifest_lists_nested_files(folder):
    assert manifest_problems(folder) == []
    assert sorted(json.loads((folder / MANIFEST).read_text())["files"]) == ["backbone/weights.bin", "config.json"]


@pytest.mark.parametrize("damage,expected", [
    (lambda f: f.write_bytes(f.read_bytes()[:-1]), "has 4095 bytes, the manifest says 4096"),
    (lambda f: f.write_bytes(b"\xff" + f.read_bytes()[1:]), "does not match its SHA-256"),
    (lambda f: f.unlink(), "is missing"),
])
def test_damage_is_named(folder, damage, expected):
    damage(folder / "backbone" / "weights.bin")
    with pytest.raises(DamagedFileError) as info:
        verify_manifest(folder, "saved model", "pass verify=False")
    assert "backbone/weights.bin" in str(info.value) and expected in str(info.value)
    assert "pass verify=False" in str(info.value)


def test_a_folder_without_manifest_loads_with_a_warning(folder, caplog):
    (folder / MANIFEST).unlink()
    assert manifest_problems(folder) is None
    verify_manifest(folder, "saved model", "x")
    assert "no manifest.json" in caplog.text


def test_readers_name_the_damaged_file(tmp_path):
    bad_json = tmp_path / "config.json"
    bad_json.write_text('{"model_type": "qwen2_vl", ')
    with pytest.raises(DamagedFileError, match="config.json is not valid JSON"):
        read_json(bad_json)
    tensors = tmp_path / "w.safetensors"
    save_file({"w": torch.ones(64)}, str(tensors))
    tensors.write_bytes(tensors.read_bytes()[:-10])
    with pytest.raises(DamagedFileError, match="w.safetensors is not a readable safetensors file"):
        load_safetensors(tensors)


def test_replace_dir_swaps_a_complete_folder_in(folder, tmp_path):
    new = tmp_path / "model.tmp"
    new.mkdir()
    (new / "config.json").write_text('{"a": 2}')
    replace_dir(new, folder)
    assert read_json(folder / "config.json") == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
