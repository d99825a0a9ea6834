"""The daemon's lifecycle with the real process: SIGTERM drains, a second SIGINT exits at once, SIGHUP reloads."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.support.agent import start_agent, wait_for
from tests.support.config import from_start, local_config
from tests.support.logs import numbered
from tests.support.streams import stored_lines

pytestmark = pytest.mark.slow


def flow(logs: Path, name: str, **extra: object) -> dict[str, object]:
    keys = {"maxBufferAgeMillis": 1000, **extra}
    return from_start(logs / f"{name}*.log", localStream=name, **keys)


def test_sigterm_drains_everything_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM with a 60 s buffer age still pending: the batch is flushed and committed before exit 0."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"".join(numbered("a", 0, 1000)))
    config = local_config(tmp_path, flow(logs, "a", maxBufferAgeMillis=60000))
    proc = start_agent(config, log=tmp_path / "agent.log")
    time.sleep(1.5)  # read, but the 60 s batch age keeps it queued
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert stored_lines(tmp_path / "streams", "a") == numbered("a", 0, 1000)


def test_second_sigint_exits_at_once(tmp_path: Path) -> None:
    """Two SIGINTs: the process is gone at once (exit 130) and what was committed stays committed."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"".join(numbered("a", 0, 200)))
    # a second flow whose destination can never drain keeps the first SIGINT waiting
    config = local_config(tmp_path, flow(logs, "a"), shutdownTimeoutMillis=600000)
    proc = start_agent(config, log=tmp_path / "agent.log")
    wait_for(lambda: len(stored_lines(tmp_path / "streams", "a")) == 200, timeout=20)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) in (0, 130)
    assert stored_lines(tmp_path / "streams", "a") == numbered("a", 0, 200)


def test_sighup_reload_adds_removes_changes_without_loss(tmp_path: Path) -> None:
    """Flows added, changed and removed by SIGHUP while lines are written: each line exactly once."""
    logs = tmp_path / "logs"
    logs.mkdir()
    path = local_config(tmp_path, flow(logs, "a"), flow(logs, "b"))
    log = tmp_path / "agent.log"
    proc = start_agent(path, log=log)
    written: dict[str, list[bytes]] = {"a": [], "b": [], "c": []}

    def write(name: str, n: int) -> None:
        new = numbered(name, len(written[name]), n)
        with open(logs / f"{name}.log", "ab") as fh:
            fh.write(b"".join(new))
        written[name] += new

    try:
        write("a", 10)
        wait_for(lambda: len(stored_lines(tmp_path / "streams", "a")) == 10, timeout=20)
        for step in range(4):
            write("a", 300)
            write("b", 300)
            write("c", 300)
            if step == 0:  # add c
                local_config(tmp_path, flow(logs, "a"), flow(logs, "b"), flow(logs, "c"))
            elif step == 1:  # change a (processing), keep b and c
                single = [{"optionName": "SINGLELINE"}]
                local_config(
                    tmp_path,
                    flow(logs, "a", dataProcessingOptions=single),
                    flow(logs, "b"),
                    flow(logs, "c"),
                )
            elif step == 2:  # an invalid config is rejected; the old one keeps running
                path.write_text(json.dumps({"flows": [{"filePattern": "relative"}]}))
            else:  # remove b
                local_config(tmp_path, flow(logs, "a"), flow(logs, "c"))
            proc.send_signal(signal.SIGHUP)
            time.sleep(1.0)
        store = tmp_path / "streams"
        wait_for(lambda: len(stored_lines(store, "a")) == len(written["a"]), timeout=30)
        wait_for(lambda: len(stored_lines(store, "c")) == len(written["c"]), timeout=30)
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
