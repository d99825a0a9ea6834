"""The daemon's lifecycle with the real process: SIGTERM drains, a second SIGINT exits at once, SIGHUP reloads."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.support.e2e import start_agent, stored_lines, wait_for, write_config

pytestmark = pytest.mark.slow


def config_doc(tmp_path: Path, flows: list[dict[str, object]]) -> dict[str, object]:
    return {
        "checkpointFile": str(tmp_path / "cp.db"),
        "localStore.directory": str(tmp_path / "streams"),
        "localStore.shardCount": 1,
        "flows": flows,
    }


def flow(logs: Path, name: str, **extra: object) -> dict[str, object]:
    return {
        "filePattern": str(logs / f"{name}*.log"),
        "localStream": name,
        "initialPosition": "START_OF_FILE",
        "maxBufferAgeMillis": 1000,
        **extra,
    }


def lines(prefix: str, start: int, count: int) -> list[bytes]:
    return [f"{prefix} {i:06d}\n".encode() for i in range(start, start + count)]


def test_sigterm_drains_everything_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM with a 60 s buffer age still pending: the batch is flushed and committed before exit 0."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"".join(lines("a", 0, 1000)))
    config = write_config(
        tmp_path / "agent.json", config_doc(tmp_path, [flow(logs, "a", maxBufferAgeMillis=60000)])
    )
    proc = start_agent(config, log=tmp_path / "agent.log")
    time.sleep(1.5)  # read, but the 60 s batch age keeps it queued
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert stored_lines(tmp_path / "streams", "a") == lines("a", 0, 1000)


def test_second_sigint_exits_at_once(tmp_path: Path) -> None:
    """Two SIGINTs: the process is gone at once (exit 130) and what was committed stays committed."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"".join(lines("a", 0, 200)))
    doc = config_doc(tmp_path, [flow(logs, "a")])
    doc["shutdownTimeoutMillis"] = 600000
    # a second flow whose destination can never drain keeps the first SIGINT waiting
    config = write_config(tmp_path / "agent.json", doc)
    proc = start_agent(config, log=tmp_path / "agent.log")
    assert wait_for(lambda: len(stored_lines(tmp_path / "streams", "a")) == 200, timeout=20)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) in (0, 130)
    assert stored_lines(tmp_path / "streams", "a") == lines("a", 0, 200)


def test_sighup_reload_adds_removes_changes_without_loss(tmp_path: Path) -> None:
    """Flows added, changed and removed by SIGHUP while lines are written: each line exactly once."""
    logs = tmp_path / "logs"
    logs.mkdir()
    path = tmp_path / "agent.json"
    write_config(path, config_doc(tmp_path, [flow(logs, "a"), flow(logs, "b")]))
    log = tmp_path / "agent.log"
    proc = start_agent(path, log=log)
    written: dict[str, list[bytes]] = {"a": [], "b": [], "c": []}

    def write(name: str, n: int) -> None:
        new = lines(name, len(written[name]), n)
        with open(logs / f"{name}.log", "ab") as fh:
            fh.write(b"".join(new))
        written[name] += new

    try:
        write("a", 10)
        assert wait_for(lambda: len(stored_lines(tmp_path / "streams", "a")) == 10, timeout=20)
        for step in range(4):
            write("a", 300)
            write("b", 300)
            write("c", 300)
            if step == 0:  # add c
                write_config(
                    path, config_doc(tmp_path, [flow(logs, "a"), flow(logs, "b"), flow(logs, "c")])
                )
            elif step == 1:  # change a (processing), keep b and c
                single = [{"optionName": "SINGLELINE"}]
                write_config(
                    path,
                    config_doc(
                        tmp_path,
                        [
                            flow(logs, "a", dataProcessingOptions=single),
                            flow(logs, "b"),
                            flow(logs, "c"),
                        ],
                    ),
                )
            elif step == 2:  # an invalid config is rejected; the old one keeps running
                path.write_text(json.dumps({"flows": [{"filePattern": "relative"}]}))
            else:  # remove b
                write_config(path, config_doc(tmp_path, [flow(logs, "a"), flow(logs, "c")]))
            proc.send_signal(signal.SIGHUP)
            time.sleep(1.0)
        store = tmp_path / "streams"
        assert wait_for(lambda: len(stored_lines(store, "a")) == len(written["a"]), timeout=30)
        assert wait_for(lambda: len(stored_lines(store, "c")) == len(written["c"]), timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    store = tmp_path / "streams"
    assert stored_lines(store, "a") == written["a"]
    assert stored_lines(store, "c") == written["c"]
    b = stored_lines(store, "b")
    assert b == written["b"][: len(b)], "b lost or repeated lines before it was removed"
    assert len(b) >= 900  # b ran through three reloads before it was removed
    assert "reload rejected" in log.read_text()
