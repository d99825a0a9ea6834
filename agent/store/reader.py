"""Reading a stream: iterator positions resolved per shard, a bounded read, and a cursor that follows.

Every query reads one page and releases the connection, so a slow reader never pins a WAL
snapshot (which would keep the writer's WAL from being checkpointed) and never blocks the writer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from agent.store.chunks import CHUNK_COLUMNS, RecordRow, unpack
from agent.store.model import (
    TRIM_HORIZON,
    IteratorType,
    Position,
    StoredRecord,
    format_sequence,
)

if TYPE_CHECKING:  # the store calls read_stream: a runtime import would be a cycle
    from agent.store.store import StreamStore

PAGE = 1000
CHUNKS_PER_QUERY = 8  # chunk rows fetched per query while filling a page
FOLLOW_INTERVAL = 0.2  # seconds between polls of a followed stream

_Row = RecordRow


def _start_after(store: StreamStore, table: str, position: Position) -> int:
    """The sequence counter a shard's reading starts *after* (exclusive bound)."""
    kind = position.type
    if kind is IteratorType.TRIM_HORIZON:
        return 0
    if kind is IteratorType.LATEST:
        return store._last_sequence()
    if kind is IteratorType.AT_SEQUENCE_NUMBER:
        assert position.sequence is not None
        return position.sequence - 1
    if kind is IteratorType.AFTER_SEQUENCE_NUMBER:
        assert position.sequence is not None
        return position.sequence
    assert position.timestamp is not None
    # Arrival times follow write order, so the first record at or after the time starts it;
    # a time beyond the newest record means "from the tip", as Kinesis does.
    found = store._fetch(
        f"SELECT first FROM {table} WHERE arrival >= ? ORDER BY seq LIMIT 1", (position.timestamp,)
    )
    return int(found[0][0]) - 1 if found else store._last_sequence()


def _page(store: StreamStore, table: str, after: int, upto: int, limit: int) -> list[_Row]:
    """Up to ``limit`` records with counters in ``(after, upto]``, in order."""
    out: list[_Row] = []
    while len(out) < limit:
        chunks = store._fetch(
            f"SELECT {CHUNK_COLUMNS} FROM {table} "
            "WHERE seq > ? AND first <= ? ORDER BY seq LIMIT ?",
            (after, upto, CHUNKS_PER_QUERY),
        )
        for chunk in chunks:
            out += unpack(chunk, after, upto)
        if len(chunks) < CHUNKS_PER_QUERY:
            break
        after = chunks[-1][0]
    return out[:limit]


def _record(stream: str, shard: str, row: _Row) -> StoredRecord:
    seq, arrival, key, data = row
    return StoredRecord(stream, shard, format_sequence(seq), key, arrival, bytes(data))


def read_stream(
    store: StreamStore,
    name: str,
    *,
    shard_id: str | None = None,
    position: Position = TRIM_HORIZON,
    limit: int | None = None,
) -> Iterator[StoredRecord]:
    """Records from ``position`` to what is stored when reading starts, shard by shard in id order."""
    shards = store._shard_tables(name, shard_id)  # raise StreamNotFound now, not at first next()
    upto = store._last_sequence()
    return _read(store, name, shards, position, upto, limit)


def _read(
    store: StreamStore,
    name: str,
    shards: list[tuple[str, str]],
    position: Position,
    upto: int,
    limit: int | None,
) -> Iterator[StoredRecord]:
    left = limit
    for shard, table in shards:
        after = _start_after(store, table, position)
        while after < upto and (left is None or left > 0):
            rows = _page(store, table, after, upto, PAGE if left is None else min(PAGE, left))
            if not rows:
                break
            for row in rows:
                yield _record(name, shard, row)
            after = rows[-1][0]
            if left is not None:
                left -= len(rows)


class StreamCursor:
    """An independent reader that returns what arrived since its last poll, in write order.

    Each shard keeps its own position; records of all the shards it reads are interleaved by
    sequence number, which is the order in which they were committed.
    """

    def __init__(
        self,
        store: StreamStore,
        name: str,
        *,
        shard_id: str | None = None,
        position: Position = TRIM_HORIZON,
    ) -> None:
        self.store = store
        self.name = name
        self._shards = store._shard_tables(name, shard_id)
        self._after = [_start_after(store, table, position) for _shard, table in self._shards]

    def poll(self, max_records: int = PAGE) -> list[StoredRecord]:
        """Up to ``max_records`` per shard of what is new, merged in sequence order."""
        pages = []
        cut: int | None = None
        for (_shard, table), after in zip(self._shards, self._after, strict=True):
            rows = _page(self.store, table, after, 2**63 - 1, max_records)
            pages.append(rows)
            if len(rows) == max_records:
                # more may wait in this shard: nothing later than its last row may go out yet
                cut = rows[-1][0] if cut is None else min(cut, rows[-1][0])
        merged: list[tuple[int, int, _Row]] = []
        for i, rows in enumerate(pages):
            for row in rows:
                if cut is not None and row[0] > cut:
                    break
                merged.append((row[0], i, row))
                self._after[i] = row[0]
        merged.sort()
        return [_record(self.name, self._shards[i][0], row) for _seq, i, row in merged]

    def follow(
        self,
        *,
        interval: float = FOLLOW_INTERVAL,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[StoredRecord]:
        """Yield records forever as they arrive, polling every ``interval`` seconds when idle."""
        while True:
            batch = self.poll()
            yield from batch
            if not batch:
                sleep(interval)
