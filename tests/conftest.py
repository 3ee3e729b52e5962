"""Suite-wide fixtures."""

import logging

import pytest


@pytest.fixture(autouse=True)
def _project_logs_reach_caplog(monkeypatch):
    """Tests that read ``caplog`` need the project's log records, whatever ran before them in this process: a run
    (``setup_logging``) stops the project's logger from propagating, and Hydra's logging setup disables the
    loggers that exist when it runs and raises the root logger's level (which the project's then inherit)."""
    package = logging.getLogger("bridge_stg")
    monkeypatch.setattr(package, "propagate", True)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("bridge_stg") and isinstance(logger, logging.Logger):
            monkeypatch.setattr(logger, "disabled", False)
    level = package.level
    package.setLevel(logging.INFO)  # setLevel, not setattr: it clears the loggers' cached levels
    yield
    package.setLevel(level)
