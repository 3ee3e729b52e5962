import os
import re

import pytest

from bridge_stg.eval.output_paths import check_distinct, check_output_dir, check_output_file
from bridge_stg.integrity import write_atomic


def test_writable_file_paths_pass_and_nothing_is_created(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    check_output_file(tmp_path / "old.json", "--out")
    check_output_file(tmp_path / "new" / "deeper" / "m.json", "--out")  # missing folders are created on writing
    check_output_dir(tmp_path / "run" / "eval", "hydra.run.dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]


def test_an_existing_folder_is_not_a_file_path(tmp_path):
    with pytest.raises(ValueError, match=re.escape(f"--out {tmp_path} is an existing folder")):
        check_output_file(tmp_path, "--out")


@pytest.mark.parametrize("make", [
    lambda d: check_output_file(d / "a_file" / "m.json", "--out"),
    lambda d: check_output_file(d / "a_file" / "sub" / "m.json", "--out"),
    lambda d: check_output_dir(d / "a_file", "hydra.run.dir"),
    lambda d: check_output_dir(d / "a_file" / "run", "hydra.run.dir"),
])
def test_a_file_in_the_way_of_a_folder_is_named(tmp_path, make):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'a_file'} is a file, not a folder")):
        make(tmp_path)


def test_an_input_file_is_never_an_output(tmp_path):
    (tmp_path / "pred.json").write_text("{}")
    with pytest.raises(ValueError, match="is one of the input files"):
        check_output_file(tmp_path / "." / "pred.json", "--out", inputs=[tmp_path / "pred.json"])


def test_two_options_may_not_name_one_file(tmp_path):
    check_distinct({"--out": tmp_path / "a.json", "--per-sentence": tmp_path / "b.jsonl", "--other": None})
    with pytest.raises(ValueError, match="--out and --per-sentence both name"):
        check_distinct({"--out": tmp_path / "a.json", "--per-sentence": tmp_path / "." / "a.json"})


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_folder_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ValueError, match=re.escape(f"no permission to write in {locked}")):
        check_output_file(locked / "m.json", "--out")


def test_write_atomic_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "m.json"
    write_atomic(path, b"first")
    write_atomic(path, b"second")
    assert path.read_bytes() == b"second" and os.listdir(path.parent) == ["m.json"]
