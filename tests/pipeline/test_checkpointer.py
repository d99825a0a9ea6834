"""The checkpoint writer on its own task beside the sender: into a transactional sink their
commits never overlap, so a checkpoint written later is never older than one written before."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from agent.config import AgentConfig, FlowConfig
from agent.observability.metrics import FlowMetrics
from agent.pipeline.flow import Flow
from agent.records import Checkpoint, FileId, Span
from agent.tailing.tailer import FileAcks


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
    busy = FileAcks("f", FileId(1, 2, 16, b"\x01" * 16), "/l/a.log", 0)
    batch = [Span([b"r%d\n" % i for i in range(3)], [0, 10, 20, 30], busy)]
    busy.register(batch[0])
    header = FileAcks("f", FileId(1, 3, 16, b"\x02" * 16), "/l/b.log", 0)
    header.skip_to(50)  # a checkpoint no batch carries: only the checkpointer writes it
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
