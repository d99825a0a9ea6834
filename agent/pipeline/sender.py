"""Sends a flow's batches in order, one retry loop for every sink, and acknowledges what arrived.

The sender takes batches from the ``Batcher`` (the queue processing fills), sends one at a time,
and retries what a send did not deliver — only those records, in order, at the head of the queue,
forever — with ``Backoff`` between attempts. Delivered records are acknowledged to their file at
once (a plain sink) or committed with their checkpoints (a transactional one), and released from
the in-flight budget.

Invariant (per-file order): every queue from the reader to the sink is FIFO — processing applies
results in the order the chunks were read, the Batcher is a FIFO — and here one batch goes at a
time, taken from the head, and a retry sends ``result.retry`` before anything queued later, so no
record overtakes one read before it in its file. Tests: tests/tailing/test_delivery.py
(test_only_failed_entries_are_resent_in_order), tests/pipeline/test_retry.py
(test_resends_only_failed_entries_in_order), tests/processors/test_processors_worker.py
(test_worker_killed_mid_run_loses_and_duplicates_nothing), tests/sinks/test_kinesis_faults.py.

Invariant (exactly-once into the store): a transactional sink commits a batch and the
checkpoints it makes true in one transaction (``_send_transactional``), and the flow starts from
the checkpoints stored with the records. Tests: tests/test_e2e_local.py
(test_sigkill_many_times_loses_and_duplicates_nothing), tests/tailing/test_model.py
(test_crashes_into_the_store_match_the_model).

The one retryable rule (``retryable``): an error is retried with exponential backoff unless it
says waiting cannot help (``AgentError.retryable`` False: access denied, stream not found);
those are retried too, at the maximum delay, loudly. A sink translates foreign errors at its
boundary (agent/sinks/aws.py ``translate_error``: an unknown error is retryable), so the rule
sees only our error tree.

tenacity was the first idea, and was declared but never imported; it is no longer a dependency.
Its model is "call f until it stops failing": here every attempt changes what is sent next (the
failed subset), the loop never gives up, the non-retryable case needs its own cadence and
logging, and tests inject the jitter (``rand``) to get exact delays. Its wait strategies do not
offer "equal jitter" with an injectable random source, so ``Backoff`` stays a small class.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from agent.config import FlowConfig
from agent.errors import AgentError
from agent.observability.metrics import FlowMetrics
from agent.pipeline.batching import Batcher
from agent.pipeline.budget import Budget
from agent.pipeline.checkpointer import Checkpointer
from agent.pipeline.events import wait
from agent.records import Record, Span
from agent.sinks import RecordSink, Sink, TransactionalSink

log = logging.getLogger(__name__)

# An error waiting cannot fix is logged at most this often (seconds), not once per attempt.
LOUD_LOG_INTERVAL = 60.0
# Retryable failures in a row after which the flow is shown ``failing`` and logged loudly.
FAILING_AFTER = 5
# The longest the sender sleeps unwoken: records queued into a batch that is not full do not
# wake it, so the first of them is looked at (and its batch's age deadline set) within this long.
IDLE_WAIT = 1.0


class Backoff:
    """Exponential delays with "equal jitter": each delay is uniform in [d/2, d], d doubling to the cap.

    ``next_delay()`` returns seconds and counts a failure; ``reset()`` after a success. Half the
    delay is guaranteed so a fleet that failed together does not come back together.
    """

    __slots__ = ("_rand", "failures", "initial", "maximum")

    def __init__(
        self,
        initial_millis: int = 100,
        max_millis: int = 10_000,
        *,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if initial_millis <= 0 or max_millis < initial_millis:
            raise ValueError("need 0 < initial_millis <= max_millis")
        self.initial = initial_millis / 1000
        self.maximum = max_millis / 1000
        self.failures = 0
        self._rand = rand

    def next_delay(self) -> float:
        # Cap the exponent so the float never overflows however long the outage lasts.
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self.failures, 60))
        self.failures += 1
        return ceiling / 2 + self._rand() * ceiling / 2

    def max_delay(self) -> float:
        """The delay for errors that waiting will not fix: the cap, still jittered."""
        self.failures += 1
        return self.maximum / 2 + self._rand() * self.maximum / 2

    def reset(self) -> None:
        self.failures = 0


def retryable(error: AgentError | None) -> bool:
    """The one retryable rule: a failure without an error (entries refused) or one that says
    waiting can help is retried with backoff; the others at the maximum delay."""
    return error is None or error.retryable


class Sender:
    """Owns the batch queue; ``run`` sends until the reader is done and the queue is empty."""

    def __init__(
        self,
        config: FlowConfig,
        sink: Sink,
        metrics: FlowMetrics,
        budget: Budget,
        checkpointer: Checkpointer,
        *,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.sink = sink
        self.metrics = metrics
        self.budget = budget
        self.checkpointer = checkpointer
        self.clock = clock
        self.sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
        # A sink that packs many records into one (KPL aggregation, Firehose packing) takes
        # batches by its own limits: maxBufferSize* then bound the packed requests, not the input.
        packs = sink.packs_records
        self.batcher = Batcher(
            max_records=sink.max_batch_records
            if packs
            else min(config.max_buffer_size_records, sink.max_batch_records),
            max_bytes=sink.max_batch_bytes
            if packs
            else min(config.max_buffer_size_bytes, sink.max_batch_bytes),
            max_age=config.max_buffer_age_millis / 1000,
            clock=clock,
        )
        self.backoff = Backoff(config.retry_initial_backoff_millis, config.retry_max_backoff_millis)
        self.wake = asyncio.Event()
        self.reading_done = False
        self._last_loud = float("-inf")

    def put(self, span: Span) -> None:
        """Queue a processed span, in file order."""
        m = self.metrics
        m.in_flight_bytes += span.size
        m.in_flight_records += len(span)
        self.batcher.add(span)
        if self.batcher.full():
            self.wake.set()

    def done_reading(self) -> None:
        """Nothing more will be queued: send what is left, then ``run`` returns."""
        self.reading_done = True
        self.wake.set()

    async def run(self) -> None:
        sink = self.sink
        while True:
            # Cleared before the conditions are read, never after an await: a wake-up set while
            # we deliver (the reader finishing, a batch filling) then ends the wait below at once
            # instead of being lost for an IDLE_WAIT.
            self.wake.clear()
            now = self.clock()
            batcher = self.batcher
            if batcher and (batcher.ready(now) or self.reading_done or self.budget.full()):
                # A transactional sink commits every ready batch at once and a sink that
                # overlaps its calls (Kinesis lanes) takes every ready batch: up to the sink's
                # own send limits (None: one batch); the calls inside stay within the batch's.
                await self.deliver(batcher.take(sink.max_send_records, sink.max_send_bytes))
                continue
            if self.reading_done and not batcher:
                return
            deadline = batcher.deadline()
            timeout = IDLE_WAIT if deadline is None else max(0.0, deadline - now)
            await wait(self.wake, min(timeout, IDLE_WAIT))

    async def deliver(self, batch: list[Span]) -> int:
        """Send ``batch`` until every record is delivered; returns the number of attempts.

        A transactional sink takes the spans whole; the others take records, cut from the spans
        here, and retry them one by one. Cancellation (shutdown) leaves the undelivered records
        unacknowledged: their checkpoint does not move and they are read again.
        """
        if self.sink.transactional:
            return await self._deliver(batch, self._send_transactional, _span_bytes)
        return await self.deliver_records([r for span in batch for r in span.records()])

    async def deliver_records(self, records: list[Record]) -> int:
        """``deliver`` to a record sink: each record acknowledged (to its span) once delivered."""
        return await self._deliver(records, self._send_plain, _record_bytes)

    async def _deliver(
        self,
        batch: list[_Item],
        send: Callable[[list[_Item]], Awaitable[_Attempt[_Item]]],
        measure: Callable[[list[_Item]], tuple[int, int]],
    ) -> int:
        cfg = self.config
        backoff = self.backoff
        pending = batch
        m = self.metrics
        attempts = 0
        while pending:
            attempts += 1
            result = await send(pending)
            delivered = result.delivered
            if delivered:
                sent_bytes, sent_records = measure(delivered)
                m.in_flight_bytes -= sent_bytes
                m.in_flight_records -= sent_records
                self.budget.release(sent_bytes, sent_records)
            if not result.retry:
                backoff.reset()
                if m.status == "failing":
                    log.info("%s: delivering again", cfg.flow_id)
                    m.last_error = None
                m.status = "running"
                m.consecutive_errors = 0
                return attempts
            pending = result.retry
            m.retries += 1
            m.consecutive_errors += 1
            await self._back_off(result)
        return attempts

    async def _back_off(self, result: _Attempt[Record] | _Attempt[Span]) -> None:
        error = result.error
        fatal = not retryable(error)
        backoff = self.backoff
        delay = backoff.max_delay() if fatal else backoff.next_delay()
        m = self.metrics
        m.last_error = str(error) if error is not None else f"{len(result.retry)} records failed"
        now = self.clock()
        if fatal or backoff.failures >= FAILING_AFTER:
            m.status = "failing"
            if now - self._last_loud >= LOUD_LOG_INTERVAL:
                self._last_loud = now
                log.error(
                    "%s: cannot deliver to %s: %s; retrying every %.1fs, data stays on disk",
                    self.config.flow_id,
                    self.config.destination,
                    m.last_error,
                    delay,
                )
        await self.sleep(delay)

    async def _send_transactional(self, batch: list[Span]) -> _Attempt[Span]:
        checkpointer = self.checkpointer
        sink = cast(TransactionalSink, self.sink)
        async with checkpointer.lock:
            # The batch is marked acknowledged only once it is stored: an acknowledgement that
            # arrives during the commit (a read whose records were all skipped) must not move a
            # checkpoint past spans whose commit may still fail.
            touched, rows = checkpointer.rows_for(batch)
            error = await sink.commit(batch, rows)
            if error is not None:
                return _Attempt([], list(batch), error)
            for span in batch:
                span.acked = True
            checkpointer.committed(touched, rows)
        return _Attempt(batch, [], None)

    async def _send_plain(self, batch: list[Record]) -> _Attempt[Record]:
        result = await cast(RecordSink, self.sink).send(batch, ())
        if result.error is not None and not result.delivered and not result.retry:
            # A sink must hand back what it did not deliver; never drop a batch it did not.
            result.retry = list(batch)
        for record in result.delivered:
            source = record.source
            if source is not None:
                source.ack(record)
        return _Attempt(result.delivered, result.retry, result.error)


_Item = TypeVar("_Item", Record, Span)


@dataclass(slots=True)
class _Attempt(Generic[_Item]):
    """What one send did: records or spans delivered, and those to send again (in order)."""

    delivered: list[_Item]
    retry: list[_Item]
    error: AgentError | None


def _span_bytes(spans: list[Span]) -> tuple[int, int]:
    return sum(s.size for s in spans), sum(map(len, spans))


def _record_bytes(records: list[Record]) -> tuple[int, int]:
    return sum(map(len, [r.data for r in records])), len(records)
