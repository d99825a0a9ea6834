"""Reading the store: the five iterator types, limits, shard selection and the following cursor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import StreamNotFound
from agent.store import LATEST, TRIM_HORIZON, Position, StreamCursor, StreamStore
from tests.support.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[StreamStore]:
    with StreamStore.open(tmp_path, clock=clock) as s:
        s.ensure_stream("app", 3, 24)
        yield s


def put(store: StreamStore, lines: range) -> list[tuple[str, str]]:
    return list(store.put_records("app", [(f"key{n}", b"%d\n" % n) for n in lines]))


def numbers(records: object) -> list[int]:
    return [int(r.data) for r in records]  # type: ignore[attr-defined]


class TestPositions:
    def test_trim_horizon_reads_everything(self, store: StreamStore) -> None:
        """TRIM_HORIZON starts at the oldest record of each shard."""
        put(store, range(60))
        assert sorted(numbers(store.read("app", position=TRIM_HORIZON))) == list(range(60))

    def test_latest_reads_nothing_now_but_what_comes_next(self, store: StreamStore) -> None:
        """LATEST skips what is stored; a cursor from LATEST sees only later records."""
        put(store, range(10))
        assert list(store.read("app", position=LATEST)) == []
        cursor = StreamCursor(store, "app", position=LATEST)
        put(store, range(10, 15))
        assert numbers(cursor.poll()) == [10, 11, 12, 13, 14]

    def test_at_and_after_sequence_number(self, store: StreamStore) -> None:
        """AT starts with the record of that number, AFTER with the one following it."""
        result = put(store, range(30))
        shard, seq = result[12]
        at = list(store.read("app", shard_id=shard, position=Position.at_sequence_number(seq)))
        after = list(
            store.read("app", shard_id=shard, position=Position.after_sequence_number(seq))
        )
        assert at[0].sequence_number == seq and int(at[0].data) == 12
        assert [r.sequence_number for r in after] == [r.sequence_number for r in at[1:]]

    def test_sequence_number_applies_to_every_shard(self, store: StreamStore) -> None:
        """Without a shard, AT_SEQUENCE_NUMBER gives every record written from that point on."""
        result = put(store, range(40))
        got = numbers(store.read("app", position=Position.at_sequence_number(result[25][1])))
        assert sorted(got) == list(range(25, 40))

    def test_at_timestamp(self, store: StreamStore, clock: FakeClock) -> None:
        """AT_TIMESTAMP starts at the first record that arrived at or after the time."""
        put(store, range(0, 10))
        clock.now += 100
        put(store, range(10, 20))
        clock.now += 100
        put(store, range(20, 30))
        start = clock.now - 200
        assert sorted(
            numbers(store.read("app", position=Position.at_timestamp(start + 50)))
        ) == list(range(10, 30))
        assert sorted(
            numbers(store.read("app", position=Position.at_timestamp(start + 100)))
        ) == list(range(10, 30))
        assert sorted(numbers(store.read("app", position=Position.at_timestamp(0)))) == list(
            range(30)
        )

    def test_at_timestamp_in_the_future_starts_at_the_tip(
        self, store: StreamStore, clock: FakeClock
    ) -> None:
        """A time after the newest record reads nothing now and what arrives later."""
        put(store, range(5))
        cursor = StreamCursor(store, "app", position=Position.at_timestamp(clock.now + 10))
        assert cursor.poll() == []
        put(store, range(5, 8))
        assert numbers(cursor.poll()) == [5, 6, 7]

    def test_bad_sequence_numbers_are_refused(self) -> None:
        """A sequence number that is not decimal, or not one of ours, raises ValueError."""
        for bad in ("abc", "-5", "12"):
            with pytest.raises(ValueError):
                Position.at_sequence_number(bad)


class TestRead:
    def test_limit_counts_across_shards(self, store: StreamStore) -> None:
        """limit stops after N records in total, shard order kept."""
        put(store, range(100))
        everything = list(store.read("app"))
        assert list(store.read("app", limit=37)) == everything[:37]
        assert list(store.read("app", limit=0)) == []

    def test_one_shard(self, store: StreamStore) -> None:
        """shard_id limits the read to that shard; 'shardId-…' and a bare index both work."""
        result = put(store, range(60))
        mine = [seq for shard, seq in result if shard == "shardId-000000000001"]
        by_id = [r.sequence_number for r in store.read("app", shard_id="shardId-000000000001")]
        by_index = [r.sequence_number for r in store.read("app", shard_id="1")]
        assert by_id == by_index == mine

    def test_unknown_shard_or_stream(self, store: StreamStore) -> None:
        """A shard or stream that does not exist raises StreamNotFound at once."""
        with pytest.raises(StreamNotFound, match="no shard"):
            store.read("app", shard_id="shardId-000000000003")
        with pytest.raises(StreamNotFound):
            store.read("ghost")

    def test_read_stops_at_what_was_stored_when_it_began(self, store: StreamStore) -> None:
        """Records written while a read is under way are left for the next read."""
        put(store, range(2500))
        reader = store.read("app", shard_id="0")
        first = next(reader)
        put(store, range(2500, 5000))
        rest = list(reader)
        assert all(int(r.data) < 2500 for r in [first, *rest])

    def test_pages_longer_than_one_query(self, store: StreamStore) -> None:
        """A shard with more records than one page is read whole and in order."""
        store.put_records("app", [("same", b"%d\n" % n) for n in range(3500)])
        assert numbers(store.read("app")) == list(range(3500))


class TestCursor:
    def test_poll_interleaves_shards_in_write_order(self, store: StreamStore) -> None:
        """A cursor returns records of all shards in the order they were written."""
        cursor = StreamCursor(store, "app")
        put(store, range(50))
        put(store, range(50, 100))
        assert numbers(cursor.poll()) == list(range(100))
        assert cursor.poll() == []

    def test_small_pages_keep_global_order(self, store: StreamStore) -> None:
        """When a shard has more than a page waiting, nothing newer from other shards jumps ahead."""
        put(store, range(200))
        cursor = StreamCursor(store, "app")
        got: list[int] = []
        for _ in range(500):
            page = cursor.poll(max_records=7)
            if not page:
                break
            got += numbers(page)
        assert got == list(range(200))

    def test_records_trimmed_under_a_cursor_are_skipped(
        self, store: StreamStore, clock: FakeClock
    ) -> None:
        """A cursor behind the trim horizon continues with the oldest record still there."""
        cursor = StreamCursor(store, "app")
        put(store, range(10))
        clock.now += 25 * 3600
        put(store, range(10, 12))
        store.trim_expired()
        assert numbers(cursor.poll()) == [10, 11]

    def test_follow_yields_as_records_arrive(self, store: StreamStore) -> None:
        """follow() polls, sleeps when idle, and yields what arrived meanwhile."""
        cursor = StreamCursor(store, "app")
        arrivals = iter([range(0, 3), range(3, 5)])
        sleeps: list[float] = []

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            put(store, next(arrivals))

        stream = cursor.follow(interval=0.01, sleep=sleep)
        assert [int(next(stream).data) for _ in range(5)] == [0, 1, 2, 3, 4]
        assert sleeps == [0.01, 0.01]

    def test_independent_readers(self, store: StreamStore, tmp_path: Path) -> None:
        """Several cursors, on their own read-only connections, each see every record once."""
        readers = [StreamStore.open(tmp_path, create=False, read_only=True) for _ in range(3)]
        cursors = [StreamCursor(r, "app") for r in readers]
        put(store, range(20))
        first = [numbers(c.poll()) for c in cursors[:2]]
        put(store, range(20, 30))
        assert first == [list(range(20))] * 2
        assert numbers(cursors[0].poll()) == list(range(20, 30))
        assert numbers(cursors[2].poll()) == list(range(30))
        for r in readers:
            r.close()
