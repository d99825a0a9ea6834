"""An in-process agent for one flow that tests can start, stop, restart and wait on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from agent.checkpoints import CheckpointDB
from agent.config import AgentConfig, FlowConfig
from agent.observability.metrics import FlowMetrics
from agent.pipeline.flow import Flow
from agent.records import Checkpoint
from agent.sinks import MemorySink, Sink
from agent.tailing.tracker import FileSet


def fast_flow(pattern: str, **overrides: object) -> FlowConfig:
    """A flow with test-speed timings (below the ranges config.py allows operators)."""
    base = FlowConfig(
        file_pattern=pattern,
        local_stream="test",
        initial_position="START_OF_FILE",
        max_buffer_age_millis=20,
        min_time_between_file_polls_millis=10,
        max_time_between_file_tracker_refresh_millis=200,
        partial_line_flush_millis=150,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def file_set_for(
    flow: FlowConfig,
    checkpoints: Sequence[Checkpoint] = (),
    *,
    metrics: FlowMetrics | None = None,
    clock: Callable[[], float] = lambda: 0.0,
) -> FileSet:
    """A flow's FileSet driven by the test itself (no Flow around it): a still clock unless
    given one, fresh metrics unless the test reads them."""
    if metrics is None:
        metrics = FlowMetrics(flow.flow_id, "test")
    return FileSet(flow, list(checkpoints), metrics, max_record_bytes=1 << 20, clock=clock)


class SeverableCheckpoints(CheckpointDB):
    """The checkpoint file as the flow sees it, until :meth:`sever`: from then on a save writes
    nothing, as nothing more reaches the disk from a process killed with SIGKILL."""

    severed = False

    def sever(self) -> None:
        self.severed = True

    def save(self, checkpoints: Sequence[Checkpoint]) -> None:
        if not self.severed:
            super().save(checkpoints)


class FlowHarness:
    """Runs a Flow on a private event loop; the sink survives restarts, the checkpoints too."""

    def __init__(
        self,
        tmp: Path,
        flow: FlowConfig,
        sink_factory: Callable[[], Sink] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        processor_worker: bool | int | None = None,
    ) -> None:
        self.processor_worker = processor_worker  # the Flow's (None: by the machine's cores)
        self.agent = AgentConfig(
            flows=(flow,),
            checkpoint_file=str(tmp / "cp.db"),
            local_store_directory=str(tmp / "streams"),
            local_store_shard_count=1,
        )
        self.flow_config = flow
        self.clock = clock  # the flow's (a test moves it forward to pass time-outs)
        self.loop = asyncio.new_event_loop()
        self.memory = MemorySink()
        self.sink_factory = sink_factory or (lambda: self.memory)
        self.sink: Sink | None = None
        self.db: SeverableCheckpoints | None = None
        self.task: asyncio.Task[None] | None = None
        self.stop_event: asyncio.Event | None = None
        self.flow: Flow | None = None

    def start(self) -> None:
        assert self.task is None
        self.sink = self.sink_factory()
        self.db = (
            None if self.sink.transactional else SeverableCheckpoints(self.agent.checkpoint_file)
        )
        metrics = FlowMetrics(self.flow_config.flow_id, self.flow_config.destination)
        self.flow = Flow(
            self.agent,
            self.flow_config,
            self.sink,
            metrics,
            self.db,
            clock=self.clock,
            processor_worker=self.processor_worker,
        )
        self.stop_event = asyncio.Event()
        self.task = self.loop.create_task(self.flow.run(self.stop_event))
        self.run_for(0.05)

    def start_flow(self) -> Flow:
        """:meth:`start`, and the Flow it runs (for a test that reaches into it)."""
        self.start()
        assert self.flow is not None
        return self.flow

    def stop(self) -> None:
        """Graceful: stop reading, drain, commit."""
        assert self.task is not None and self.stop_event is not None
        self.stop_event.set()
        self.loop.run_until_complete(self.task)
        self._closed()

    def crash(self) -> None:
        """Abandon the flow mid-work: nothing more is committed (like kill -9).

        The checkpoint file the flow was given is cut off first, so neither a periodic save
        still running nor the flow's save on its way out reaches the disk; a transactional sink
        keeps its checkpoints in its own commits, which stop with the task."""
        assert self.task is not None
        if self.db is not None:
            self.db.sever()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self.task)
        self._closed()

    def _closed(self) -> None:
        if self.sink is not None and self.sink is not self.memory:
            self.loop.run_until_complete(self.sink.aclose())
        if self.db is not None:
            self.db.close()
        self.task = None
        self.flow = None

    def local_sink(self) -> Sink:
        """A factory for the embedded store's transactional sink (use as ``sink_factory``)."""
        from agent.sinks.local import LocalSink

        return LocalSink.open(self.agent, self.flow_config)

    def stored(self) -> list[bytes]:
        """What the embedded store holds, in commit order."""
        from agent.store.store import StreamStore

        with StreamStore.open(self.agent.local_store_directory) as store:
            store.ensure_stream("test", 1, 24)
            records = list(store.read("test"))
        records.sort(key=lambda r: int(r.sequence_number))
        return [r.data for r in records]

    def stored_checkpoint_paths(self) -> set[str]:
        """The paths the embedded store holds a checkpoint of, for this flow."""
        from agent.store.store import StreamStore

        with StreamStore.open(self.agent.local_store_directory) as store:
            return {c.path for c in store.load_checkpoints(self.flow_config.flow_id)}

    def open_paths(self) -> set[str]:
        flow = self.flow
        if flow is None or flow.files is None:
            return set()
        return {tracked.path for tracked in flow.files.readable()}

    def settled(self) -> bool:
        """Every open file read exactly to its current end, nothing read still unacknowledged."""
        flow = self.flow
        if flow is None or flow.files is None:
            return True
        if flow.metrics.in_flight_records:
            return False
        for tracked in flow.files.readable():
            try:
                size = os.fstat(tracked.fd).st_size
            except OSError:
                continue
            if tracked.offset != size:  # more to read, or truncated and not yet noticed
                return False
        return True

    def run_for(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout

        async def poll() -> bool:
            while time.monotonic() < deadline:
                if predicate():
                    return True
                await asyncio.sleep(0.01)
            return predicate()

        return self.loop.run_until_complete(poll())

    def close(self) -> None:
        if self.task is not None:
            self.stop()
        self.loop.close()
