"""Everything that watches the running agent, started and stopped as one: the daemon's single hook.

Rates (sampled each second), progress lines, the status socket, Prometheus and CloudWatch. None of
them may stop shipping: a socket that cannot bind or an emitter that fails is logged and left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from agent.config import AgentConfig
from agent.errors import AgentError
from agent.observability import progress
from agent.observability.cloudwatch import CloudWatchEmitter, should_emit
from agent.observability.listeners import start_on_reload
from agent.observability.metrics import AgentMetrics, RateMeter
from agent.observability.status import StatusServer, socket_path

if TYPE_CHECKING:
    # prometheus_client (~35 ms of start-up) loads only when metrics.prometheusListen is set
    from agent.observability.prometheus import PrometheusServer

log = logging.getLogger(__name__)

RATE_SAMPLE_SECONDS = 1.0
FORGET_FINISHED_AFTER = 300.0  # seconds a drained, rotated-away file stays in status and /metrics
FORGET_EVERY = 60.0  # seconds between those passes over every file's metrics


class Observers:
    """Start with ``start(tg)`` inside the agent's TaskGroup; ``aclose()`` after the flows are done."""

    def __init__(
        self,
        config: AgentConfig,
        metrics: AgentMetrics,
        *,
        current_config: Callable[[], AgentConfig] | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.rates = RateMeter(metrics)
        self.status: StatusServer | None = None
        self.prometheus: PrometheusServer | None = None
        self.cloudwatch: CloudWatchEmitter | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self._current_config = current_config or (lambda: config)

    async def start(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """Bind the servers and start the periodic tasks; returns the tasks (cancel them to stop)."""
        cfg = self.config
        await self._start_status()
        await self._start_prometheus()
        if should_emit(cfg):
            self.cloudwatch = CloudWatchEmitter(cfg, self.metrics)
            self.tasks.append(tg.create_task(self.cloudwatch.run(), name="cloudwatch"))
        elif cfg.cloudwatch_emit_metrics:
            log.info(
                "CloudWatch metrics off: every flow is local and no cloudwatch.endpoint is set"
            )
        self.tasks.append(tg.create_task(self._sample_rates(), name="rates"))
        self.tasks.append(
            tg.create_task(
                progress.run(self.metrics, cfg.log_status_reporting_period_seconds),
                name="progress",
            )
        )
        return self.tasks

    async def reload(self, tg: asyncio.TaskGroup, config: AgentConfig) -> None:
        """SIGHUP: a changed status socket, Prometheus listener, CloudWatch or progress setting
        takes effect by stopping everything here and starting it again on ``config``; the
        counters and rates carry on (they live in the metrics)."""
        if _settings(config) == _settings(self.config):
            self.config = config
            # unchanged, but a listener whose address was taken at start is tried again
            if start_on_reload(self.status, socket_path(config), changed=False):
                await self._start_status()
            if start_on_reload(self.prometheus, config.metrics_prometheus_listen, changed=False):
                await self._start_prometheus()
            return
        await self._stop()
        old, self.config = self.config, config
        try:
            await self.start(tg)
        except BaseException:
            self.config = old  # so that the next SIGHUP sees a change and restarts them all
            raise
        log.info("observers restarted with the new configuration")

    async def _start_status(self) -> None:
        """Bind the status socket; one that cannot be bound is logged and left off."""
        status = StatusServer(socket_path(self.config), self.metrics, self.rates, self.config)
        try:
            await status.start()
            self.status = status
        except (AgentError, OSError) as exc:
            log.error("status socket off: %s", exc)

    async def _start_prometheus(self) -> None:
        """Bind the Prometheus listener if one is configured; a failure is logged, left off."""
        listen = self.config.metrics_prometheus_listen
        if not listen:
            return
        from agent.observability.prometheus import PrometheusServer

        prom = PrometheusServer(listen, self.metrics)
        try:
            await prom.start()
            self.prometheus = prom
        except (AgentError, OSError) as exc:
            log.error("Prometheus endpoint off: cannot listen on %s: %s", listen, exc)

    async def _sample_rates(self) -> None:
        next_forget = 0.0
        while True:
            self.rates.sample()
            # a pass over every file's metrics (100,000 of them, maybe): not every second
            if time.monotonic() >= next_forget:
                next_forget = time.monotonic() + FORGET_EVERY
                self.metrics.forget_finished_files(time.time(), FORGET_FINISHED_AFTER)
            if self.status is not None:
                self.status.config = self._current_config()
            await asyncio.sleep(RATE_SAMPLE_SECONDS)

    async def aclose(self) -> None:
        """Stop the tasks, send the last CloudWatch datums, remove the socket; the last progress line."""
        await self._stop()
        log.info(progress.progress_line(self.metrics))

    async def _stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()
        if self.cloudwatch is not None:
            await self.cloudwatch.final_flush()
        self.cloudwatch = None
        if self.prometheus is not None:
            await self.prometheus.aclose()
            self.prometheus = None
        if self.status is not None:
            await self.status.aclose()
            self.status = None


def _settings(config: AgentConfig) -> AgentConfig:
    """What the observers are built from: every global key (the flows only through whether
    CloudWatch has an AWS destination to speak for)."""
    return replace(config, flows=(), sources=(), cloudwatch_emit_metrics=should_emit(config))
