"""Real launches of the Hydra entry points for the engine tests: ``python scripts/<script>`` at one rank,
``torchrun --standalone --nproc_per_node N`` above, on the synthetic debug experiment, CPU and gloo.

``work`` holds what a launch generates on first use and later launches reuse: the synthetic data
(``work/data``) and the pretrained tiny backbone (``work/runs``). Each launch costs 3-15 s on 2 cores, most of it
importing torch and transformers, so tests share a ``work`` folder and a finished run where they can (see
``tests/engine/conftest.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
# no shared-memory op build (DeepSpeed would JIT-compile it), one thread per rank: two ranks share the 2 cores
ENV = {**os.environ, "BRIDGE_STG_DS_SKIP_SHM": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def command(script: str, run_dir: Path, work: Path, *overrides: str, ranks: int = 1,
            data: Path | None = None) -> list[str]:
    """The launch's command line; ``data`` replaces ``work/data`` (a test that changes the data)."""
    entry = [str(TORCHRUN), "--standalone", f"--nproc_per_node={ranks}"] if ranks > 1 else [sys.executable]
    return [*entry, str(REPO / "scripts" / script), "experiment=synthetic_debug", f"hydra.run.dir={run_dir}",
            f"paths.data_dir={data or work / 'data'}", f"paths.output_root={work / 'runs'}", *overrides]


def launch(script: str, run_dir: Path, work: Path, *overrides: str, ranks: int = 1, data: Path | None = None,
           env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the entry point to its end and return what it printed (it may have failed: see :func:`ok`)."""
    return subprocess.run(command(script, run_dir, work, *overrides, ranks=ranks, data=data), cwd=REPO,
                          env=env or ENV, capture_output=True, text=True, timeout=600)


def ok(out: subprocess.CompletedProcess) -> None:
    """Assert that a launch succeeded, showing the command and the tails of its output when it did not."""
    assert out.returncode == 0, \
        f"{' '.join(out.args)}\n--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-5000:]}"
