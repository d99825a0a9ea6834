"""The agent's lifecycle: start every flow, report progress, stop on signals within a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable

from agent.checkpoints import CheckpointDB
from agent.config import AgentConfig
from agent.flow import Flow
from agent.metrics import AgentMetrics
from agent.sinks import Sink, open_sink

log = logging.getLogger(__name__)

Notify = Callable[[str], None]


class Agent:
    """Every flow of one configuration, run together under one TaskGroup."""

    def __init__(self, config: AgentConfig, *, notify: Notify | None = None) -> None:
        self.config = config
        self.metrics = AgentMetrics()
        self.notify = notify or (lambda _msg: None)
        self.stop = asyncio.Event()
        self.flows: list[Flow] = []
        self.sinks: list[Sink] = []
        self.checkpoint_db: CheckpointDB | None = None

    def _build(self) -> None:
        cfg = self.config
        if any(f.local_stream is None for f in cfg.flows):
            self.checkpoint_db = CheckpointDB(cfg.checkpoint_file)
            expired = self.checkpoint_db.expire(cfg.checkpoint_time_to_live_days)
            if expired:
                log.info("Deleted %d old checkpoints.", expired)
        for flow_cfg in cfg.flows:
            sink = open_sink(cfg, flow_cfg)
            self.sinks.append(sink)
            metrics = self.metrics.flow(flow_cfg.flow_id, flow_cfg.destination)
            self.flows.append(Flow(cfg, flow_cfg, sink, metrics, self.checkpoint_db))

    async def run(self, *, once: bool = False) -> int:
        self._build()
        try:
            async with asyncio.TaskGroup() as tg:
                runs = [
                    tg.create_task(f.run(self.stop, once=once), name=f.config.flow_id)
                    for f in self.flows
                ]
                progress = tg.create_task(self._progress(), name="progress")
                self.notify("READY=1")
                if once:
                    await asyncio.gather(*runs)
                else:
                    await self.stop.wait()
                    self.notify("STOPPING=1")
                    await self._drain(runs)
                progress.cancel()
        finally:
            for sink in self.sinks:
                with contextlib.suppress(Exception):
                    await sink.aclose()
            if self.checkpoint_db is not None:
                self.checkpoint_db.close()
            log.info(self.progress_line())
        return 0

    async def _drain(self, runs: list[asyncio.Task[None]]) -> None:
        timeout = self.config.shutdown_timeout_millis / 1000
        _done, pending = await asyncio.wait(runs, timeout=timeout)
        if pending:
            log.warning(
                "shutdown: %d flow(s) did not finish within %.1fs; unacknowledged records stay in the files",
                len(pending),
                timeout,
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _progress(self) -> None:
        period = self.config.log_status_reporting_period_seconds
        while True:
            await asyncio.sleep(period)
            log.info(self.progress_line())
            for flow in self.flows:
                m = flow.metrics
                log.info(
                    "FileTailer[%s]: Tailer Progress: Tailer has parsed %d records (%d bytes), transformed %d records, skipped %d records, and has successfully sent %d records to destination.",
                    m.flow_id,
                    m.records_parsed,
                    m.bytes_parsed,
                    m.records_processed,
                    m.records_skipped,
                    m.records_sent,
                )

    def progress_line(self) -> str:
        flows = self.metrics.flows.values()
        parsed = sum(m.records_parsed for m in flows)
        nbytes = sum(m.bytes_parsed for m in flows)
        sent = sum(m.records_sent for m in flows)
        return (
            f"Agent: Progress: {parsed} records parsed ({nbytes} bytes), and {sent} records sent "
            f"successfully to destinations. Uptime: {self.metrics.uptime_millis}ms"
        )


def install_signal_handlers(agent: Agent, loop: asyncio.AbstractEventLoop) -> None:
    """SIGTERM/SIGINT: stop reading, drain, commit. A second SIGINT exits at once."""
    interrupts = 0

    def on_stop(signame: str) -> None:
        nonlocal interrupts
        if signame == "SIGINT":
            interrupts += 1
            if interrupts >= 2:
                log.warning("second SIGINT: exiting now (acknowledged data is already committed)")
                os._exit(130)
        if not agent.stop.is_set():
            log.info(
                "%s: stopping (draining for up to %d ms)",
                signame,
                agent.config.shutdown_timeout_millis,
            )
            agent.stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig.name)


def run(config: AgentConfig, *, once: bool = False, notify: Notify | None = None) -> int:
    async def main() -> int:
        agent = Agent(config, notify=notify)
        install_signal_handlers(agent, asyncio.get_running_loop())
        return await agent.run(once=once)

    return asyncio.run(main())
