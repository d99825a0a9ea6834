"""Where a Kinesis stream's shards lie in the hash space, so calls can be shaped by shard.

PutRecords calls that touch disjoint sets of shards can be in flight together without reordering
any shard: the sink splits the open shards into a few *lanes* (contiguous runs of the hash space),
sends each lane's calls one after another and the lanes side by side. The map comes from
ListShards; when that is not allowed (the AWS agent only needs PutRecords) the sink keeps one lane.

A map can go stale when the stream is resharded. A PutRecords answer naming a shard the map does
not know marks it stale and the sink reloads it before its next send; until then a merged shard
may take records from two lanes at once, so its order holds again from the reload on.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from typing import Any

from agent.hashspace import hash_key

LIST_SHARDS_PAGE = 1000


class ShardMap:
    """The open shards of a stream, sorted by hash range, cut into at most ``max_lanes`` lanes."""

    __slots__ = ("_key_lanes", "ids", "lane_of_shard", "lanes", "starts")

    def __init__(self, shards: Iterable[tuple[str, int]], max_lanes: int) -> None:
        ordered = sorted(shards, key=lambda s: s[1])
        if not ordered:
            raise ValueError("a stream has at least one open shard")
        self.ids = frozenset(shard_id for shard_id, _ in ordered)
        self.starts = [start for _, start in ordered]
        self.lanes = max(1, min(max_lanes, len(ordered)))
        # contiguous runs of shards, as even in count as they can be
        self.lane_of_shard = [i * self.lanes // len(ordered) for i in range(len(ordered))]
        self._key_lanes: dict[str, int] = {}

    def shard_of(self, partition_key: str) -> int:
        """Index (in hash order) of the shard a partition key lands in."""
        return bisect_right(self.starts, hash_key(partition_key)) - 1

    def lane_of(self, partition_key: str) -> int:
        return self.lane_of_shard[self.shard_of(partition_key)]

    def cached_lane_of(self, partition_key: str) -> int:
        """``lane_of`` remembered per key: for keys drawn from a bounded pool (RANDOM keys)."""
        lane = self._key_lanes.get(partition_key)
        if lane is None:
            lane = self._key_lanes[partition_key] = self.lane_of(partition_key)
        return lane

    def lane_keys(self, pool: Iterable[str]) -> list[list[str]]:
        """The keys of ``pool`` that land in each lane."""
        out: list[list[str]] = [[] for _ in range(self.lanes)]
        for key in pool:
            out[self.cached_lane_of(key)].append(key)
        return out


def list_open_shards(client: Any, stream: str) -> list[tuple[str, int]]:
    """(shard id, starting hash key) of every open shard, through ListShards (paginated)."""
    shards: list[tuple[str, int]] = []
    kwargs: dict[str, Any] = {"StreamName": stream, "MaxResults": LIST_SHARDS_PAGE}
    while True:
        page = client.list_shards(**kwargs)
        for shard in page.get("Shards", ()):
            if shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber") is None:
                shards.append((shard["ShardId"], int(shard["HashKeyRange"]["StartingHashKey"])))
        token = page.get("NextToken")
        if not token:
            return shards
        kwargs = {"NextToken": token, "MaxResults": LIST_SHARDS_PAGE}
