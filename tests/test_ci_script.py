"""``.ci/run`` checks the free disk before it installs anything (README: about 7 GB)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_stops_at_once_when_the_disk_is_short(tmp_path: Path) -> None:
    # a copy in an empty folder: had the check let it through, it would stop there, finding no scripts/install.sh
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], env={**os.environ, "CI_MIN_FREE_GB": "10000000"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"CI needs about 10000000 GB free for the virtual environment and the tests; {tmp_path} has" in result.stderr
    assert "Free some space" in result.stderr
    assert result.stdout == "" and not (tmp_path / ".venv").exists()  # nothing ran before the check
