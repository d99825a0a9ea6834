"""Runs a flow's processors (dataProcessingOptions) on what the reader framed: one results path.

Records are registered with their file when they are read, before they are processed, so they
hold their file's checkpoint down exactly as records in flight do. Their results — computed here,
or by the processor worker on a second core (agent/processors/worker.py) — come back through one
path, ``_apply``: data in place, skipped records acknowledged at once (and counted), the rest
queued for the sender in the order they were read. A worker that dies or wedges is replaced and
the chunks it held are processed here: nothing is lost or duplicated.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from dataclasses import dataclass
from typing import cast

from agent.config import AgentConfig, FlowConfig
from agent.observability.metrics import FlowMetrics
from agent.pipeline.budget import Budget
from agent.pipeline.events import wait_any
from agent.pipeline.sender import Sender
from agent.processors import build_chain
from agent.processors.worker import ChainWorker, Processed, WorkerFailed
from agent.records import Span
from agent.tailing.framing import Framed
from agent.tailing.tailer import FileAcks

log = logging.getLogger(__name__)

# Chunks (reads of up to READ_CHUNK) at the processor worker at once: enough to keep it busy
# while the reader frames the next one, few enough to keep the memory and latency small.
WORKER_CHUNKS = 4
# A worker that dies this many times leaves processing to the agent's own process for good.
WORKER_RESTARTS = 3
# A chunk takes the worker milliseconds; one unanswered this long means the worker is wedged.
WORKER_TIMEOUT = 30.0


@dataclass(slots=True)
class _Chunk:
    """The span of one read, registered with its file, waiting for its results."""

    span: Span
    raw_size: int
    raw_count: int
    worker: ChainWorker | None
    future: asyncio.Future[Processed] | None


class Processing:
    """Between the reader and the sender: ``submit`` a read's records, ``run`` collects results."""

    def __init__(
        self,
        agent: AgentConfig,
        config: FlowConfig,
        metrics: FlowMetrics,
        budget: Budget,
        sender: Sender,
        *,
        processor_worker: bool | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.budget = budget
        self.sender = sender
        self.max_record_bytes = sender.sink.max_record_bytes
        self.chain = build_chain(config.data_processing_options, path="dataProcessingOptions")
        # Processors in a worker process run beside the reader on a second core (worker.py).
        if processor_worker is None:
            processor_worker = agent.processing_worker_process and _cpus() >= 2
        self.use_worker = bool(self.chain) and processor_worker
        self.worker: ChainWorker | None = None
        self.worker_timeout = WORKER_TIMEOUT
        self._worker_failures = 0
        self.chunks: deque[_Chunk] = deque()  # at the worker, in the order they were read
        self._collect_wake = asyncio.Event()
        self._room = asyncio.Event()
        self._submitting_done = False

    async def start(self) -> None:
        if self.use_worker:
            await self._start_worker()

    async def aclose(self) -> None:
        if self.worker is not None:
            await self.worker.aclose()

    def submit(self, acks: FileAcks, framed: Framed) -> None:
        """Register the read's span with its file now (checkpoints stay behind it), process it."""
        span = Span(framed.datas, framed.offsets, acks)
        acks.register(span)
        size, count = span.size, len(span)
        self.budget.charge(size, count)
        if not self.chain:  # nothing to process: straight to the sender
            self.sender.put(span)
            return
        if not self.use_worker:
            chunk = _Chunk(span, size, count, None, None)
            self._apply(chunk, self._process_here(chunk))
            return
        worker = self.worker
        future = worker.submit(span.datas) if worker is not None else None
        self.chunks.append(_Chunk(span, size, count, worker, future))
        self._collect_wake.set()

    def busy(self) -> bool:
        return len(self.chunks) >= WORKER_CHUNKS

    async def wait_for_room(self, stop: asyncio.Event) -> None:
        """Until the worker holds fewer than WORKER_CHUNKS chunks (or the flow stops)."""
        while len(self.chunks) >= WORKER_CHUNKS and not stop.is_set():
            self._room.clear()
            await wait_any(self._room, stop, 1.0)

    def done_submitting(self) -> None:
        """The reader is done: ``run`` returns once what the worker holds is applied."""
        self._submitting_done = True
        self._collect_wake.set()

    async def run(self) -> None:
        """Takes the worker's results in the order the chunks were read and queues the records."""
        while True:
            while self.chunks:
                chunk = self.chunks[0]
                processed = await self._processed(chunk)
                self.chunks.popleft()
                self._apply(chunk, processed)
                self._room.set()
            if self._submitting_done:
                return
            self._collect_wake.clear()
            await self._collect_wake.wait()

    async def _start_worker(self) -> None:
        name = "dataProcessingOptions"
        try:
            self.worker = await ChainWorker.start(self.config.data_processing_options, name)
        except OSError as exc:
            log.warning(
                "%s: cannot start a processor worker (%s); processing in this process",
                self.config.flow_id,
                exc,
            )
            self.worker = None

    async def _processed(self, chunk: _Chunk) -> Processed:
        if chunk.future is not None:
            try:
                # A worker that stops answering (stopped, wedged) must not stall the flow for
                # ever: past the timeout it is replaced and its chunks are redone here.
                async with asyncio.timeout(self.worker_timeout):
                    processed = await asyncio.shield(chunk.future)
            except (WorkerFailed, TimeoutError) as exc:
                if chunk.worker is self.worker:
                    if isinstance(exc, TimeoutError):
                        exc = WorkerFailed(
                            f"the processor worker did not answer within {self.worker_timeout:g} s"
                        )
                    await self._worker_failed(exc)
            else:
                for level, name, message in processed.logs:
                    logging.getLogger(name).log(level, "%s", message)
                return processed
        # no worker, or it died holding this chunk: the span still holds its input
        return self._process_here(chunk)

    def _process_here(self, chunk: _Chunk) -> Processed:
        chain = self.chain
        before = (chain.skipped, chain.errors, chain.unmatched)
        results = chain.process_many(chunk.span.datas)
        return Processed(
            results,
            chain.skipped - before[0],
            chain.errors - before[1],
            chain.unmatched - before[2],
        )

    async def _worker_failed(self, exc: WorkerFailed) -> None:
        self._worker_failures += 1
        self.metrics.processor_worker_failures += 1
        worker, self.worker = self.worker, None
        restart = self._worker_failures < WORKER_RESTARTS
        log.error(
            "%s: %s; the %d chunk(s) it held are processed in this process, nothing is lost; %s",
            self.config.flow_id,
            exc,
            sum(1 for c in self.chunks if c.worker is worker),
            "starting a new worker"
            if restart
            else f"it failed {self._worker_failures} times: processing stays in this process",
        )
        if worker is not None:
            await worker.aclose()
        if restart:
            await self._start_worker()

    def _apply(self, chunk: _Chunk, processed: Processed) -> None:
        """A processed chunk: data in place, skipped records dropped from the span, queued."""
        span, results = chunk.span, processed.results
        if len(results) != chunk.raw_count:
            raise WorkerFailed(f"{len(results)} results for {chunk.raw_count} records")
        limit = self.max_record_bytes
        m = self.metrics
        if None not in results and max(map(len, cast(list[bytes], results)), default=0) <= limit:
            # the common case: nothing dropped, nothing to cut
            span.datas = cast(list[bytes], results)
        else:
            terminator = self.config.truncated_record_terminator.encode()
            datas: list[bytes] = []
            # A skipped record's bytes join the record before it (or, first, the one after):
            # the span still covers the whole read, so acknowledging it moves past them.
            offsets = [span.offsets[0]]
            for result, end in zip(results, span.offsets[1:], strict=True):
                if result is None:
                    if datas:
                        offsets[-1] = end
                    continue
                if len(result) > limit:
                    result = result[: limit - len(terminator)] + terminator
                    m.records_truncated += 1
                datas.append(result)
                offsets.append(end)
            if not datas:  # nothing left: an empty span at the read's end acknowledges it
                offsets = [span.offsets[-1]]
            span.datas, span.offsets = datas, offsets
        span.size = sum(map(len, span.datas))
        m.records_skipped += processed.skipped
        m.processing_errors += processed.errors
        m.records_processed += len(span)
        # the raw records' charge becomes the processed ones'
        self.budget.release(chunk.raw_size, chunk.raw_count)
        if not span.datas:  # every record skipped: acknowledged at once, as FileAcks.skip_to does
            span.acked = True
            span.source.advance()
            return
        self.budget.charge(span.size, len(span))
        self.sender.put(span)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
