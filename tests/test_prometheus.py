"""Prometheus exposition: the listen address, and a scrape of the real agent parsed by prometheus-client."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.errors import ConfigError
from agent.prometheus import parse_listen
from tests.obs_helpers import local_config, running_agent, snapshot_when, wait_for, write_log

LINES = 777
WIDTH = 33


class TestListen:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("9100", ("127.0.0.1", 9100)),
            (":9100", ("127.0.0.1", 9100)),
            ("0.0.0.0:9100", ("0.0.0.0", 9100)),
            ("[::1]:9100", ("::1", 9100)),
            ("localhost:0", ("localhost", 0)),
        ],
    )
    def test_forms(self, text: str, expected: tuple[str, int]) -> None:
        """A bare port means loopback; a host opens it further on purpose."""
        assert parse_listen(text) == expected

    @pytest.mark.parametrize("text", ["", "host:", "99999", "[::1]9100", "x:y"])
    def test_errors_name_the_key(self, text: str) -> None:
        """A bad value is a config error at metrics.prometheusListen."""
        with pytest.raises(ConfigError, match=r"metrics\.prometheusListen"):
            parse_listen(text)


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
    cfg = local_config(tmp_path, **{"metrics.prometheusListen": str(port)})
    sock = str(tmp_path / "state" / "status.sock")
    with running_agent(cfg, tmp_path / "agent.log") as proc:
        wait_for(
            snapshot_when(sock, lambda s: s["records_sent"] == LINES and s["lag_bytes"] == 0, proc),
            what="the file to be shipped",
        )
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
        cfg = local_config(tmp_path, **{"metrics.prometheusListen": f"127.0.0.1:{port}"})
        sock = str(tmp_path / "state" / "status.sock")
        with running_agent(cfg, tmp_path / "agent.log") as proc:
            wait_for(snapshot_when(sock, lambda s: s["records_sent"] == 10, proc))
    assert "Prometheus endpoint off" in (tmp_path / "agent.log").read_text()
