"""Fixtures shared by the in-process tailing tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """An empty directory for the log files of one test."""
    d = tmp_path / "logs"
    d.mkdir()
    return d
