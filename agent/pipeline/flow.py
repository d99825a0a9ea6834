"""One flow wired end to end: files → framing → processors → batches → sink → checkpoints.

``Flow`` only builds the parts and runs them; each part is its own module with one job:

- ``Reader`` (reader.py): discovery, reading, framing; ``once`` is its policy. Its own task.
- ``Processing`` (processing.py): the processors, in this process or in the processor worker,
  one results path. Its own task when there is a worker (collecting results in read order).
- ``Sender`` (sender.py): batches from the ``Batcher`` queue, one retry loop. Its own task.
- ``Checkpointer`` (checkpointer.py): writes checkpoints, at most once a second. Its own task.
- ``Budget`` (budget.py): the one in-flight byte budget they all charge and release.

reader → processing.submit → (worker chunks, bounded) → sender.put → Batcher → sink; delivered
records are acknowledged to their file (FileAcks) and the checkpointer writes what they allow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from agent import gcpolicy
from agent.checkpoints import CheckpointDB
from agent.config import AgentConfig, FlowConfig
from agent.observability.metrics import FlowMetrics
from agent.pipeline.budget import Budget
from agent.pipeline.checkpointer import Checkpointer
from agent.pipeline.processing import Processing
from agent.pipeline.reader import Reader
from agent.pipeline.sender import Sender
from agent.records import Checkpoint
from agent.sinks import Sink
from agent.tailing.tracker import FileSet


class Flow:
    """Runs one flow until told to stop (or, with ``once``, until every file is shipped to its end)."""

    def __init__(
        self,
        agent: AgentConfig,
        config: FlowConfig,
        sink: Sink,
        metrics: FlowMetrics,
        checkpoint_db: CheckpointDB | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        processor_worker: bool | int | None = None,
    ) -> None:
        self.agent = agent
        self.config = config
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        self.budget = Budget(config.max_in_flight_bytes)
        self.checkpointer = Checkpointer(config, sink, metrics, checkpoint_db, clock=clock)
        self.sender = Sender(config, sink, metrics, self.budget, self.checkpointer, clock=clock)
        self.processing = Processing(
            agent, config, metrics, self.budget, self.sender, processor_worker=processor_worker
        )
        self.reader: Reader | None = None

    @property
    def files(self) -> FileSet | None:
        return self.reader.files if self.reader is not None else None

    def load_checkpoints(self) -> list[Checkpoint]:
        return self.checkpointer.load()

    async def run(self, stop: asyncio.Event, *, once: bool = False) -> None:
        gcpolicy.tune()
        reader = self.reader = Reader(
            self.config,
            self.metrics,
            self.budget,
            self.processing,
            self.sender,
            self.checkpointer.seen,
            once=once,
            clock=self.clock,
        )
        await reader.start(
            await asyncio.to_thread(self.checkpointer.load), self.sink.max_record_bytes
        )
        self.checkpointer.files = reader.files
        await self.processing.start()
        self.metrics.status = "running"
        flow_id = self.config.flow_id
        try:
            async with asyncio.TaskGroup() as tg:
                sender = tg.create_task(self.sender.run(), name=f"send {flow_id}")
                checkpointer = tg.create_task(self.checkpointer.run(), name=f"save {flow_id}")
                collector = (
                    tg.create_task(self.processing.run(), name=f"process {flow_id}")
                    if self.processing.use_worker
                    else None
                )
                try:
                    await reader.run(stop)
                    if collector is not None:  # what the worker holds is processed and queued
                        self.processing.done_submitting()
                        await collector
                finally:
                    self.sender.done_reading()
                await sender
                self.checkpointer.finish()  # everything is delivered: the last checkpoints
                await checkpointer
        finally:
            reader.stop_watching()
            await self.processing.aclose()
            self._save_on_exit()
            if reader.files is not None:
                reader.files.close()
            self.metrics.status = "stopped"

    def _save_on_exit(self) -> None:
        """Cancelled or done: what is acknowledged must be on disk before we go (plain sinks)."""
        self.checkpointer.save_on_exit()
