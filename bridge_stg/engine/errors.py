"""Errors a run raises for reasons the user can fix; the entry points print them without a traceback."""

from __future__ import annotations

import contextlib
import os
import pickle
import sys


class RunError(RuntimeError):
    """A training or evaluation run cannot go on; the message says why and what to do."""


class DivergenceError(RunError):
    """The loss or the gradients stayed non-finite, or the weights became non-finite."""


class ResumeError(RunError):
    """A resume would silently mix two configurations, or a new run would overwrite an existing one."""


@contextlib.contextmanager
def explained_errors():
    """Turn the errors a user can fix (bad config on resume, divergence, damaged or unreadable files, malformed
    annotations) into ``error: <message>`` on stderr and exit status 1, instead of a traceback."""
    from bridge_stg.annotations.errors import AnnotationError
    from bridge_stg.data.video_io import VideoReadError
    from bridge_stg.integrity import DamagedFileError

    world = int(os.environ.get("WORLD_SIZE", "1"))
    label = f"error [rank {os.environ.get('RANK', '0')}]" if world > 1 else "error"  # torchrun: whose
    try:
        yield
    except (RunError, DamagedFileError, AnnotationError, VideoReadError, pickle.UnpicklingError) as err:
        print(f"{label}: {err}", file=sys.stderr)
        sys.exit(1)
    except RuntimeError as err:  # a loader worker's error comes back as a RuntimeError holding its traceback
        text = str(err)
        names = [cls.__name__ for cls in (AnnotationError, VideoReadError, DamagedFileError)]
        found = [name for name in names if text.startswith("Caught ") and f"{name}: " in text]
        if not found:
            raise
        print(f"{label}: {text.rsplit(f'{found[0]}: ', 1)[1].strip()}", file=sys.stderr)
        sys.exit(1)
