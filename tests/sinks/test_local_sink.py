"""LocalSink: a flow's batches and checkpoints go into the embedded store together, or not at all."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, parse_config
from agent.errors import StoreError
from agent.records import Checkpoint, FileId, Span
from agent.sinks import Sink
from agent.sinks.factory import open_sink
from agent.sinks.local import LocalSink
from agent.store import StreamStore
from tests.support.spans import span_of


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (the sink's own protocol is async)."""

    @wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def config(directory: Path, **flow: Any) -> AgentConfig:
    return parse_config(
        {
            "localStore.directory": str(directory),
            "localStore.shardCount": 3,
            "localStore.retentionHours": 48,
            "flows": [{"filePattern": "/var/log/app/*.log", "localStream": "app", **flow}],
        }
    )


def records(*lines: bytes) -> list[Span]:
    """The lines as a batch: one span, as the reader reads them."""
    return [span_of(list(lines))]


def checkpoint(flow_id: str, offset: int) -> Checkpoint:
    return Checkpoint(flow_id, FileId(2049, 42, 1024, b"\x02" * 32), "/var/log/app/a.log", offset)


def stored(directory: Path, stream: str = "app") -> list[bytes]:
    with StreamStore.open(directory, create=False, read_only=True) as store:
        return [r.data for r in store.read(stream)]


@pytest.fixture
def cfg(tmp_path: Path) -> AgentConfig:
    return config(tmp_path / "streams")


class TestOpen:
    def test_open_creates_the_stream_from_the_config(self, cfg: AgentConfig) -> None:
        """open() creates the flow's stream with localStore.shardCount and retentionHours."""
        sink = LocalSink.open(cfg, cfg.flows[0])
        info = sink.store.describe("app")
        assert (info.shard_count, info.retention_hours) == (3, 48)
        asyncio.run(sink.aclose())

    def test_is_a_transactional_sink_with_kinesis_limits(self, cfg: AgentConfig) -> None:
        """open_sink picks it for localStream; its limits are PutRecords's (a record is cut to
        leave room for its 12-character RANDOM key within 1 MiB, as into Kinesis)."""
        sink: Sink = open_sink(cfg, cfg.flows[0])
        assert isinstance(sink, LocalSink)
        assert sink.transactional
        assert (sink.max_record_bytes, sink.max_batch_records, sink.max_batch_bytes) == (
            1024 * 1024 - 12,
            500,
            5 * 1024 * 1024,
        )
        asyncio.run(sink.aclose())


