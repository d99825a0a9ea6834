"""Data that leaves before it was read is never silent: a warning naming the file, and counters.

The real agent with a checkpoint on access.log.1 half-read, stopped, logrotate's delaycompress
compressing the file away, restarted; and the running case, a file truncated (no copy) while the
agent was behind.
"""

from __future__ import annotations

import gzip
import logging
import os
import socket
import sqlite3
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.sinks import MemorySink
from tests.support.agent import running_agent, snapshot_when, wait_for
from tests.support.config import from_start, state_config, state_socket
from tests.support.logs import write_log
from tests.tailing.harness import FlowHarness, fast_flow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int, flow_id: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("flow") == flow_id and "path" not in s.labels
    }


def test_compressed_away_before_it_was_read_is_reported_after_restart(tmp_path: Path) -> None:
    """delaycompress and a restart at the wrong moment: the bytes unread are named and counted."""
    logs = tmp_path / "logs"
    rotated = logs / "access.log.1"
    size = write_log(rotated, 1000, 20)
    write_log(logs / "access.log", 10, 20)
    port = _free_port()
    flow_id = f"local:obs:{logs}/access.log*"
    cfg = state_config(
        tmp_path,
        from_start(logs / "access.log*", localStream="obs", maxBufferAgeMillis=1000),
        **{"metrics.prometheusListen": f"127.0.0.1:{port}"},
    )
    sock = state_socket(tmp_path)
    with running_agent(cfg, tmp_path / "agent1.log") as proc:
        wait_for(
            snapshot_when(sock, lambda s: s["records_sent"] == 1010 and s["lag_bytes"] == 0, proc),
            what="both files to be shipped",
        )
    # Stopped with access.log.1 half-read: its checkpoint is moved back to the middle (as if the
    # agent had stopped there); the size the agent stored with it is what it saw of the file.
    half = size // 2
    db = sqlite3.connect(tmp_path / "state" / "streams" / "streams.db")
    with db:
        stored_size = db.execute(
            "SELECT size FROM file_checkpoints WHERE path = ?", (str(rotated),)
        ).fetchone()[0]
        db.execute("UPDATE file_checkpoints SET offset = ? WHERE path = ?", (half, str(rotated)))
    db.close()
    assert stored_size == size
    # logrotate's delaycompress: access.log.1 is compressed to access.log.2.gz (never matched)
    with rotated.open("rb") as src, gzip.open(logs / "access.log.2.gz", "wb") as dst:
        dst.write(src.read())
    rotated.unlink()
    agent_log = tmp_path / "agent2.log"
    with running_agent(cfg, agent_log) as proc:
        snap = wait_for(
            snapshot_when(sock, lambda s: s["flows"][0]["files_lost"] >= 1, proc),
            what="the loss to be counted",
        )
        flow = snap["flows"][0]
        assert (flow["files_lost"], flow["unread_bytes_lost"]) == (1, size - half)
        samples = _scrape(port, flow_id)
        assert samples["kinesis_agent_files_lost_total"] == 1
        assert samples["kinesis_agent_unread_bytes_lost_total"] == size - half
    text = agent_log.read_text()
    warnings = [line for line in text.splitlines() if "bytes unread are lost" in line]
    assert len(warnings) == 1, text[-3000:]
    assert "WARNING" in warnings[0] and str(rotated) in warnings[0]
    assert f" {size - half} bytes unread" in warnings[0]
    # reported once: the next start does not report (or count) it again
    third_log = tmp_path / "agent3.log"
    with running_agent(cfg, third_log) as proc:
        snap = wait_for(snapshot_when(sock, lambda s: s["flows"][0]["status"] == "running", proc))
        assert snap["flows"][0]["files_lost"] == 0
    assert "lost" not in third_log.read_text()


def test_truncated_while_the_agent_was_behind_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file truncated (no copy) while the agent had read only part of it: warned and counted."""
    logs = tmp_path / "logs"
    logs.mkdir()
    live = logs / "app.log"
    size = write_log(live, 60_000, 50)  # 3 MB: more than one read (1 MiB) takes
    sink = MemorySink()
    sink.fail_next = 10**9  # the destination is down: in-flight data fills the budget
    h = FlowHarness(
        tmp_path, fast_flow(str(logs / "app.log*"), max_in_flight_bytes=8192), lambda: sink
    )
    try:
        h.start()
        assert h.wait_until(lambda: h.flow is not None and h.flow.metrics.in_flight_bytes > 0)
        flow = h.flow
        assert flow is not None and flow.files is not None
        (tracked,) = flow.files.readable()
        read_to = tracked.offset
        assert 0 < read_to < size  # behind: blocked by the in-flight budget
        with caplog.at_level(logging.WARNING):
            os.truncate(live, 0)
            assert h.wait_until(lambda: flow.metrics.files_lost == 1)
        assert flow.metrics.unread_bytes_lost == size - read_to
        lines = [
            r.getMessage() for r in caplog.records if "bytes unread are lost" in r.getMessage()
        ]
        assert len(lines) == 1 and str(live) in lines[0]
        assert f" {size - read_to} bytes unread" in lines[0]
    finally:
        sink.fail_next = 0  # the destination is back: the agent drains and stops
        h.close()
