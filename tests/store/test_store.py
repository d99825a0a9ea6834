"""The stream store: streams, MD5 placement, sequence numbers, atomic checkpoints, retention, sharing."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from agent.errors import StoreError, StreamNotFound
from agent.records import Checkpoint, FileId
from agent.store import StreamStore
from agent.store.model import SEQUENCE_BASE
from tests.support.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> StreamStore:
    s = StreamStore.open(tmp_path / "streams", clock=clock, monotonic=clock)
    yield s  # type: ignore[misc]
    s.close()


def checkpoint(offset: int, *, flow: str = "local:app:/var/log/*.log", ino: int = 42) -> Checkpoint:
    return Checkpoint(flow, FileId(2049, ino, 1024, b"\x01" * 32), "/var/log/a.log", offset)


def md5_shard(key: str, shard_count: int) -> int:
    """Independent placement: the shard whose even slice of [0, 2**128) holds MD5(key)."""
    value = int(hashlib.md5(key.encode("utf-8")).hexdigest(), 16)
    width = 2**128 // shard_count
    return min(value // width, shard_count - 1)


class TestOpen:
    def test_creates_the_directory_and_one_database(self, tmp_path: Path) -> None:
        """open() makes the directory (0750) with parents and a single streams.db in it."""
        directory = tmp_path / "a" / "b"
        with StreamStore.open(directory):
            pass
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750
        assert sorted(p.name for p in directory.iterdir() if p.suffix == ".db") == ["streams.db"]

    def test_missing_store_without_create_is_an_error(self, tmp_path: Path) -> None:
        """create=False on an empty directory raises StoreError naming the directory."""
        with pytest.raises(StoreError, match="no stream store"):
            StreamStore.open(tmp_path, create=False)
        assert not (tmp_path / "streams.db").exists()

    def test_close_twice_and_use_after_close(self, store: StreamStore) -> None:
        """close() is idempotent; later calls raise StoreError instead of crashing."""
        store.close()
        store.close()
        with pytest.raises(StoreError, match="closed"):
            store.list_streams()

    def test_survives_reopen(self, tmp_path: Path) -> None:
        """Streams, records and the sequence counter outlive the connection."""
        with StreamStore.open(tmp_path) as s:
            s.ensure_stream("app", 2, 24)
            first = s.put_records("app", [("k", b"one\n")])[0][1]
        with StreamStore.open(tmp_path) as s:
            second = s.put_records("app", [("k", b"two\n")])[0][1]
            assert [r.data for r in s.read("app")] == [b"one\n", b"two\n"]
        assert int(second) > int(first)


class TestStreams:
    def test_ensure_stream_creates_even_hash_ranges(self, store: StreamStore) -> None:
        """A new stream gets Kinesis shard ids and an even, gap-free split of the hash space."""
        info = store.ensure_stream("app", 3, 48)
        assert (info.name, info.shard_count, info.retention_hours) == ("app", 3, 48)
        assert [s.shard_id for s in info.shards] == [
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002",
        ]
        assert info.shards[0].starting_hash_key == 0
        assert info.shards[-1].ending_hash_key == 2**128 - 1
        for left, right in zip(info.shards, info.shards[1:], strict=False):
            assert right.starting_hash_key == left.ending_hash_key + 1

    def test_existing_stream_is_kept(self, store: StreamStore) -> None:
        """ensure_stream with other settings returns the stream as it was created."""
        store.ensure_stream("app", 2, 24)
        info = store.ensure_stream("app", 8, 100)
        assert (info.shard_count, info.retention_hours) == (2, 24)
        assert store.list_streams() == ["app"]

    @pytest.mark.parametrize("name", ["", "a/b", "../x", "a b", "x" * 129, "é"])
    def test_invalid_names_are_refused(self, store: StreamStore, name: str) -> None:
        """Names outside [a-zA-Z0-9_.-]{1,128} are refused and never touch the disk."""
        with pytest.raises(ValueError, match="invalid stream name"):
            store.ensure_stream(name, 1, 24)
        with pytest.raises(StreamNotFound):
            store.describe(name)

    @pytest.mark.parametrize(("shards", "hours"), [(0, 24), (1025, 24), (1, 0), (1, 8761)])
    def test_out_of_range_settings_are_refused(
        self, store: StreamStore, shards: int, hours: int
    ) -> None:
        """Shard count 1..1024 and retention 1..8760 h, as the config allows."""
        with pytest.raises(ValueError):
            store.ensure_stream("app", shards, hours)

    def test_list_and_describe(self, store: StreamStore) -> None:
        """list_streams is sorted; describe of a missing stream raises StreamNotFound."""
        store.ensure_stream("web", 1, 24)
        store.ensure_stream("app.v2", 1, 8760)
        assert store.list_streams() == ["app.v2", "web"]
        assert store.describe("app.v2").retention_hours == 8760
        with pytest.raises(StreamNotFound, match="nope"):
            store.describe("nope")

    def test_put_into_missing_stream(self, store: StreamStore) -> None:
        """Writing to a stream that does not exist raises StreamNotFound (not retryable)."""
        with pytest.raises(StreamNotFound) as caught:
            store.put_records("ghost", [("k", b"x\n")])
        assert not caught.value.retryable


class TestPutAndRead:
    def test_round_trip_keeps_bytes_keys_and_arrival(
        self, store: StreamStore, clock: FakeClock
    ) -> None:
        """What is put comes back byte for byte, with its key and arrival time."""
        store.ensure_stream("app", 1, 24)
        data = [b"plain\n", b"\xff\x00binary\r\n", b"", b"x" * 1_048_576]
        store.put_records("app", [(f"k{i}", d) for i, d in enumerate(data)])
        got = list(store.read("app"))
        assert [r.data for r in got] == data
        assert [r.partition_key for r in got] == ["k0", "k1", "k2", "k3"]
        assert {r.arrival_timestamp for r in got} == {clock.now}
        assert {r.stream for r in got} == {"app"}

    @pytest.mark.parametrize("shard_count", [1, 2, 3, 4, 7])
    def test_placement_is_md5_of_the_partition_key(
        self, store: StreamStore, shard_count: int
    ) -> None:
        """Each record lands in the shard whose hash range holds MD5(partition key)."""
        store.ensure_stream("app", shard_count, 24)
        keys = [f"key-{i}" for i in range(300)] + ["ü-unicode", "0", "x" * 256]
        result = store.put_records("app", [(k, k.encode()) for k in keys])
        expected = [f"shardId-{md5_shard(k, shard_count):012d}" for k in keys]
        assert [shard for shard, _seq in result] == expected
        for record in store.read("app"):
            assert record.shard_id == f"shardId-{md5_shard(record.partition_key, shard_count):012d}"

    def test_sequence_numbers_increase_in_write_order(self, store: StreamStore) -> None:
        """56-digit sequence numbers, unique, increasing in write order across shards and calls."""
        store.ensure_stream("app", 4, 24)
        seqs = [
            seq
            for _ in range(3)
            for _sh, seq in store.put_records("app", [(str(i), b"x") for i in range(50)])
        ]
        assert all(len(s) == 56 and s.isdigit() for s in seqs)
        assert [int(s) for s in seqs] == sorted(int(s) for s in seqs)
        assert len(set(seqs)) == len(seqs)
        assert seqs == sorted(seqs)  # strings sort like the numbers
        assert int(seqs[0]) > SEQUENCE_BASE

    def test_order_within_a_shard_is_write_order(self, store: StreamStore) -> None:
        """Records of one shard come back in the order they were written, batch after batch."""
        store.ensure_stream("app", 2, 24)
        for batch in range(5):
            store.put_records("app", [("same-key", b"%d\n" % (batch * 10 + i)) for i in range(10)])
        assert [int(r.data) for r in store.read("app")] == list(range(50))

    def test_shards_come_back_in_id_order(self, store: StreamStore) -> None:
        """read() without a shard yields shard 0's records, then shard 1's, and so on."""
        store.ensure_stream("app", 4, 24)
        store.put_records("app", [(f"k{i}", b"x") for i in range(100)])
        shard_ids = [r.shard_id for r in store.read("app")]
        assert shard_ids == sorted(shard_ids)
        assert len(set(shard_ids)) == 4

    def test_sequence_numbers_are_never_reused_after_trimming(
        self, store: StreamStore, clock: FakeClock
    ) -> None:
        """After every record expired, new records still get higher sequence numbers."""
        store.ensure_stream("app", 1, 1)
        before = store.put_records("app", [("k", b"old")])[0][1]
        clock.now += 2 * 3600
        assert store.trim_expired() == 1
        after = store.put_records("app", [("k", b"new")])[0][1]
        assert int(after) > int(before)

    def test_partition_keys_are_checked(self, store: StreamStore) -> None:
        """An empty key or one over 256 characters is refused before anything is written."""
        store.ensure_stream("app", 2, 24)
        for bad in ("", "k" * 257):
            with pytest.raises(ValueError, match="partition key"):
                store.put_records("app", [("ok", b"x"), (bad, b"y")])
        assert list(store.read("app")) == []

    def test_empty_put_saves_only_checkpoints(self, store: StreamStore) -> None:
        """put_records with no entries still upserts the checkpoints."""
        store.ensure_stream("app", 1, 24)
        assert len(store.put_records("app", [], [checkpoint(10)])) == 0
        assert [c.offset for c in store.load_checkpoints("local:app:/var/log/*.log")] == [10]

    def test_shard_stats(self, store: StreamStore) -> None:
        """shard_stats counts records and bytes per shard and gives the first/last sequence."""
        store.ensure_stream("app", 2, 24)
        result = store.put_records("app", [(f"k{i}", b"12345") for i in range(20)])
        stats = store.shard_stats("app")
        assert sum(s.records for s in stats) == 20
        assert sum(s.bytes for s in stats) == 100
        for s in stats:
            mine = [seq for shard, seq in result if shard == s.shard_id]
            assert (s.first_sequence_number, s.last_sequence_number) == (mine[0], mine[-1])


class TestCheckpoints:
    def test_upsert_and_load_per_flow(self, store: StreamStore) -> None:
        """Checkpoints are upserted by (flow, file identity) and loaded per flow."""
        store.ensure_stream("app", 1, 24)
        store.put_records("app", [("k", b"a\n")], [checkpoint(2), checkpoint(7, ino=43)])
        store.put_records("app", [("k", b"b\n")], [checkpoint(4)])
        store.put_records("app", [], [checkpoint(99, flow="other")])
        got = sorted(store.load_checkpoints("local:app:/var/log/*.log"), key=lambda c: c.file.ino)
        assert [(c.file.ino, c.offset) for c in got] == [(42, 4), (43, 7)]
        assert got[0] == checkpoint(4)
        assert [c.offset for c in store.load_checkpoints("other")] == [99]
        assert store.load_checkpoints("nobody") == []

    def test_inode_and_device_beyond_signed_64_bits(self, store: StreamStore) -> None:
        """Unsigned 64-bit st_dev/st_ino (some filesystems use the top bit) round-trip."""
        store.ensure_stream("app", 1, 24)
        big = Checkpoint("f", FileId(2**64 - 1, 2**63 + 5, 1024, b"h"), "/x", 1)
        store.put_records("app", [], [big])
        assert store.load_checkpoints("f") == [big]

    def test_a_failure_mid_transaction_keeps_neither(self, store: StreamStore) -> None:
        """When the checkpoint write fails after the records were inserted, neither is visible."""
        store.ensure_stream("app", 2, 24)
        store.put_records("app", [("k", b"kept\n")], [checkpoint(5)])
        broken = Checkpoint("local:app:/var/log/*.log", FileId(1, 1, 1, b"x"), None, 9)  # type: ignore[arg-type]
        with pytest.raises(StoreError, match="NOT NULL"):
            store.put_records(
                "app", [(f"k{i}", b"lost\n") for i in range(100)], [checkpoint(500), broken]
            )
        assert [r.data for r in store.read("app")] == [b"kept\n"]
        assert [c.offset for c in store.load_checkpoints("local:app:/var/log/*.log")] == [5]
        # the rolled-back batch used no sequence numbers either
        following = store.put_records("app", [("k", b"next\n")])[0][1]
        assert int(following) == SEQUENCE_BASE + 2

    def test_expire_checkpoints(self, store: StreamStore, clock: FakeClock) -> None:
        """expire_checkpoints forgets rows not updated for the given number of days."""
        store.ensure_stream("app", 1, 24)
        store.put_records("app", [], [checkpoint(1, ino=1)])
        clock.now += 8 * 86400
        store.put_records("app", [], [checkpoint(2, ino=2)])
        assert store.expire_checkpoints(7) == 1
        assert [c.file.ino for c in store.load_checkpoints("local:app:/var/log/*.log")] == [2]


class TestRetention:
    def test_trim_removes_only_expired_records(self, store: StreamStore, clock: FakeClock) -> None:
        """trim_expired deletes records older than the stream's retention, per stream."""
        store.ensure_stream("short", 2, 1)
        store.ensure_stream("long", 2, 48)
        for name in ("short", "long"):
            store.put_records(name, [(f"k{i}", b"old") for i in range(10)])
        clock.now += 1800
        store.put_records("short", [(f"k{i}", b"young") for i in range(10)])
        assert store.trim_expired(now=clock.now + 1800 + 1) == 10
        assert {r.data for r in store.read("short")} == {b"young"}
        assert len(list(store.read("long"))) == 10

    def test_trim_keeps_a_record_exactly_at_the_horizon(
        self, store: StreamStore, clock: FakeClock
    ) -> None:
        """A record that arrived exactly retention ago stays; one a moment older goes."""
        store.ensure_stream("app", 1, 1)
        store.put_records("app", [("k", b"a")])
        assert store.trim_expired(now=clock.now + 3600) == 0
        assert store.trim_expired(now=clock.now + 3600.001) == 1

    def test_trim_in_chunks(
        self, store: StreamStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Large trims are split into bounded transactions and still delete everything due."""
        monkeypatch.setattr("agent.store.retention.TRIM_CHUNK", 7)
        store.ensure_stream("app", 1, 1)
        store.put_records("app", [("k", b"%d" % i) for i in range(50)])
        clock.now += 1
        store.put_records("app", [("k", b"stay")])
        assert store.trim_expired(now=clock.now + 3600 - 0.5) == 50
        assert [r.data for r in store.read("app")] == [b"stay"]

    def test_writes_trigger_trimming_at_most_once_a_minute(
        self, tmp_path: Path, clock: FakeClock
    ) -> None:
        """put_records trims expired records itself, but no more than once a minute."""
        mono = FakeClock(0.0)
        with StreamStore.open(tmp_path, clock=clock, monotonic=mono) as store:
            store.ensure_stream("app", 1, 1)
            store.put_records("app", [("k", b"first")])  # the first put trims (nothing yet)
            clock.now += 3600 + 30
            mono.now += 30
            store.put_records("app", [("k", b"second")])  # within the minute: no trim
            assert len(list(store.read("app"))) == 2
            mono.now += 31
            store.put_records("app", [("k", b"third")])
            assert [r.data for r in store.read("app")] == [b"second", b"third"]


class TestSharing:
    def test_two_connections_write_concurrently(self, tmp_path: Path) -> None:
        """Two stores on one directory, each in its own thread, never fail with 'locked'."""
        stores = [StreamStore.open(tmp_path) for _ in range(2)]
        for s in stores:
            s.ensure_stream("app", 4, 24)
        errors: list[BaseException] = []

        def writer(s: StreamStore, tag: bytes) -> None:
            try:
                for batch in range(40):
                    s.put_records(
                        "app",
                        [(f"{tag!r}{i}", b"%s %d %d\n" % (tag, batch, i)) for i in range(100)],
                        [checkpoint(batch, flow=tag.decode())],
                    )
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=writer, args=(s, t))
            for s, t in zip(stores, (b"a", b"b"), strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        records = list(stores[0].read("app"))
        assert len(records) == 8000
        assert len({r.sequence_number for r in records}) == 8000
        assert [c.offset for c in stores[1].load_checkpoints("a")] == [39]
        for s in stores:
            s.close()

    def test_a_writer_waits_for_another_transaction(self, tmp_path: Path) -> None:
        """A write while another connection holds the write lock waits instead of failing."""
        with StreamStore.open(tmp_path) as s:
            s.ensure_stream("app", 1, 24)
            other = sqlite3.connect(
                tmp_path / "streams.db", isolation_level=None, check_same_thread=False
            )
            other.execute("BEGIN IMMEDIATE")
            timer = threading.Timer(0.3, lambda: other.execute("COMMIT"))
            timer.start()
            started = time.monotonic()
            s.put_records("app", [("k", b"x")])
            assert time.monotonic() - started >= 0.25
            timer.join()
            other.close()

    def test_read_only_reader_sees_commits_while_the_writer_is_open(self, tmp_path: Path) -> None:
        """A read-only connection reads while the writer keeps its connection open."""
        writer = StreamStore.open(tmp_path)
        writer.ensure_stream("app", 2, 24)
        reader = StreamStore.open(tmp_path, create=False, read_only=True)
        assert list(reader.read("app")) == []
        writer.put_records("app", [("k", b"hello\n")])
        assert [r.data for r in reader.read("app")] == [b"hello\n"]
        with pytest.raises(StoreError):
            reader.ensure_stream("other", 1, 24)
        reader.close()
        writer.close()

    def test_database_file_is_not_world_readable(self, tmp_path: Path) -> None:
        """streams.db is created 0640 whatever the umask: logs may hold private data."""
        old = os.umask(0)
        try:
            StreamStore.open(tmp_path / "s").close()
        finally:
            os.umask(old)
        assert stat.S_IMODE((tmp_path / "s" / "streams.db").stat().st_mode) == 0o640


class StoreModel(RuleBasedStateMachine):
    """Random puts, failed puts, clock jumps, trims and reopens against a list-per-shard model."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.clock = FakeClock()
        self.shard_count = 3
        self.store = self.open()
        self.store.ensure_stream("m", self.shard_count, 1)
        self.model: list[list[tuple[str, bytes, float]]] = [[] for _ in range(self.shard_count)]
        self.offset = 0
        self.saved: list[int] = []
        self.n = 0

    def open(self) -> StreamStore:
        # The monotonic clock stands still: only the first put after opening trims by itself.
        self.fresh = True
        return StreamStore.open(self.tmp.name, clock=self.clock, monotonic=lambda: 0.0)

    def expire(self) -> int:
        cutoff = self.clock.now - 3600
        expired = 0
        for shard in self.model:
            while shard and shard[0][2] < cutoff:
                shard.pop(0)
                expired += 1
        return expired

    @rule(keys=st.lists(st.text(min_size=1, max_size=20), max_size=40))
    def put(self, keys: list[str]) -> None:
        entries = []
        for key in keys:
            entries.append((key, b"%d\n" % self.n))
            self.n += 1
        self.offset += len(entries)
        self.store.put_records("m", entries, [checkpoint(self.offset)])
        self.saved = [self.offset]
        for key, data in entries:
            self.model[md5_shard(key, self.shard_count)].append((key, data, self.clock.now))
        if self.fresh:
            self.fresh = False
            self.expire()

    @rule(count=st.integers(1, 20))
    def failed_put(self, count: int) -> None:
        broken = Checkpoint("f", FileId(1, 1, 1, b"x"), None, 1)  # type: ignore[arg-type]
        with pytest.raises(StoreError):
            self.store.put_records("m", [("k", b"never\n")] * count, [checkpoint(-1), broken])

    @rule(seconds=st.sampled_from([1.0, 600.0, 1800.0, 3600.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def trim(self) -> None:
        expected = self.expire()
        assert self.store.trim_expired() == expected

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self.open()

    @invariant()
    def stored_matches_the_model(self) -> None:
        for i, shard in enumerate(self.model):
            got = [
                (r.partition_key, r.data, r.arrival_timestamp)
                for r in self.store.read("m", shard_id=str(i))
            ]
            assert got == shard
        saved = self.store.load_checkpoints("local:app:/var/log/*.log")
        assert [c.offset for c in saved] == self.saved

    def teardown(self) -> None:
        self.store.close()
        self.tmp.cleanup()


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)


def test_a_store_database_planted_as_a_link_is_refused(tmp_path: Path) -> None:
    """``streams.db -> victim`` in the agent user's directory, root runs the agent: refused,
    the victim unchanged (reading through a link, ``stream read``, stays allowed)."""
    victim = tmp_path / "victim.db"
    db = sqlite3.connect(victim)
    db.execute("CREATE TABLE precious (x)")
    db.commit()
    db.close()
    before = victim.read_bytes()
    store_dir = tmp_path / "streams"
    store_dir.mkdir()
    (store_dir / "streams.db").symlink_to(victim)
    with pytest.raises(StoreError, match="is a symbolic link"):
        StreamStore.open(store_dir)
    assert victim.read_bytes() == before
