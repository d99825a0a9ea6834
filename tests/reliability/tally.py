"""The reliability suite's one result: what a scenario wrote, what arrived, and the peak RSS.

Every scenario writes unique lines, runs the real agent, reads the destination back and reduces
the result to one :class:`Tally` (written / delivered / lost / duplicated, peak RSS), which the
tests assert on and ``soak.py`` prints as a table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tally:
    """What one scenario wrote and what arrived."""

    scenario: str
    written: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    peak_rss: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, scenario: str, written: Iterable[bytes], got: Iterable[bytes], peak_rss: int = 0
    ) -> Tally:
        want = Counter(written)
        have = Counter(got)
        lost = sum((want - have).values())
        dup = sum(n - 1 for line, n in have.items() if n > 1 and line in want)
        extra = sum(n for line, n in have.items() if line not in want)
        t = cls(scenario, sum(want.values()), sum(have.values()), lost, dup + extra, peak_rss)
        return t

    def row(self) -> str:
        return (
            f"| {self.scenario} | {self.written} | {self.delivered} | {self.lost} | "
            f"{self.duplicated} | {self.peak_rss / 1048576:.0f} MiB |"
        )


TALLIES: list[Tally] = []  # every scenario run in this process, for soak.py's table


def record(t: Tally) -> Tally:
    TALLIES.append(t)
    return t
