"""``scripts/gpu_check.py --device cpu --tiny``: the GPU check's code path, run on CPU in seconds."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from script_modules import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
COLUMNS = ["config", "tokens/step", "step time (s)", "tokens/s", "peak memory (GiB)", "MFU"]


@functools.cache
def gpu_check():
    """The script as a module (its argument parsing is checked in-process: a launch per case costs 2-3 s)."""
    return load_script(SCRIPT)


def run_check(tmp_path: Path, *extra: str, timeout: int = 120) -> tuple[list[dict[str, str]], dict]:
    out = tmp_path / "gpu_check.json"
    # One thread: on a busy 2-core CI machine OpenMP's spinning threads make these tiny kernels 10-60x slower.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--peak-tflops", "1",
                             "--out", str(out), *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return parse_table(result.stdout), json.loads(out.read_text())


def parse_table(stdout: str) -> list[dict[str, str]]:
    """Rows of the (only) Markdown table that starts with the expected header."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| config |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    assert header == COLUMNS
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def number(cell: str) -> float:
    return float(cell.rstrip("%"))


def test_tiny_cpu_table(tmp_path: Path) -> None:
    rows, report = run_check(tmp_path)
    assert [r["config"] for r in rows] == ["fwd+bwd, sdpa", "fwd+bwd, eager"]
    for row in rows:
        values = [number(row[c]) for c in COLUMNS[1:]]
        assert all(math.isfinite(v) and v > 0 for v in values), row
        assert number(row["tokens/s"]) == pytest.approx(int(row["tokens/step"]) / number(row["step time (s)"]),
                                                        rel=1e-2)
    setup = report["setup"]
    assert int(rows[0]["tokens/step"]) == setup["llm_tokens"] > 0
    # 4 frames of 112x112: 2 chunks of (112/14)^2 = 64 patches each
    assert setup["vision_patches"] == 128
    assert setup["model_flops_per_step"] > 0
    assert [r["config"] for r in report["rows"]] == [r["config"] for r in rows]
    diffs = report["logit_max_abs_diff"]
    # fp32 on CPU: the two kernels differ by rounding only (measured about 2e-7 of logits of order 1); a masking bug
    # (a padded or future token attended) moves the logits by far more than 1e-4
    assert math.isfinite(diffs["sdpa_vs_eager"]) and diffs["sdpa_vs_eager"] < 1e-4 * max(1.0, diffs["max_abs_eager"])


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="needs flash-attn to be missing")
def test_a_failing_row_keeps_the_others(tmp_path: Path) -> None:
    """flash-attn is absent on CPU: that row fails loudly (exit 1), the sdpa row is still measured; no peak: MFU n/a."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--attn", "sdpa",
                             "flash_attention_2"], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    (row,) = parse_table(result.stdout)
    assert row["config"] == "fwd+bwd, sdpa" and row["MFU"] == "n/a"
    assert "FAILED fwd+bwd, flash_attention_2: ImportError" in result.stdout


@pytest.mark.parametrize("args", [["--frames", "3"], ["--frames", "0"], ["--size", "100"], ["--batch", "0"],
                                  ["--plan"]])  # --plan needs the DeepSpeed row, off on CPU by default
def test_bad_arguments(args: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error, before anything is built
        gpu_check().parse_args(["--device", "cpu", "--tiny", *args])
    assert exit_info.value.code == 2 and "error:" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_cpu_deepspeed_row(tmp_path: Path) -> None:
    rows, result = run_check(tmp_path, "--attn", "sdpa", "--deepspeed", "--plan", timeout=300)
    assert rows[-1]["config"] == "DeepSpeed ZeRO-2 step, sdpa, fp32"
    assert all(math.isfinite(number(rows[-1][c])) for c in COLUMNS[1:])
    plan = result["plan"]  # the planner's estimate of the same model and batch; not compared with CPU RSS
    assert plan["ok"] is None and plan["planned"]["planned_peak_gib"] > 0
    assert plan["planned"]["sequence"] == number(rows[-1]["tokens/step"])
