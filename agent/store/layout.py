"""How a stream maps onto its shard tables, where a partition key lands, and put results.

Placement is Kinesis's: MD5 of the partition key (UTF-8) read as a 128-bit big-endian integer,
owned by the shard whose inclusive hash-key range contains it.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Sequence
from typing import overload

from agent.store.chunks import insert_chunk
from agent.store.model import MAX_PARTITION_KEY_CHARS, StreamInfo, format_sequence
from agent.store.sqlite import shard_table

PLACEMENT_CACHE = 1 << 17  # keys whose shard is remembered, per stream


class StreamLayout:
    """A stream's tables and insert statements, and the placement of keys on its shards."""

    __slots__ = ("_placed", "bounds", "info", "inserts", "shard_ids", "stream_id", "tables")

    def __init__(self, stream_id: int, info: StreamInfo) -> None:
        self.stream_id = stream_id
        self.info = info
        self.tables = tuple(shard_table(stream_id, i) for i in range(info.shard_count))
        self.inserts = tuple(insert_chunk(t) for t in self.tables)
        self.shard_ids = tuple(s.shard_id for s in info.shards)
        # 16-byte big-endian digests compare like the 128-bit integers they encode
        self.bounds = [s.starting_hash_key.to_bytes(16, "big") for s in info.shards[1:]]
        # Where keys seen before land: writers that reuse keys (RANDOM draws from a pool) skip
        # the MD5. Bounded: once full, new keys are hashed every time.
        self._placed: dict[str, int] = {}

    def place_hash(self, hash_key: int) -> int:
        """The shard index owning a 128-bit hash key (PutRecords' ExplicitHashKey)."""
        return bisect_right(self.bounds, hash_key.to_bytes(16, "big"))

    def place(self, keys: Sequence[str]) -> list[int]:
        """The shard index of each partition key."""
        if len(self.tables) == 1:
            return [0] * len(keys)
        placed = self._placed
        shards = list(map(placed.get, keys))
        if None not in shards:
            return shards  # type: ignore[return-value]  # no None left
        md5, bounds = hashlib.md5, self.bounds
        room = PLACEMENT_CACHE - len(placed)
        out = []
        for key, shard in zip(keys, shards, strict=True):
            if shard is None:
                shard = bisect_right(bounds, md5(key.encode()).digest())
                if room > 0:
                    placed[key] = shard
                    room -= 1
            out.append(shard)
        return out


def check_keys(keys: Sequence[str]) -> None:
    """ValueError on a partition key Kinesis would refuse (1 to 256 characters)."""
    if keys and (min(map(len, keys)) == 0 or max(map(len, keys)) > MAX_PARTITION_KEY_CHARS):
        bad = next(k for k in keys if not 0 < len(k) <= MAX_PARTITION_KEY_CHARS)
        raise ValueError(
            f"a partition key has 1 to {MAX_PARTITION_KEY_CHARS} characters, not {len(bad)}"
        )


class PutResult(Sequence[tuple[str, str]]):
    """``(shard_id, sequence_number)`` of each entry of one put_records call, made on demand.

    The agent never looks at them, and formatting them eagerly cost a tenth of a write.
    """

    __slots__ = ("_first", "_placement", "_shard_ids")

    def __init__(self, shard_ids: tuple[str, ...], placement: list[int], first: int) -> None:
        self._shard_ids = shard_ids
        self._placement = placement
        self._first = first

    def __len__(self) -> int:
        return len(self._placement)

    @overload
    def __getitem__(self, index: int) -> tuple[str, str]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, str]]: ...

    def __getitem__(self, index: int | slice) -> tuple[str, str] | list[tuple[str, str]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._shard_ids[self._placement[index]], format_sequence(self._first + index)

    def columns(self) -> tuple[tuple[str, ...], list[int], int]:
        """(shard ids, each entry's shard index, the first entry's counter): entry i has
        counter ``first + i``. For callers that format many results at once."""
        return self._shard_ids, self._placement, self._first

    def __repr__(self) -> str:
        return f"PutResult({list(self)!r})"
