"""A clock a test moves by hand, for the parts that take ``clock=`` (wall or monotonic)."""

from __future__ import annotations


class FakeClock:
    """Reads ``now``; the test sets or advances it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
