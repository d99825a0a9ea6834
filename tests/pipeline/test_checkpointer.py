"""The checkpoint writer on its own task beside the sender: into a transactional sink their
commits never overlap, so a checkpoint written later is never older than one written before."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from agent.config import AgentConfig, FlowConfig
from agent.errors import StoreError
from agent.observability.metrics import FlowMetrics
from agent.pipeline.flow import Flow
from agent.pipeline.sender import Backoff
from agent.records import Checkpoint, Span
from agent.tailing.framing import Framed
from tests.support.spans import file_acks


class SlowStore:
    """A transactional sink whose commits take a while; remembers each commit's checkpoints."""

    transactional = True
    packs_records = False
    max_record_bytes = 1 << 20
    max_batch_records = 500
    max_batch_bytes = 5 << 20
    max_send_records = None
    max_send_bytes = None
    metrics = None

    def __init__(self) -> None:
        self.active = 0
        self.overlaps = 0
        self.commits: list[tuple[int, list[tuple[str, int]]]] = []

    async def commit(self, spans: Sequence[Span], checkpoints: Sequence[Checkpoint]) -> None:
        self.active += 1
        self.overlaps += self.active > 1
        await asyncio.sleep(0.01)
        self.commits.append((sum(map(len, spans)), [(c.path, c.offset) for c in checkpoints]))
        self.active -= 1

    def load_checkpoints(self, flow_id: str) -> list[Checkpoint]:
        return []

    async def aclose(self) -> None:
        pass


def test_checkpoint_commits_never_overlap_a_batch_commit() -> None:
    """A batch commit and the checkpointer's save at the same moment: one after the other, and
    each file's stored checkpoint only moves forward."""
    flow_cfg = FlowConfig(file_pattern="/l/*.log", local_stream="s")
    sink = SlowStore()
    flow = Flow(AgentConfig(flows=(flow_cfg,)), flow_cfg, sink, FlowMetrics("f", "s"), None)
    busy = file_acks()
    batch = [Span([b"r%d\n" % i for i in range(3)], [0, 10, 20, 30], busy)]
    busy.register(batch[0])
    header = file_acks("/l/b.log", ino=3)
    # a read whose records were all skipped (a header): a checkpoint no batch carries, only the
    # checkpointer writes it
    skipped = Span([], [50], header)
    header.register(skipped)
    skipped.acked = True
    header.advance()
    flow.checkpointer.seen.update((busy, header))

    async def main() -> None:
        await asyncio.gather(flow.sender.deliver(batch), flow.checkpointer.persist(force=True))

    asyncio.run(main())
    assert sink.overlaps == 0
    stored: dict[str, int] = {}
    for _records, rows in sink.commits:
        for path, offset in rows:
            assert offset >= stored.get(path, 0)
            stored[path] = offset
    assert stored == {"/l/a.log": 30, "/l/b.log": 50}
    assert not busy.dirty and not header.dirty


class FailingOnceStore(SlowStore):
    """Its first batch commit waits to be let go, then fails; the checkpoints it was given
    are stored only with a commit that succeeds."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: list[bytes] = []
        self.rows: dict[str, int] = {}
        self.fail = 1
        self.in_commit = asyncio.Event()
        self.go = asyncio.Event()

    async def commit(
        self, spans: Sequence[Span], checkpoints: Sequence[Checkpoint]
    ) -> StoreError | None:  # type: ignore[override]
        if spans:
            self.in_commit.set()
            await self.go.wait()
            if self.fail:
                self.fail -= 1
                return StoreError("disk full")
            self.stored += [d for span in spans for d in span.datas]
        for c in checkpoints:
            self.rows[c.path] = c.offset
        return None


def test_a_checkpoint_never_passes_a_batch_whose_commit_fails() -> None:
    """A read whose records were all skipped is acknowledged while the batch before it is being
    committed; that commit fails: the checkpoint stored meanwhile (by the checkpointer, during
    the backoff) stays before the batch, and the batch is stored at the retry, once."""
    flow_cfg = FlowConfig(file_pattern="/l/*.log", local_stream="s")
    sink = FailingOnceStore()
    flow = Flow(AgentConfig(flows=(flow_cfg,)), flow_cfg, sink, FlowMetrics("f", "s"), None)
    sender = flow.sender
    sender.backoff = Backoff(100, 100, rand=lambda: 1.0)

    async def slow_backoff(_delay: float) -> None:
        await asyncio.sleep(0.2)

    sender.sleep = slow_backoff
    acks = file_acks()
    flow.checkpointer.seen.add(acks)

    async def main() -> None:
        flow.processing.submit(acks, Framed([b"a\n", b"b\n"], [0, 2, 4]))
        sender.done_reading()
        sending = asyncio.create_task(sender.run())
        await sink.in_commit.wait()
        skipped = Span([], [6], acks)  # a read of 2 bytes whose one record a processor skipped
        acks.register(skipped)
        skipped.acked = True
        acks.advance()
        sink.go.set()
        await asyncio.sleep(0.05)  # the commit failed; the sender backs off
        await flow.checkpointer.persist(force=True)
        assert sink.stored == [] and sink.rows.get("/l/a.log", 0) == 0
        await sending
        await flow.checkpointer.persist(force=True)

    asyncio.run(main())
    assert sink.stored == [b"a\n", b"b\n"]
    assert sink.rows == {"/l/a.log": 6} and acks.checkpoint == 6 and not acks.dirty


def test_an_acknowledgement_during_a_commit_is_written_after_it() -> None:
    """A read whose records were all skipped is acknowledged while the batch before it is being
    committed, successfully: the commit stores the batch's checkpoint, and the checkpointer then
    writes the skipped read's (the file stays dirty; it is not lost until the next batch)."""
    flow_cfg = FlowConfig(file_pattern="/l/*.log", local_stream="s")
    sink = FailingOnceStore()
    sink.fail = 0
    flow = Flow(AgentConfig(flows=(flow_cfg,)), flow_cfg, sink, FlowMetrics("f", "s"), None)
    acks = file_acks()
    flow.checkpointer.seen.add(acks)

    async def main() -> None:
        flow.processing.submit(acks, Framed([b"a\n", b"b\n"], [0, 2, 4]))
        flow.sender.done_reading()
        sending = asyncio.create_task(flow.sender.run())
        await sink.in_commit.wait()
        skipped = Span([], [6], acks)
        acks.register(skipped)
        skipped.acked = True
        acks.advance()
        sink.go.set()
        await sending
        assert sink.rows == {"/l/a.log": 4} and acks.dirty
        await flow.checkpointer.persist(force=True)

    asyncio.run(main())
    assert sink.stored == [b"a\n", b"b\n"]
    assert sink.rows == {"/l/a.log": 6} and not acks.dirty