class TestCommit:
    @run_async
    async def test_delivers_records_and_commits_checkpoints(self, cfg: AgentConfig) -> None:
        """A commit stores every record, reports no error and saves the checkpoints."""
        flow = cfg.flows[0]
        sink = LocalSink.open(cfg, flow)
        batch = records(b"one\n", b"two\n", b"three\n")
        assert await sink.commit(batch, [checkpoint(flow.flow_id, 14)]) is None
        assert sorted(stored(Path(cfg.local_store_directory))) == [b"one\n", b"three\n", b"two\n"]
        assert [c.offset for c in sink.load_checkpoints(flow.flow_id)] == [14]
        await sink.aclose()

    @run_async
    async def test_sets_partition_keys_as_the_flow_asks(self, tmp_path: Path) -> None:
        """Records get their key from partitionKeyOption: DETERMINISTIC is the data's MD5."""
        cfg = config(tmp_path, partitionKeyOption="DETERMINISTIC")
        sink = LocalSink.open(cfg, cfg.flows[0])
        assert await sink.commit(records(b"a\n", b"b\n"), []) is None
        with StreamStore.open(tmp_path, create=False, read_only=True) as store:
            keys = {r.data: r.partition_key for r in store.read("app")}
        assert keys == {d: hashlib.md5(d).hexdigest() for d in (b"a\n", b"b\n")}
        await sink.aclose()

    @run_async
    async def test_a_store_failure_retries_the_whole_batch(self, cfg: AgentConfig) -> None:
        """When the commit fails, nothing is stored and every record comes back to retry."""
        flow = cfg.flows[0]
        sink = LocalSink.open(cfg, flow)
        await sink.commit(records(b"kept\n"), [checkpoint(flow.flow_id, 5)])
        broken = Checkpoint(flow.flow_id, FileId(1, 1, 1, b"x"), None, 1)  # type: ignore[arg-type]
        batch = records(b"x\n", b"y\n")
        error = await sink.commit(batch, [checkpoint(flow.flow_id, 9), broken])
        assert isinstance(error, StoreError) and error.retryable
        assert stored(Path(cfg.local_store_directory)) == [b"kept\n"]
        assert [c.offset for c in sink.load_checkpoints(flow.flow_id)] == [5]
        await sink.aclose()

    @run_async
    async def test_counts_a_group_commit_as_the_batches_it_carries(self, tmp_path: Path) -> None:
        """The sink is the one writer of its send counters: a commit of 1,200 records counts
        as three sends of maxBufferSizeRecords (500), a failed commit as failed sends, and a
        commit of checkpoints alone as none."""
        from agent.observability.metrics import FlowMetrics

        cfg = config(tmp_path)
        flow = cfg.flows[0]
        metrics = FlowMetrics(flow.flow_id, flow.destination)
        sink = LocalSink.open(cfg, flow, metrics)
        batch = records(*[b"line %d\n" % i for i in range(1200)])
        await sink.commit(batch, [checkpoint(flow.flow_id, batch[-1].end)])
        await sink.commit([], [checkpoint(flow.flow_id, batch[-1].end)])
        sent = batch[0].size
        assert (metrics.send_calls, metrics.records_sent, metrics.bytes_sent) == (3, 1200, sent)
        await sink.aclose()
        await sink.commit(records(b"late\n"), [])  # closed: to retry, counted as failed
        assert (metrics.send_calls, metrics.record_send_errors, metrics.service_errors) == (
            4,
            1,
            1,
        )

    @run_async
    async def test_a_record_cut_for_its_long_field_key_counts_the_bytes_stored(
        self, tmp_path: Path
    ) -> None:
        """A FIELD key that pushes a record over 1 MiB cuts the data; the bytes counted sent
        are the ones stored, not the record's before the cut."""
        from agent.observability.metrics import FlowMetrics

        cfg = config(tmp_path, partitionKeyOption="FIELD", partitionKeyField="user")
        flow = cfg.flows[0]
        metrics = FlowMetrics(flow.flow_id, flow.destination)
        sink = LocalSink.open(cfg, flow, metrics)
        head = b'{"user": "' + b"u" * 200 + b'", "pad": "'
        line = head + b"p" * (1024 * 1024 - 100 - len(head) - 3) + b'"}\n'
        assert await sink.commit(records(line), []) is None
        [data] = stored(tmp_path)
        assert len(data) < len(line)
        assert (metrics.bytes_sent, metrics.records_truncated) == (len(data), 1)
        await sink.aclose()

    @run_async
    async def test_checkpoints_alone(self, cfg: AgentConfig) -> None:
        """An empty batch with checkpoints (records a processor dropped) saves the checkpoints."""
        flow = cfg.flows[0]
        sink = LocalSink.open(cfg, flow)
        assert await sink.commit([], [checkpoint(flow.flow_id, 100)]) is None
        assert [c.offset for c in sink.load_checkpoints(flow.flow_id)] == [100]
        await sink.aclose()

    @run_async
    async def test_send_after_close_asks_for_a_retry(self, cfg: AgentConfig) -> None:
        """A closed sink stores nothing and returns an error (the batch is retried)."""
        sink = LocalSink.open(cfg, cfg.flows[0])
        await sink.aclose()
        await sink.aclose()
        assert isinstance(await sink.commit(records(b"late\n"), []), StoreError)


class TestSharing:
    @run_async
    async def test_two_flows_into_one_store_at_once(self, tmp_path: Path) -> None:
        """Two sinks on one directory (two connections, worker threads) never fail on locks."""
        cfg = parse_config(
            {
                "localStore.directory": str(tmp_path),
                "flows": [
                    {"filePattern": "/a/*.log", "localStream": "a"},
                    {"filePattern": "/b/*.log", "localStream": "b"},
                ],
            }
        )
        sinks = [LocalSink.open(cfg, flow) for flow in cfg.flows]

        async def ship(sink: LocalSink, flow_id: str) -> None:
            for i in range(30):
                batch = records(*(b"%s %d %d\n" % (flow_id.encode(), i, j) for j in range(200)))
                error = await sink.commit(batch, [checkpoint(flow_id, (i + 1) * 200)])
                assert error is None, error

        await asyncio.gather(*(ship(s, f.flow_id) for s, f in zip(sinks, cfg.flows, strict=True)))
        assert len(stored(tmp_path, "a")) == len(stored(tmp_path, "b")) == 6000
        for sink, flow in zip(sinks, cfg.flows, strict=True):
            assert [c.offset for c in sink.load_checkpoints(flow.flow_id)] == [6000]
            await sink.aclose()

    @run_async
    async def test_send_waits_for_a_writer_holding_the_lock(self, cfg: AgentConfig) -> None:
        """While another process holds the write lock, send waits and then succeeds."""
        sink = LocalSink.open(cfg, cfg.flows[0])
        other = sqlite3.connect(
            Path(cfg.local_store_directory) / "streams.db",
            isolation_level=None,
            check_same_thread=False,
        )
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
        release.start()
        error = await sink.commit(records(b"patient\n"), [])
        release.join()
        other.close()
        assert error is None
        await sink.aclose()
