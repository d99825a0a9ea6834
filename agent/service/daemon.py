"""The agent's lifecycle: start every flow, report progress, stop on signals within a deadline.

The process-level set-up around it (signal handlers, the open-files limit) is in
:mod:`agent.service.signals`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from agent.checkpoints import CheckpointDB
from agent.config import AgentConfig, FlowConfig, load_config
from agent.errors import AgentError, ConfigError
from agent.observability.listeners import start_on_reload
from agent.observability.looplag import measure
from agent.observability.metrics import AgentMetrics, FlowMetrics
from agent.observability.observe import Observers
from agent.observability.progress import progress_line
from agent.pipeline.flow import Flow
from agent.records import FileId
from agent.service.instance import InstanceLock
from agent.service.signals import install_signal_handlers, raise_fd_limit
from agent.service.systemd import Notifier
from agent.sinks import Sink
from agent.sinks.factory import open_sink
from agent.sqlitedb import file_still_there

if TYPE_CHECKING:
    from agent.endpoint.server import KinesisEndpoint

log = logging.getLogger(__name__)

STATUS_PERIOD = 5.0
# checkpointTimeToLiveDays is applied at start and this often while running: a long-lived agent
# on rotating logs would otherwise keep a checkpoint row for every file it ever read.
CHECKPOINT_EXPIRY_PERIOD = 3600.0


@dataclass(slots=True)
class RunningFlow:
    """A flow, its sink, and the task and stop signal that run it."""

    flow: Flow
    sink: Sink
    stop: asyncio.Event
    task: asyncio.Task[None]


class Agent:
    """Every flow of one configuration under one TaskGroup; SIGHUP swaps flows without loss."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        notifier: Notifier | None = None,
        config_path: str | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = AgentMetrics()
        self.notifier = notifier or Notifier(environ={})
        self.stop = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.running: dict[str, RunningFlow] = {}
        self.checkpoint_db: CheckpointDB | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._once = False
        self.locks = InstanceLock()
        self.checkpoint_expiry_period = CHECKPOINT_EXPIRY_PERIOD
        self._observers: Observers | None = None
        self._endpoint: KinesisEndpoint | None = None

    @property
    def flows(self) -> list[Flow]:
        return [r.flow for r in self.running.values()]

    def _checkpoints_for(self, config: AgentConfig) -> CheckpointDB | None:
        if all(f.local_stream is not None for f in config.flows) or self.checkpoint_db is not None:
            return self.checkpoint_db
        self.checkpoint_db = CheckpointDB(config.checkpoint_file)
        expired = self.checkpoint_db.expire(config.checkpoint_time_to_live_days)
        if expired:
            log.info("Deleted %d old checkpoints.", expired)
        return self.checkpoint_db

    def _start_flow(self, config: AgentConfig, flow_cfg: FlowConfig) -> None:
        assert self._tg is not None
        metrics = self.metrics.flow(flow_cfg.flow_id, flow_cfg.destination)
        sink = open_sink(config, flow_cfg, metrics)
        # flows into the embedded store keep their checkpoints in it: they never need (nor
        # wait for, nor fail on) the checkpoint database of the AWS flows
        checkpoints = None if flow_cfg.local_stream is not None else self._checkpoints_for(config)
        flow = Flow(config, flow_cfg, sink, metrics, checkpoints)
        stop = asyncio.Event()
        task = self._tg.create_task(flow.run(stop, once=self._once), name=flow_cfg.flow_id)
        self.running[flow_cfg.flow_id] = RunningFlow(flow, sink, stop, task)

    async def _stop_flows(self, flows: list[RunningFlow]) -> None:
        """Stop reading, drain and commit within shutdownTimeoutMillis; then close the sinks."""
        for r in flows:
            r.stop.set()
        tasks = [r.task for r in flows]
        if tasks:
            timeout = self.config.shutdown_timeout_millis / 1000
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.warning(
                    "%d flow(s) did not drain within %.1fs; unacknowledged records stay in the files",
                    len(pending),
                    timeout,
                )
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        for r in flows:
            with contextlib.suppress(Exception):
                await r.sink.aclose()
            self.running.pop(r.flow.config.flow_id, None)

    async def run(self, *, once: bool = False) -> int:
        self._once = once
        # before anything else touches the state (or the status socket): a second agent on it
        # would ship every line again
        self.locks.acquire(self.config)
        # observability (status socket, Prometheus, CloudWatch, progress lines): agent/observability/observe.py
        observers = Observers(self.config, self.metrics, current_config=lambda: self.config)
        self._observers = observers
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                observed = await observers.start(tg)
                if not once:
                    self._endpoint = await self._start_endpoint(self.config)
                for flow_cfg in self.config.flows:
                    self._start_flow(self.config, flow_cfg)
                # before any flow has loaded its checkpoints (their tasks have not run yet)
                self._log_expired(self._expire_store_checkpoints(self._tailed_files()))
                helpers = [
                    *observed,
                    tg.create_task(measure(self.metrics.loop_lag), name="loop lag"),
                    tg.create_task(self._systemd_status(), name="systemd status"),
                    tg.create_task(self._expire_periodically(), name="checkpoint expiry"),
                ]
                interval = self.notifier.watchdog_interval()
                if interval is not None:
                    helpers.append(tg.create_task(self._watchdog(interval), name="watchdog"))
                await asyncio.sleep(0)  # let every flow load its checkpoints and start
                self.notifier.ready(status=self.status_line())
                if once:
                    await asyncio.gather(*(r.task for r in self.running.values()))
                else:
                    helpers.append(tg.create_task(self._reloader(), name="reload"))
                    await self.stop.wait()
                    self.notifier.stopping(status="draining")
                    await self._stop_flows(list(self.running.values()))
                for task in [*helpers, *observers.tasks]:  # (a reload may have restarted them)
                    task.cancel()
        finally:
            for r in list(self.running.values()):
                with contextlib.suppress(Exception):
                    await r.sink.aclose()
            if self.checkpoint_db is not None:
                self.checkpoint_db.close()
            await observers.aclose()  # last CloudWatch datums (also after --once), progress line
            if self._endpoint is not None:
                await self._endpoint.aclose()
                self._endpoint = None
            self.locks.release()
            lag = self.metrics.loop_lag
            log.info("event loop: worst lag %.0f ms", lag.worst * 1000)
            for m in self.metrics.flows.values():
                problems = problem_summary(m)
                if problems:
                    log.warning("%s: %s", m.flow_id, problems)
        return 0

    def _tailed_files(self) -> frozenset[tuple[str, FileId]]:
        return frozenset(
            (r.flow.config.flow_id, tracked.file_id)
            for r in self.running.values()
            if r.flow.files is not None
            for tracked in r.flow.files.files.values()
        )

    def _expire_store_checkpoints(self, tailed: frozenset[tuple[str, FileId]]) -> int:
        """checkpointTimeToLiveDays in the embedded store (the AWS flows' database applies it
        when it opens, as AWS does). A file still tailed, or still at its path, keeps its row:
        an idle file's checkpoint is never rewritten, and forgetting it would ship it again."""
        store = next(
            (s for r in self.running.values() if (s := getattr(r.sink, "store", None)) is not None),
            None,
        )
        if store is None:
            return 0

        def keep(flow: str, file: FileId, path: str) -> bool:
            return (flow, file) in tailed or file_still_there(file, path)

        try:
            expired: int = store.expire_checkpoints(
                self.config.checkpoint_time_to_live_days, keep=keep
            )
        except AgentError as exc:
            log.error("cannot expire old checkpoints: %s (next try in an hour)", exc)
            return 0
        return expired

    @staticmethod
    def _log_expired(expired: int) -> None:
        if expired:
            log.info("Deleted %d old checkpoints.", expired)  # the AWS agent's words

    async def _expire_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_expiry_period)
            tailed = self._tailed_files()
            self._log_expired(await asyncio.to_thread(self._expire_store_checkpoints, tailed))

    async def _start_endpoint(self, config: AgentConfig) -> KinesisEndpoint | None:
        """The store's Kinesis endpoint when ``localStore.listen`` asks for one (agent/service/serve.py).

        A malformed address is a config error; one that cannot be bound is logged and the
        agent ships on without it, as with the Prometheus listener.
        """
        from agent.service.serve import endpoint_from_config

        endpoint = endpoint_from_config(config)
        if endpoint is None:
            return None
        try:
            await endpoint.start()
        except (AgentError, OSError) as exc:
            log.error("Kinesis endpoint off: cannot serve %s: %s", config.local_store_listen, exc)
            await endpoint.aclose()
            return None
        return endpoint

    async def _reload_endpoint(self, config: AgentConfig) -> None:
        """A changed ``localStore.*`` endpoint setting: stop the old listener, start the new."""
        from agent.service.serve import endpoint_from_config

        try:
            endpoint_from_config(config)  # a malformed address keeps the running endpoint
        except ConfigError as exc:
            log.error("reload: Kinesis endpoint unchanged: %s", exc)
            return
        if self._endpoint is not None:
            await self._endpoint.aclose()
        self._endpoint = await self._start_endpoint(config)

    async def _reloader(self) -> None:
        while True:
            await self.reload_requested.wait()
            self.reload_requested.clear()
            if self.stop.is_set():
                return
            try:
                await self.reload()
            except Exception:
                # whatever a reload trips over must not end the TaskGroup, and with it every
                # flow that is shipping
                log.exception("reload failed; fix the cause and send SIGHUP again")

    async def reload(self) -> bool:
        """Re-read the configuration; start added flows, drain removed and changed ones."""
        if self.config_path is None:
            log.warning("SIGHUP: no configuration file to re-read")
            return False
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            log.error("reload rejected, keeping the running configuration: %s", exc)
            return False
        try:
            self.locks.acquire(new)  # state the new configuration adds (a new checkpointFile...)
        except AgentError as exc:
            log.error("reload rejected, keeping the running configuration: %s", exc)
            return False
        self.notifier.reloading(status="reloading configuration")
        old = self.config
        same_globals = replace(old, flows=(), sources=()) == replace(new, flows=(), sources=())
        new_flows = {f.flow_id: f for f in new.flows}
        to_stop = [
            r
            for fid, r in self.running.items()
            if not same_globals or new_flows.get(fid) != r.flow.config
        ]
        await self._stop_flows(to_stop)
        self.config = new
        started = 0
        for fid, flow_cfg in new_flows.items():
            if fid not in self.running:
                try:
                    self._start_flow(new, flow_cfg)
                except AgentError as exc:
                    # one flow that cannot open its destination must not take the others down
                    log.error(
                        "reload: cannot start flow %s: %s; the other flows keep running, "
                        "fix it and send SIGHUP again",
                        fid,
                        exc,
                    )
                    continue
                started += 1
        for fid in [f for f in self.metrics.flows if f not in new_flows]:
            del self.metrics.flows[fid]
        if self._observers is not None and self._tg is not None:
            try:
                await self._observers.reload(self._tg, new)
            except Exception:
                # the flows are already on the new configuration: the endpoint below must
                # follow, or a reload would be half applied (new flows, old endpoint)
                log.exception(
                    "reload: the status socket, Prometheus or CloudWatch could not be restarted; "
                    "the rest of the configuration is applied, send SIGHUP again to retry them"
                )
        changed = _endpoint_settings(old) != _endpoint_settings(new)
        if not self._once and start_on_reload(
            self._endpoint, new.local_store_listen, changed=changed
        ):
            await self._reload_endpoint(new)
        log.info(
            "reloaded %s: %d flow(s) stopped, %d started, %d untouched",
            self.config_path,
            len(to_stop),
            started,
            len(self.running) - started,
        )
        self.notifier.ready(status=self.status_line())
        return True

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 from the event loop itself: a stuck loop stops the pings and systemd restarts us."""
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _systemd_status(self) -> None:
        last_sent, last_time = 0, self.metrics.started_monotonic
        while True:
            await asyncio.sleep(STATUS_PERIOD)
            now = asyncio.get_running_loop().time()
            sent = sum(m.records_sent for m in self.metrics.flows.values())
            rate = (sent - last_sent) / max(1e-9, now - last_time) if last_sent or sent else 0.0
            last_sent, last_time = sent, now
            self.notifier.status(self.status_line(rate))

    def status_line(self, rate: float = 0.0) -> str:
        flows = list(self.metrics.flows.values())
        failing = sum(1 for m in flows if m.status == "failing")
        lag = sum(m.lag_bytes for m in flows)
        text = f"{len(flows)} flow(s), {rate:.0f} records/s, {lag} bytes behind"
        return text + (f", {failing} failing" if failing else "")

    def progress_line(self) -> str:
        return progress_line(self.metrics)


PROBLEM_COUNTERS = (
    "read_errors",
    "files_skipped",
    "scan_errors",
    "records_truncated",
    "bytes_discarded",
    "files_truncated",
    "files_lost",
    "unread_bytes_lost",
    "processing_errors",
    "record_send_errors",
)


def problem_summary(m: FlowMetrics) -> str:
    """The flow's non-zero trouble counters in one line (``read_errors=1 files_skipped=2``)."""
    return " ".join(f"{n}={getattr(m, n)}" for n in PROBLEM_COUNTERS if getattr(m, n))


def run(config: AgentConfig, *, once: bool = False, config_path: str | None = None) -> int:
    raise_fd_limit()

    async def main() -> int:
        with Notifier() as notifier:
            agent = Agent(config, notifier=notifier, config_path=config_path)
            install_signal_handlers(agent, asyncio.get_running_loop())
            return await agent.run(once=once)

    return asyncio.run(main())


def _endpoint_settings(config: AgentConfig) -> tuple[object, ...]:
    return (
        config.local_store_directory,
        config.local_store_listen,
        config.local_store_access_key_id,
        config.local_store_secret_access_key,
        config.local_store_shard_limits,
        config.local_store_retention_hours,
    )
