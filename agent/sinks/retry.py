"""Backoff and the resend loop shared by the AWS sinks: only failed entries, in order, forever.

``Backoff`` is pure (randomness injected): exponential from ``retryInitialBackoffMillis`` to
``retryMaxBackoffMillis`` with jitter, and no attempt limit. ``send_until_delivered`` drives a sink:
one API call per attempt, resending exactly what the previous attempt did not deliver, until
everything is delivered. Errors that waiting cannot fix (access denied, stream missing) are retried
at the maximum delay with an error log line at most once a minute and the flow marked ``failing``:
data waits on disk, it is never dropped.

tenacity was the first idea, but its model is "call f until it stops failing": here every attempt
changes what is sent next (the failed subset), the loop never gives up, and the non-retryable case
needs its own cadence and logging. A small class fits that better than bending tenacity's hooks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from agent.errors import AgentError
from agent.observability.metrics import FlowMetrics
from agent.records import Checkpoint, Record
from agent.sinks import SendResult, Sink

log = logging.getLogger(__name__)

LOUD_LOG_INTERVAL = 60.0


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


async def send_until_delivered(
    sink: Sink,
    records: Sequence[Record],
    checkpoints: Sequence[Checkpoint],
    backoff: Backoff,
    *,
    metrics: FlowMetrics | None = None,
    on_result: Callable[[SendResult], None] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    what: str = "",
) -> int:
    """Send ``records`` until the sink has delivered every one; returns the number of attempts.

    Each attempt is one ``sink.send`` of the records still pending, in their original order.
    ``on_result`` sees every attempt's result as soon as it is known, so delivered records can be
    acknowledged before the retries of their neighbours finish. Cancellation (shutdown) leaves the
    undelivered records unacknowledged: their checkpoint does not move and they are read again.
    """
    pending = list(records)
    attempts = 0
    last_loud = float("-inf")
    while pending:
        attempts += 1
        result = await sink.send(pending, checkpoints)
        if result.error is not None and not result.delivered and not result.retry:
            # A sink must hand back what it did not deliver; defend against one that does not.
            result.retry = pending
        if on_result is not None:
            on_result(result)
        pending = list(result.retry)
        if not pending:
            backoff.reset()
            if metrics is not None and metrics.status == "failing":
                metrics.status = "running"
                metrics.last_error = None
            break
        if metrics is not None:
            metrics.retries += 1
        error = result.error
        if error is not None and not (isinstance(error, AgentError) and error.retryable):
            delay = backoff.max_delay()
            if metrics is not None:
                metrics.status = "failing"
                metrics.last_error = str(error)
            now = clock()
            if now - last_loud >= LOUD_LOG_INTERVAL:
                last_loud = now
                log.error(
                    "%s: %s; %d records wait on disk and are retried every ~%.0f s until this is fixed",
                    what or "send",
                    error,
                    len(pending),
                    backoff.maximum,
                )
        else:
            delay = backoff.next_delay()
            if error is not None and metrics is not None:
                metrics.last_error = str(error)
            now = clock()
            if error is not None and now - last_loud >= LOUD_LOG_INTERVAL:
                last_loud = now
                log.warning(
                    "%s: %s; retrying %d records with backoff", what or "send", error, len(pending)
                )
            else:
                log.debug("%s: retrying %d records in %.2f s", what or "send", len(pending), delay)
        await sleep(delay)
    return attempts
