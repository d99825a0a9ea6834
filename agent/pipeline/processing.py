"""Runs a flow's processors (dataProcessingOptions) on what the reader framed: one results path.

A read's span is registered with its file when it is read, before it is processed, so it holds
its file's checkpoint down exactly as records in flight do. Its results — computed here, or by a
processor worker on another core (agent/processors/worker.py; one per core beyond the agent's
own, taking the reads in turn) — come back through one path, ``_apply``, in the order the reads
were made whichever worker answers: data in place, skipped records dropped from the span (their
bytes stay in its range, so they are acknowledged with it) and counted, the span queued for the
sender. A worker that dies or wedges is replaced and the chunks it held are processed here:
nothing is lost or duplicated.
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
# A flow's worker processes: one per core beyond the agent's own (which reads, stores and sends:
# about a core's worth at full speed), at most this many. Two cores: one worker.
MAX_WORKERS = 4
# Worker deaths after which processing stays in the agent's own process for good.
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
        processor_worker: bool | int | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.budget = budget
        self.sender = sender
        self.max_record_bytes = sender.sink.max_record_bytes
        self.chain = build_chain(config.data_processing_options, path="dataProcessingOptions")
        # Processors in worker processes run beside the reader on the other cores (worker.py).
        # ``processor_worker``: None, by processing.workerProcess and the cores; else a bool
        # (one worker or none) or how many.
        if processor_worker is None:
            wanted = worker_count(agent.processing_worker_process, _cpus())
        elif isinstance(processor_worker, bool):
            wanted = int(processor_worker)
        else:
            wanted = processor_worker
        self.wanted_workers = wanted if self.chain else 0
        self.use_worker = self.wanted_workers > 0
        self.workers: list[ChainWorker] = []
        self._turn = 0
        self.worker_timeout = WORKER_TIMEOUT
        self._worker_failures = 0
        self.chunks: deque[_Chunk] = deque()  # at the worker, in the order they were read
        self._collect_wake = asyncio.Event()
        self._room = asyncio.Event()
        self._submitting_done = False

    @property
    def worker(self) -> ChainWorker | None:
        """The first worker (the only one on two cores), or None."""
        return self.workers[0] if self.workers else None

    async def start(self) -> None:
        for _ in range(self.wanted_workers):
            if not await self._start_worker():
                break

    async def aclose(self) -> None:
        workers, self.workers = self.workers, []
        for worker in workers:
            await worker.aclose()

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
        # the workers take the reads in turn; results are applied in read order whoever answers
        worker = None
        if self.workers:
            self._turn = (self._turn + 1) % len(self.workers)
            worker = self.workers[self._turn]
        future = worker.submit(span.datas) if worker is not None else None
        self.chunks.append(_Chunk(span, size, count, worker, future))
        self._collect_wake.set()

    def busy(self) -> bool:
        return len(self.chunks) >= WORKER_CHUNKS * max(1, len(self.workers))

    async def wait_for_room(self, stop: asyncio.Event) -> None:
        """Until the workers hold fewer than WORKER_CHUNKS chunks each (or the flow stops)."""
        while self.busy() and not stop.is_set():
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

    async def _start_worker(self) -> bool:
        """One more worker; False (logged) if it cannot start: the others, or this process, go on."""
        name = "dataProcessingOptions"
        try:
            self.workers.append(await ChainWorker.start(self.config.data_processing_options, name))
        except OSError as exc:
            log.warning(
                "%s: cannot start a processor worker (%s); %s",
                self.config.flow_id,
                exc,
                f"{len(self.workers)} worker(s) process"
                if self.workers
                else "processing in this process",
            )
            return False
        return True

    async def _processed(self, chunk: _Chunk) -> Processed:
        if chunk.future is not None:
            try:
                # A worker that stops answering (stopped, wedged) must not stall the flow for
                # ever: past the timeout it is replaced and its chunks are redone here.
                async with asyncio.timeout(self.worker_timeout):
                    processed = await asyncio.shield(chunk.future)
            except (WorkerFailed, TimeoutError) as exc:
                if chunk.worker is not None and chunk.worker in self.workers:
                    if isinstance(exc, TimeoutError):
                        exc = WorkerFailed(
                            f"the processor worker did not answer within {self.worker_timeout:g} s"
                        )
                    await self._worker_failed(chunk.worker, exc)
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

    async def _worker_failed(self, worker: ChainWorker, exc: WorkerFailed) -> None:
        self._worker_failures += 1
        self.metrics.processor_worker_failures += 1
        self.workers.remove(worker)
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
        if not span.datas:  # every record skipped: the read needs no delivery, acknowledged at once
            span.acked = True
            span.source.advance()
            return
        self.budget.charge(span.size, len(span))
        self.sender.put(span)


def worker_count(enabled: bool, cpus: int) -> int:
    """Worker processes for a flow with processors (processing.workerProcess ``enabled``): one per
    core beyond the agent's own, at most MAX_WORKERS; none on one core."""
    if not enabled or cpus < 2:
        return 0
    return min(MAX_WORKERS, cpus - 1)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
