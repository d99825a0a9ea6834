"""The cyclic garbage collector's pauses hold the event loop: keep each one short.

A collection holds the GIL for its whole length, in whichever thread triggered it, so a pause
in a worker thread stops the loop (every flow, the status socket, the watchdog) just as well.
Its cost is the number of objects it examines. Two sources made pauses long:
- generation thresholds: a large first threshold spares records in flight from being examined
  over and over (at CPython's 700 that cost ~1 us per record shipped), but with the default
  second threshold (10) a middle-generation collection examined up to ten times as many,
  half a million objects and ~200 ms while a hundred thousand files were being discovered;
- the files themselves: a hundred thousand tracked files are a few million long-lived objects,
  and each full collection examined all of them again (~250 ms), for nothing.
So the thresholds keep the young generations to ~150k objects (a first threshold as high as
before, so records in flight cost no more, and a middle collection every second young one), and after discovery adopted many
files at once, what exists is frozen (``gc.freeze``: moved out of the collector's view, an O(1)
list splice). Frozen objects are still freed by reference counting; only a reference cycle among
them would never be collected, and it takes a burst of new files (not each scan) to freeze.
"""

from __future__ import annotations

import gc

# Objects allocated (net) between young collections, and young collections per middle one.
GEN0_THRESHOLD = 50_000
GEN1_THRESHOLD = 2
# Files that became known (opened or closed idle) since the last freeze before freezing again.
FREEZE_AFTER_FILES = 1024


def tune() -> None:
    """Thresholds for short pauses (left alone when the collector is disabled, or set higher);
    and what start-up made (modules, the configuration) frozen: it lives as long as the agent."""
    gen0, gen1, gen2 = gc.get_threshold()
    if 0 < gen0 < GEN0_THRESHOLD:
        gc.set_threshold(GEN0_THRESHOLD, min(gen1, GEN1_THRESHOLD), gen2)
        gc.freeze()


class FreezeOnGrowth:
    """Freezes the heap when the number of known files grew by ``FREEZE_AFTER_FILES``."""

    __slots__ = ("_at", "threshold")

    def __init__(self, threshold: int = FREEZE_AFTER_FILES) -> None:
        self.threshold = threshold
        self._at = 0  # the number of files at the last freeze (or the last shrink)

    def observe(self, files: int) -> bool:
        """``files`` known now; returns whether it froze the heap."""
        if files < self._at:
            self._at = files  # files forgotten: grow again from here before freezing
            return False
        if files - self._at < self.threshold:
            return False
        self._at = files
        gc.freeze()
        return True
