"""Suite-wide fixtures."""

import logging

import pytest


@pytest.fixture(autouse=True)
def _project_logs_reach_caplog(monkeypatch):
    """A run in this process (``setup_logging``) stops the project's logger from propagating; tests that read
    ``caplog`` need it to propagate, whatever ran before them."""
    monkeypatch.setattr(logging.getLogger("bridge_stg"), "propagate", True)
