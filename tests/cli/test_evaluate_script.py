"""scripts/evaluate.py refuses bad thresholds and unwritable outputs before it loads a model (run as a subprocess:
Hydra owns the command line)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def evaluate(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    checkpoint = tmp_path / "model"  # exists, but is no saved model: reaching the model loader would fail differently
    checkpoint.mkdir(exist_ok=True)
    cmd = [sys.executable, str(REPO / "scripts" / "evaluate.py"), "experiment=synthetic_debug",
           f"checkpoint={checkpoint}", f"hydra.run.dir={tmp_path / 'run'}", f"paths.data_dir={tmp_path / 'data'}",
           f"paths.output_root={tmp_path / 'runs'}", *overrides]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", ["nan threshold", "run dir is a file", "eval output is a folder"])
def test_bad_thresholds_and_outputs_fail_cleanly_before_any_work(tmp_path, case):
    (tmp_path / "a_file").write_text("")
    if case == "eval output is a folder":
        (tmp_path / "run" / "eval" / "metrics.json").mkdir(parents=True)
    overrides, named = {
        "nan threshold": (["eval.thresholds=[0.3,nan]"], "eval.thresholds: nan is not a vIoU@R threshold"),
        "run dir is a file": ([f"hydra.run.dir={tmp_path / 'a_file'}"], f"{tmp_path / 'a_file'} is a file"),
        "eval output is a folder": ([], f"{tmp_path / 'run' / 'eval' / 'metrics.json'} is an existing folder"),
    }[case]
    result = evaluate(tmp_path, *overrides)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr and "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "runs").exists()  # no backbone or data was prepared
