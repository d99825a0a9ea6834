"""The status endpoint: a unix socket that hands out a JSON snapshot of the running agent.

Only the agent's user (and root) can reach it: the socket is created mode 0600 in the state
directory. Each connection gets one snapshot (one JSON document, then EOF); ``kinesis-agent
status`` and ``top`` are its clients. The snapshot is the single description of the agent's state
that every viewer shares. At most ``MAX_CONNECTIONS`` clients are served at once and each must
take its snapshot within ``WRITE_TIMEOUT`` (``agent.observability.listeners``); the socket reads no request,
so there is no header to wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.errors import AgentError
from agent.observability.listeners import ACCEPT_BATCH, GuardedListener
from agent.observability.metrics import AgentMetrics, FlowMetrics, RateMeter

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 1
SOCKET_NAME = "status.sock"
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024
MAX_CONNECTIONS = 16  # status and top are run by hand; a few at once is plenty
WRITE_TIMEOUT = 5.0  # seconds for a client to take its snapshot

FLOW_COUNTERS = (
    "records_parsed",
    "bytes_parsed",
    "records_processed",
    "records_skipped",
    "processing_errors",
    "records_truncated",
    "record_send_attempts",
    "records_sent",
    "bytes_sent",
    "record_send_errors",
    "service_errors",
    "send_calls",
    "retries",
    "consecutive_errors",
    "in_flight_bytes",
    "in_flight_records",
    "files_rotated",
    "files_truncated",
    "files_lost",
    "unread_bytes_lost",
    "read_errors",
    "files_skipped",
    "scan_errors",
    "bytes_discarded",
)


class StatusUnavailable(AgentError):
    """No agent answers on the status socket (not running, another state directory, no access)."""


def socket_path(config: AgentConfig) -> str:
    """``statusSocket``, else ``status.sock`` beside the checkpoint database (the state directory)."""
    if config.status_socket:
        return config.status_socket
    return str(Path(config.checkpoint_file).parent / SOCKET_NAME)


# --- the snapshot ---------------------------------------------------------------------------------


def _file_snapshot(f: Any, now_mono: float, now_wall: float) -> dict[str, Any]:
    return {
        "path": f.path,
        "file_id": f.file_id,
        "size": f.size,
        "read_offset": f.read_offset,
        "checkpoint_offset": f.checkpoint_offset,
        "lag_bytes": f.lag_bytes,
        "lag_seconds": round(f.lag_seconds(now_mono), 3),
        "checkpoint_age_seconds": (
            round(now_wall - f.checkpoint_updated, 3) if f.checkpoint_updated else None
        ),
        "records_parsed": f.records_parsed,
        "bytes_parsed": f.bytes_parsed,
        "rotated": f.rotated,
    }


def flow_snapshot(
    m: FlowMetrics,
    rates: RateMeter | None,
    *,
    aggregate_bytes: int | None = None,
    now_mono: float | None = None,
    now_wall: float | None = None,
) -> dict[str, Any]:
    now_mono = time.monotonic() if now_mono is None else now_mono
    now_wall = time.time() if now_wall is None else now_wall
    out: dict[str, Any] = {
        "flow_id": m.flow_id,
        "destination": m.destination,
        "status": m.status,
        "last_error": m.last_error,
    }
    for name in FLOW_COUNTERS:
        out[name] = getattr(m, name)
    out["lag_bytes"] = m.lag_bytes
    out["lag_seconds"] = round(m.lag_seconds(now_mono), 3)
    recent = rates.rates(m.flow_id) if rates is not None else {}
    out["rates"] = {f"{k}_per_s": round(v, 3) for k, v in recent.items()}
    out["capacity"] = None
    if m.destination.startswith("KinesisStream:") and rates is not None:
        # only Kinesis flows have capacity advice: the module loads with the first of them
        from agent.observability.capacity import kinesis_capacity

        peak = rates.peak(m.flow_id)
        kwargs = {"aggregate_bytes": aggregate_bytes} if aggregate_bytes else {}
        cap = kinesis_capacity(peak["records_sent"], peak["bytes_sent"], **kwargs)
        out["capacity"] = {"basis": "busiest second of the last minute", **cap.as_dict()}
    out["files"] = [
        _file_snapshot(f, now_mono, now_wall)
        for f in sorted(m.files.values(), key=lambda f: f.path)
    ]
    return out


def snapshot(
    metrics: AgentMetrics,
    rates: RateMeter | None = None,
    config: AgentConfig | None = None,
) -> dict[str, Any]:
    """Everything ``status`` and ``top`` show, as plain JSON values."""
    now_mono, now_wall = time.monotonic(), time.time()
    aggregate = {}
    if config is not None:
        aggregate = {
            f.flow_id: f.aggregated_record_size_bytes or None
            for f in config.flows
            if f.aggregate_records
        }
    flows = [
        flow_snapshot(
            m,
            rates,
            aggregate_bytes=aggregate.get(m.flow_id),
            now_mono=now_mono,
            now_wall=now_wall,
        )
        for m in metrics.flows.values()
    ]
    return {
        "version": SNAPSHOT_VERSION,
        "pid": os.getpid(),
        "time": now_wall,
        "started": metrics.started_wall,
        "uptime_ms": metrics.uptime_millis,
        "records_parsed": metrics.records_parsed,
        "bytes_parsed": metrics.bytes_parsed,
        "records_sent": metrics.records_sent,
        "bytes_sent": sum(m.bytes_sent for m in metrics.flows.values()),
        "lag_bytes": metrics.lag_bytes,
        # how late the agent's event loop ran (seconds): worst since start, worst of the last minute
        "loop_lag_worst_seconds": round(metrics.loop_lag.worst, 4),
        "loop_lag_recent_seconds": round(metrics.loop_lag.recent(now_mono), 4),
        "flows": flows,
    }


# --- the server -----------------------------------------------------------------------------------


class StatusServer(GuardedListener):
    """Serves snapshots on a unix socket; ``async with`` binds it, leaving removes it."""

    def __init__(
        self,
        path: str,
        metrics: AgentMetrics,
        rates: RateMeter | None = None,
        config: AgentConfig | None = None,
    ) -> None:
        super().__init__("status socket", MAX_CONNECTIONS)
        self.path = path
        self.metrics = metrics
        self.rates = rates
        self.config = config

    async def start(self) -> None:
        _clear_stale_socket(self.path)
        old = os.umask(0o177)  # created 0600: no window in which others could connect
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=self.path, backlog=ACCEPT_BATCH
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        log.info("status socket at %s", self.path)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = json.dumps(snapshot(self.metrics, self.rates, self.config)).encode()
        async with asyncio.timeout(WRITE_TIMEOUT):
            writer.write(body + b"\n")
            writer.close()  # flushes the snapshot, then closes
            await writer.wait_closed()

    async def aclose(self) -> None:
        bound = self._server is not None
        await super().aclose()
        if bound:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def _clear_stale_socket(path: str) -> None:
    """Remove a socket a crashed agent left; refuse to steal one that a live agent answers on."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise AgentError(f"status socket {path} exists and is not a socket; remove it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)
            return
    raise AgentError(f"another agent answers on {path}; set statusSocket to run a second one")


# --- the client -----------------------------------------------------------------------------------


def fetch(path: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """One snapshot from the agent listening on ``path``."""
    chunks: list[bytes] = []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            total = 0
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
                total += len(chunk)
                if total > MAX_SNAPSHOT_BYTES:
                    raise StatusUnavailable(f"{path}: snapshot larger than {MAX_SNAPSHOT_BYTES}")
    except FileNotFoundError as exc:
        raise StatusUnavailable(
            f"no agent status socket at {path} (is the agent running with this config?)"
        ) from exc
    except PermissionError as exc:
        raise StatusUnavailable(
            f"cannot open {path}: permission denied (run as the agent's user or root)"
        ) from exc
    except OSError as exc:
        raise StatusUnavailable(f"no agent answers on {path}: {exc.strerror or exc}") from exc
    try:
        data: dict[str, Any] = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise StatusUnavailable(f"{path}: the agent sent an unreadable snapshot") from exc
    return data
