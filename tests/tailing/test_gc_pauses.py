"""The cyclic collector's pauses hold the event loop: thresholds keep them short, and a burst of
newly discovered files is frozen out of its view (issue 12 §1: 100k files, lag < 100 ms)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import gcpolicy
from agent.tailing.tracker import FileSet
from tests.tailing.harness import fast_flow, file_set_for


@pytest.fixture
def gc_state() -> Iterator[None]:
    """Whatever a test does to the collector is undone (frozen objects go back in view)."""
    thresholds = gc.get_threshold()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_middle_collections_stay_small(gc_state: None) -> None:
    """From CPython's defaults, a middle-generation collection examines at most ~100k objects
    (50k x the default 10 examined half a million: ~200 ms with 100k files being discovered)."""
    gc.set_threshold(700, 10, 10)
    gcpolicy.tune()
    gen0, gen1, _gen2 = gc.get_threshold()
    assert gen0 >= 10_000  # records in flight are not re-examined every 700 allocations
    assert gen0 * (gen1 + 1) <= 150_000
    assert gc.get_freeze_count() > 0  # what start-up made is out of view


def test_tuning_leaves_a_disabled_or_higher_collector_alone(gc_state: None) -> None:
    gc.set_threshold(0, 10, 10)
    gcpolicy.tune()
    assert gc.get_threshold() == (0, 10, 10)


def _file_set(pattern: str) -> FileSet:
    return file_set_for(fast_flow(pattern))


def test_a_burst_of_new_files_is_frozen(tmp_path: Path, gc_state: None) -> None:
    """Discovering past FREEZE_AFTER_FILES files freezes the heap (their objects are not examined
    by every later full collection); a handful more (a rotation) does not."""
    count = gcpolicy.FREEZE_AFTER_FILES + 10
    for i in range(count):
        (tmp_path / f"f{i:05d}.log").write_bytes(b"line %d\n" % i)
    files = _file_set(str(tmp_path / "*.log"))
    try:
        gc.unfreeze()
        asyncio.run(files.rescan_async())
        assert len(files.files) + len(files.dormant) == count
        frozen = gc.get_freeze_count()
        assert frozen > 0
        for i in range(5):
            (tmp_path / f"new{i}.log").write_bytes(b"rotated %d\n" % i)
        asyncio.run(files.rescan_async())
        assert len(files.files) + len(files.dormant) == count + 5
        assert gc.get_freeze_count() <= frozen  # nothing new frozen for five files
    finally:
        files.close()


def test_a_few_files_are_not_frozen(tmp_path: Path, gc_state: None) -> None:
    for i in range(20):
        (tmp_path / f"f{i}.log").write_bytes(b"line %d\n" % i)
    files = _file_set(str(tmp_path / "*.log"))
    try:
        asyncio.run(files.rescan_async())
        assert len(files.files) == 20
        assert gc.get_freeze_count() == 0
    finally:
        files.close()
