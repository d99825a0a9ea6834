"""The one in-flight byte budget of a flow: what bounds its memory, charged and released in one place.

Invariant (memory bounded in bytes): records read but not yet delivered — at the processor
worker, queued for the sender, or in a send being retried — are charged here, their data plus
``RECORD_OVERHEAD`` each; while the charge is at ``maxInFlightBytes`` the reader reads nothing and
the backlog stays in the files. Tests: tests/tailing/test_multiline_memory.py
(test_a_huge_multiline_record_is_cut_and_memory_stays_bounded), tests/tailing/test_lost_unread.py
(test_truncated_while_the_agent_was_behind_is_reported: blocked by the budget) and
tests/pipeline/test_budget.py.
"""

from __future__ import annotations

import asyncio

# What a queued record costs in memory beyond its data (the Record, the bytes object's header,
# its places in the queues); charged against maxInFlightBytes so the budget bounds memory.
RECORD_OVERHEAD = 160


class Budget:
    """Bytes charged against ``limit``; ``room`` is set whenever a release may have made room.

    Charged per chunk (a read's records), never per record: the --once path over a large file
    calls these a few times per MiB.
    """

    __slots__ = ("charged", "limit", "room")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.charged = 0  # in-flight data plus RECORD_OVERHEAD per record
        self.room = asyncio.Event()

    def charge(self, nbytes: int, nrecords: int) -> None:
        """Records read (or their processed data): counted until they are released."""
        self.charged += nbytes + RECORD_OVERHEAD * nrecords

    def release(self, nbytes: int, nrecords: int) -> None:
        """Records delivered, skipped, or replaced by their processed data: room for the reader."""
        self.charged -= nbytes + RECORD_OVERHEAD * nrecords
        self.room.set()

    def full(self) -> bool:
        return self.charged >= self.limit
