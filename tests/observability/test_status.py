"""The status socket and ``kinesis-agent status``, against the real agent process."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from pathlib import Path

import pytest

from agent.config import load_config
from agent.observability.metrics import AgentMetrics
from agent.observability.status import StatusServer, StatusUnavailable, fetch, socket_path
from tests.support.agent import (
    run_agent,
    running_agent,
    shipped_agent,
    snapshot_when,
    wait_for,
)
from tests.support.config import obs_config, state_socket
from tests.support.logs import write_log

LINES = 1234
WIDTH = 40


class TestSocketPath:
    def test_beside_the_checkpoints_by_default(self, tmp_path: Path) -> None:
        """Without statusSocket the socket lives in the state directory of checkpointFile."""
        config = load_config(str(obs_config(tmp_path)))
        assert socket_path(config) == str(tmp_path / "state" / "status.sock")

    def test_status_socket_key_wins(self, tmp_path: Path) -> None:
        """statusSocket names the socket explicitly."""
        config = load_config(str(obs_config(tmp_path, statusSocket=str(tmp_path / "s.sock"))))
        assert socket_path(config) == str(tmp_path / "s.sock")


class TestServer:
    def test_socket_is_private_and_removed(self, tmp_path: Path) -> None:
        """Mode 0600 while serving (only the agent's user and root), gone after close."""
        path = str(tmp_path / "st" / "status.sock")

        async def scenario() -> tuple[int, dict[str, object]]:
            async with StatusServer(path, AgentMetrics()):
                mode = stat.S_IMODE(os.stat(path).st_mode)
                snap = await asyncio.to_thread(fetch, path)
            return mode, snap

        mode, snap = asyncio.run(scenario())
        assert mode == 0o600
        assert snap["flows"] == [] and snap["version"] == 1
        assert not os.path.exists(path)

    def test_stale_socket_from_a_crash_is_replaced(self, tmp_path: Path) -> None:
        """A socket file nobody answers on (a killed agent's) does not block the next start."""
        path = str(tmp_path / "status.sock")
        with socket.socket(socket.AF_UNIX) as dead:
            dead.bind(path)

        async def scenario() -> dict[str, object]:
            async with StatusServer(path, AgentMetrics()):
                return await asyncio.to_thread(fetch, path)

        assert asyncio.run(scenario())["version"] == 1

    def test_no_agent_is_a_clear_error(self, tmp_path: Path) -> None:
        """Without a running agent the client says where it looked."""
        with pytest.raises(StatusUnavailable, match="no agent status socket at"):
            fetch(str(tmp_path / "missing.sock"))

    def test_cli_without_agent_exits_1(self, tmp_path: Path) -> None:
        """``status`` with no agent: one line on stderr, exit 1."""
        cfg = obs_config(tmp_path)
        proc = run_agent("status", "-c", str(cfg))
        assert proc.returncode == 1
        assert "no agent status socket" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
class TestRunningAgent:
    def test_status_json_field_by_field(self, tmp_path: Path) -> None:
        """After shipping a file, ``status --json`` reports exactly the work done."""
        log_file = tmp_path / "logs" / "app.log"
        nbytes = write_log(log_file, LINES, WIDTH)
        cfg = obs_config(tmp_path)
        with shipped_agent(cfg, tmp_path, LINES) as proc:
            out = run_agent("status", "-c", str(cfg), "--json", check=True)
            snap = json.loads(out.stdout)
            table = run_agent("status", "--socket", state_socket(tmp_path), check=True).stdout
        assert snap["version"] == 1
        assert snap["pid"] == proc.pid
        assert snap["uptime_ms"] > 0
        assert snap["records_parsed"] == LINES
        assert snap["bytes_parsed"] == nbytes
        assert snap["records_sent"] == LINES
        assert snap["bytes_sent"] == nbytes
        assert snap["lag_bytes"] == 0
        [flow] = snap["flows"]
        assert flow["flow_id"] == f"local:obs:{tmp_path}/logs/*.log"
        assert flow["destination"] == "LocalStream:obs"
        assert flow["status"] == "running"
        assert flow["last_error"] is None
        assert flow["records_parsed"] == LINES
        assert flow["bytes_parsed"] == nbytes
        assert flow["records_sent"] == LINES
        assert flow["bytes_sent"] == nbytes
        assert flow["record_send_attempts"] == LINES
        assert flow["record_send_errors"] == 0
        assert flow["service_errors"] == 0
        assert flow["retries"] == 0
        assert flow["records_skipped"] == 0
        assert flow["processing_errors"] == 0
        assert flow["records_truncated"] == 0
        assert flow["send_calls"] >= -(-LINES // 500)
        assert flow["in_flight_bytes"] == 0
        assert flow["in_flight_records"] == 0
        assert flow["files_rotated"] == 0
        assert flow["files_truncated"] == 0
        assert flow["read_errors"] == 0
        assert flow["lag_bytes"] == 0
        assert flow["lag_seconds"] == 0
        assert flow["capacity"] is None  # advice is for Kinesis flows
        assert set(flow["rates"]) == {
            "records_parsed_per_s",
            "bytes_parsed_per_s",
            "records_sent_per_s",
            "bytes_sent_per_s",
        }
        assert all(v >= 0 for v in flow["rates"].values())
        [f] = flow["files"]
        assert f["path"] == str(log_file)
        assert f["size"] == nbytes
        assert f["read_offset"] == nbytes
        assert f["checkpoint_offset"] == nbytes
        assert f["lag_bytes"] == 0
        assert f["lag_seconds"] == 0
        assert f["records_parsed"] == LINES
        assert f["bytes_parsed"] == nbytes
        assert f["rotated"] is False
        assert 0 <= f["checkpoint_age_seconds"] < 60
        st = os.stat(log_file)
        assert f["file_id"].startswith(f"{st.st_dev}:{st.st_ino}:")
        assert "LocalStream:obs" in table and str(LINES) in table
        assert not os.path.exists(state_socket(tmp_path)), (
            "the socket is removed when the agent stops"
        )
        assert (
            f"Agent: Progress: {LINES} records parsed ({nbytes} bytes), and {LINES} records sent "
            "successfully to destinations. Uptime: "
        ) in (tmp_path / "agent.log").read_text()

    def test_lag_is_reported_while_behind(self, tmp_path: Path) -> None:
        """Data the destination has not acknowledged shows as lag in bytes and seconds."""
        log_file = tmp_path / "logs" / "app.log"
        write_log(log_file, 10, WIDTH)
        # a long buffer age holds the ten records back in the batcher
        cfg = obs_config(tmp_path)
        doc = json.loads(cfg.read_text())
        doc["flows"][0].update(maxBufferAgeMillis=60_000, maxBufferSizeRecords=500)
        cfg.write_text(json.dumps(doc))
        sock = state_socket(tmp_path)
        with running_agent(cfg, tmp_path / "agent.log") as proc:
            snap = wait_for(
                snapshot_when(
                    sock,
                    lambda s: bool(s["flows"]) and s["flows"][0]["files"] and s["lag_bytes"] > 0,
                    proc,
                ),
                what="lag to show",
            )
            later = wait_for(
                snapshot_when(sock, lambda s: s["flows"][0]["lag_seconds"] >= 1.0),
                what="lag to age",
            )
        assert snap["lag_bytes"] == 10 * WIDTH
        [f] = later["flows"][0]["files"]
        assert f["lag_bytes"] == 10 * WIDTH and f["checkpoint_offset"] == 0
        assert f["lag_seconds"] >= 1.0
        assert later["flows"][0]["in_flight_records"] == 10
