"""The agent's listeners under a slowloris: capped connections, short deadlines, flows unharmed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.observability import listeners, prometheus, status
from agent.observability.listeners import ConnectionGuard
from agent.observability.metrics import AgentMetrics
from tests.support.agent import running_agent, snapshot_when, wait_for
from tests.support.config import from_start, state_config, state_socket

HALF_SENT = 1100  # the reported attack: past the default soft limit of 1024 descriptors
AGENT_NOFILE = 1024


class TestConnectionGuard:
    def test_admits_up_to_the_limit_then_refuses_and_counts(self) -> None:
        """Past the limit a connection is aborted at once; a release makes room again."""

        class Transport:
            aborted = 0

            def abort(self) -> None:
                Transport.aborted += 1

        class Writer:
            transport = Transport()

        guard = ConnectionGuard("test", 2, clock=lambda: 0.0)
        writer = Writer()
        assert [guard.admit(writer) for _ in range(4)] == [True, True, False, False]  # type: ignore[arg-type]
        assert (guard.active, guard.refused, Transport.aborted) == (2, 2, 2)
        guard.release()
        assert guard.admit(writer)  # type: ignore[arg-type]


def test_a_half_sent_scrape_is_dropped_after_the_request_timeout() -> None:
    """A client that never finishes its headers is cut off after REQUEST_TIMEOUT, not 10 s."""

    async def scenario() -> float:
        server = prometheus.PrometheusServer("127.0.0.1:0", AgentMetrics())
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 30) == b""
            writer.close()
            return time.monotonic() - started

    took = asyncio.run(scenario())
    assert prometheus.REQUEST_TIMEOUT - 0.5 <= took <= prometheus.REQUEST_TIMEOUT + 2


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _scrape(port: int) -> bytes | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body: bytes = response.read()
            return body
    except OSError:
        return None


@contextlib.contextmanager
def _raised_nofile(need: int) -> Iterator[None]:
    """This test process holds the attacker's sockets: lift its own soft limit for them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the hard descriptor limit {hard} is below the {need} this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_slowloris_cannot_exhaust_descriptors_while_flows_keep_shipping(tmp_path: Path) -> None:
    """1,100 half-sent scrapes and 100 idle status clients: descriptors stay bounded, lines and a
    new file are shipped and committed meanwhile, and a real scrape gets through."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"before\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sock_path = state_socket(tmp_path)
    config = state_config(
        tmp_path,
        from_start(logs / "*.log", localStream="s", maxBufferAgeMillis=1000),
        **{"metrics.prometheusListen": f"127.0.0.1:{port}"},
    )
    agent_log = tmp_path / "agent.log"
    # the agent's soft limit: what a service gets without LimitNOFILE (prlimit execs the agent)
    nofile = ("prlimit", f"--nofile={AGENT_NOFILE}:")
    held: list[socket.socket] = []
    with running_agent(config, agent_log, prefix=nofile, stop_timeout=30) as proc:
        try:
            wait_for(snapshot_when(sock_path, lambda s: s["records_sent"] == 1, proc), what="start")
            baseline = _fds(proc.pid)
            with _raised_nofile(HALF_SENT + 200 + 64):
                for _ in range(HALF_SENT):
                    s = socket.create_connection(("127.0.0.1", port), timeout=10)
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never the blank line
                    held.append(s)
                for _ in range(100):
                    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    u.connect(sock_path)  # and never read
                    held.append(u)
                peak = _fds(proc.pid)
                with (logs / "a.log").open("ab") as fh:
                    fh.write(b"during\n")
                (logs / "b.log").write_bytes(b"new file during\n")
                deadline = time.monotonic() + 30
                shipped = snapshot_when(sock_path, lambda s: s["records_sent"] == 3, proc)
                while not shipped():
                    peak = max(peak, _fds(proc.pid))
                    assert time.monotonic() < deadline, (
                        "lines written during the attack not shipped"
                    )
                    time.sleep(0.05)
                body = wait_for(lambda: _scrape(port), timeout=15, what="a scrape to get through")
                assert b"kinesis_agent_records_sent_total" in body
                peak = max(peak, _fds(proc.pid))
        finally:
            for s in held:
                s.close()
    text = agent_log.read_text()
    # Before a guard sees a connection, asyncio takes three loop steps (the accept batch, the
    # _accept_connection2 task, connection_made, the handler task), and a listening socket that
    # is still readable is served again at each: a listener may hold up to three accept batches
    # of not-yet-guarded descriptors. One batch each was the first bound; under load it was
    # passed by 3-9 descriptors (1 run in 3). What is bounded is the point: 1,200 attacking
    # connections cost at most this many, not 1,200.
    limit = prometheus.MAX_CONNECTIONS + status.MAX_CONNECTIONS + 2 * 3 * listeners.ACCEPT_BATCH
    assert peak <= baseline + limit + 16, f"{peak} descriptors (baseline {baseline})"
    assert "Prometheus listener: 32 connections already open" in text
    assert "unable to open database file" not in text
    assert "Too many open files" not in text
