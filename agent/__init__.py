"""kinesis-agent: ship log files into Kinesis-like streams without losing a line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    __version__: str


def __getattr__(name: str) -> str:
    # Looked up on first use, not at import: every ``import agent.x`` runs this module, and
    # importlib.metadata cost ~60 ms of a start-up that only ``--version`` and the User-Agent need.
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("kinesis-agent")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0+source"
    globals()["__version__"] = found
    return found
