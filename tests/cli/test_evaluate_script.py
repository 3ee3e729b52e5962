"""scripts/evaluate.py refuses bad thresholds and unwritable outputs before it loads a model. The script runs
in-process as ``__main__`` under its own command line (Hydra owns it), as a launch would run it, without the 3-4 s of
a fresh interpreter per case."""

import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def evaluate(tmp_path: Path, monkeypatch, capsys, *overrides: str) -> tuple[int, str]:
    """The exit status and what the script printed (stderr, then stdout). Any exception other than its exit fails
    the test: the user would have seen a traceback."""
    checkpoint = tmp_path / "model"  # exists, but is no saved model: reaching the model loader would fail differently
    checkpoint.mkdir(exist_ok=True)
    argv = ["evaluate.py", "experiment=synthetic_debug", f"checkpoint={checkpoint}",
            f"hydra.run.dir={tmp_path / 'run'}", f"paths.data_dir={tmp_path / 'data'}",
            f"paths.output_root={tmp_path / 'runs'}",
            "hydra/job_logging=disabled", "hydra/hydra_logging=disabled", *overrides]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "scripts" / "evaluate.py"), run_name="__main__")
    printed = capsys.readouterr()
    return exit_info.value.code, printed.err + printed.out


@pytest.mark.parametrize("case", ["nan threshold", "run dir is a file", "eval output is a folder"])
def test_bad_thresholds_and_outputs_fail_cleanly_before_any_work(tmp_path, monkeypatch, capsys, case):
    (tmp_path / "a_file").write_text("")
    if case == "eval output is a folder":
        (tmp_path / "run" / "eval" / "metrics.json").mkdir(parents=True)
    overrides, named = {
        "nan threshold": (["eval.thresholds=[0.3,nan]"], "eval.thresholds: nan is not a vIoU@R threshold"),
        "run dir is a file": ([f"hydra.run.dir={tmp_path / 'a_file'}"], f"{tmp_path / 'a_file'} is a file"),
        "eval output is a folder": ([], f"{tmp_path / 'run' / 'eval' / 'metrics.json'} is an existing folder"),
    }[case]
    code, printed = evaluate(tmp_path, monkeypatch, capsys, *overrides)
    assert code == 2, printed
    assert printed.startswith("error: ") and named in printed and "Traceback" not in printed
    assert not (tmp_path / "runs").exists()  # no backbone or data was prepared
