"""kinesis-agent: ship log files into Kinesis-like streams without losing a line."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kinesis-agent")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
