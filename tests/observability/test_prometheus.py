"""Prometheus exposition: a scrape of the real agent parsed by prometheus-client (the listen
address is tested with the other listen addresses in tests/config/test_listen.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.observability.status import StatusUnavailable, fetch
from tests.support.agent import running_agent, shipped_agent, snapshot_when, wait_for
from tests.support.config import obs_config, state_socket
from tests.support.logs import write_log

LINES = 777
WIDTH = 33


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


@pytest.mark.slow
def test_scrape_matches_the_work_done(tmp_path: Path) -> None:
    """Records and bytes parsed and sent, per flow and per file, as the agent shipped them."""
    log_file = tmp_path / "logs" / "web.log"
    nbytes = write_log(log_file, LINES, WIDTH)
    port = _free_port()
    cfg = obs_config(tmp_path, **{"metrics.prometheusListen": str(port)})
    with shipped_agent(cfg, tmp_path, LINES):
        samples = _scrape(port)
    flow_id = f"local:obs:{tmp_path}/logs/*.log"
    flow = (("destination", "LocalStream:obs"), ("flow", flow_id))
    per_file = (("flow", flow_id), ("path", str(log_file)))

    def value(name: str, labels: tuple[tuple[str, str], ...] = flow) -> float:
        return samples[(f"kinesis_agent_{name}", labels)]

    assert value("records_parsed_total") == LINES
    assert value("bytes_parsed_total") == nbytes
    assert value("records_sent_total") == LINES
    assert value("bytes_sent_total") == nbytes
    assert value("record_send_attempts_total") == LINES
    assert value("records_failed_total") == 0
    assert value("records_skipped_total") == 0
    assert value("service_errors_total") == 0
    assert value("retries_total") == 0
    assert value("file_rotations_total") == 0
    assert value("file_truncations_total") == 0
    assert value("in_flight_bytes") == 0
    assert value("lag_bytes") == 0
    assert value("lag_seconds") == 0
    assert value("flow_failing") == 0
    assert value("file_size_bytes", per_file) == nbytes
    assert value("file_read_offset_bytes", per_file) == nbytes
    assert value("file_checkpoint_offset_bytes", per_file) == nbytes
    assert value("file_lag_bytes", per_file) == 0
    assert value("file_records_parsed_total", per_file) == LINES
    assert value("file_bytes_parsed_total", per_file) == nbytes
    assert 0 <= value("file_checkpoint_age_seconds", per_file) < 60
    assert samples[("kinesis_agent_uptime_seconds", ())] > 0


@pytest.mark.slow
def test_busy_port_does_not_stop_shipping(tmp_path: Path) -> None:
    """A Prometheus port already taken is logged; the agent still ships."""
    write_log(tmp_path / "logs" / "web.log", 10, WIDTH)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = obs_config(tmp_path, **{"metrics.prometheusListen": f"127.0.0.1:{port}"})
        sock = state_socket(tmp_path)
        with running_agent(cfg, tmp_path / "agent.log") as proc:
            wait_for(snapshot_when(sock, lambda s: s["records_sent"] == 10, proc))
    assert "Prometheus endpoint off" in (tmp_path / "agent.log").read_text()


@pytest.mark.slow
def test_sighup_moves_the_status_socket_and_the_prometheus_listener(tmp_path: Path) -> None:
    """statusSocket and metrics.prometheusListen changed and SIGHUP sent: the new ones answer with
    the counters carried over, the old ones are gone; a reload that touches only flows keeps them."""
    write_log(tmp_path / "logs" / "web.log", LINES, WIDTH)
    old_port, new_port = _free_port(), _free_port()
    old_sock, new_sock = str(tmp_path / "old.sock"), str(tmp_path / "new.sock")
    cfg = obs_config(tmp_path, statusSocket=old_sock, **{"metrics.prometheusListen": str(old_port)})
    agent_log = tmp_path / "agent.log"
    with running_agent(cfg, agent_log) as proc:
        wait_for(snapshot_when(old_sock, lambda s: s["records_sent"] == LINES, proc))
        doc = json.loads(cfg.read_text())
        doc["flows"][0]["maxBufferAgeMillis"] = 2000  # flows only: observers untouched
        cfg.write_text(json.dumps(doc))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in agent_log.read_text(), what="the first reload")
        assert "observers restarted" not in agent_log.read_text()
        assert fetch(old_sock, timeout=2)["pid"] == proc.pid
        doc.update({"statusSocket": new_sock, "metrics.prometheusListen": str(new_port)})
        cfg.write_text(json.dumps(doc))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "observers restarted" in agent_log.read_text(), what="the restart")
        snap = wait_for(snapshot_when(new_sock, lambda s: s["records_sent"] == LINES, proc))
        assert snap["pid"] == proc.pid
        assert not os.path.exists(old_sock)
        flow_id = f"local:obs:{tmp_path}/logs/*.log"
        labels = (("destination", "LocalStream:obs"), ("flow", flow_id))
        assert _scrape(new_port)[("kinesis_agent_records_sent_total", labels)] == LINES
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{old_port}/metrics", timeout=2)


def test_sighup_retries_a_prometheus_listener_that_could_not_bind(tmp_path: Path) -> None:
    """The port was taken at start (listener off, logged); once it is free, a SIGHUP with the same
    configuration serves /metrics. The reload used to restart the observers only on a change."""
    (tmp_path / "logs").mkdir()
    squatter = socket.create_server(("127.0.0.1", 0))
    port = squatter.getsockname()[1]
    cfg = obs_config(tmp_path, **{"metrics.prometheusListen": f"127.0.0.1:{port}"})
    agent_log = tmp_path / "agent.log"
    try:
        with running_agent(cfg, agent_log) as proc:
            wait_for(lambda: "Prometheus endpoint off" in agent_log.read_text(), what="the bind")
            squatter.close()
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "reloaded" in agent_log.read_text(), what="the reload")
            samples = wait_for(lambda: _scrape_or_none(port), what="/metrics on the freed port")
            assert samples[("kinesis_agent_uptime_seconds", ())] > 0
    finally:
        squatter.close()


def _scrape_or_none(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
    try:
        return _scrape(port)
    except OSError:
        return None


def test_sighup_retries_a_status_socket_that_could_not_bind(tmp_path: Path) -> None:
    """The same rule for the status socket: a file in its place at start (off, logged); once it
    is removed, a SIGHUP with the same configuration serves status."""
    (tmp_path / "logs").mkdir()
    sock = tmp_path / "status.sock"
    sock.write_text("")
    cfg = obs_config(tmp_path, statusSocket=str(sock))
    agent_log = tmp_path / "agent.log"
    with running_agent(cfg, agent_log) as proc:
        wait_for(lambda: "status socket off" in agent_log.read_text(), what="the refusal")
        sock.unlink()
        proc.send_signal(signal.SIGHUP)
        snap = wait_for(lambda: _status_or_none(str(sock)), what="status on the freed path")
        assert snap["pid"] == proc.pid


def _status_or_none(path: str) -> dict[str, Any] | None:
    try:
        return fetch(path, timeout=2)
    except StatusUnavailable:
        return None
