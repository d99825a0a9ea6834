"""localStore.listen is judged with the rest of the configuration: by check, by run and by a reload.

It used to be judged only when the endpoint started: ``check`` passed an address ``run`` then
refused, and a SIGHUP with one applied every other change and kept the old endpoint (half a
reload).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, load_config, parse_config
from agent.errors import ConfigError
from agent.observability.observe import Observers
from agent.service.daemon import Agent
from tests.peers.helpers import aws_client
from tests.peers.servers import free_port
from tests.support.agent import run_agent, start_agent, stop_agent, wait_for
from tests.support.config import write_config
from tests.support.streams import stored_lines

BAD = ["99999", "\u00b2", "[::1", "localhost:http"]


@pytest.mark.parametrize("listen", BAD)
def test_a_malformed_listen_address_is_a_config_error(listen: str) -> None:
    doc = {"localStore.listen": listen, "flows": [{"filePattern": "/l/*.log", "localStream": "a"}]}
    with pytest.raises(ConfigError) as exc:
        parse_config(doc)
    assert "localStore.listen" in str(exc.value)


def test_check_exits_78_on_a_listen_address_run_refuses(tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.json", _doc(tmp_path, "app", "99999"))
    proc = run_agent("check", "-c", str(config), text=False)
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 78, proc.stderr
    assert len(lines) == 1 and str(config) in lines[0] and "localStore.listen" in lines[0]


def test_a_reload_with_a_malformed_listen_applies_nothing(tmp_path: Path) -> None:
    """The flow's new stream in the same reload as a bad address is not taken either."""
    good = f"127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "agent.json", _doc(tmp_path, "before", good))
    log = tmp_path / "logs" / "app.log"
    log.parent.mkdir()
    log.write_bytes(b"line 0\n")
    agent_log = tmp_path / "agent.log"
    proc = start_agent(config, log=agent_log)
    try:
        store = tmp_path / "streams"
        wait_for(lambda: stored_lines(store, "before") == [b"line 0\n"], 30, log=agent_log)
        write_config(config, _doc(tmp_path, "after", "99999"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in agent_log.read_text(), 30, log=agent_log)
        with log.open("ab") as fh:
            fh.write(b"line 1\n")
        wait_for(
            lambda: stored_lines(store, "before") == [b"line 0\n", b"line 1\n"], 30, log=agent_log
        )
        assert stored_lines(store, "after") == []
    finally:
        assert stop_agent(proc) == 0


def _doc(tmp_path: Path, stream: str, listen: str) -> dict[str, Any]:
    return {
        "localStore.directory": str(tmp_path / "streams"),
        "localStore.shardCount": 1,
        "localStore.listen": listen,
        "statusSocket": str(tmp_path / "status.sock"),
        "flows": [
            {
                "filePattern": str(tmp_path / "logs" / "*.log"),
                "localStream": stream,
                "initialPosition": "START_OF_FILE",
                "maxBufferAgeMillis": 1000,
            }
        ],
    }


def test_sighup_retries_an_endpoint_that_could_not_bind(tmp_path: Path) -> None:
    """The port was taken at start (endpoint off, logged); once it is free, a SIGHUP with the
    same configuration serves it (the reload used to start the endpoint only on a change)."""
    port = free_port()
    config = write_config(tmp_path / "agent.json", _doc(tmp_path, "app", f"127.0.0.1:{port}"))
    (tmp_path / "logs").mkdir()
    agent_log = tmp_path / "agent.log"
    squatter = socket.create_server(("127.0.0.1", port))
    proc = start_agent(config, log=agent_log)
    try:
        wait_for(lambda: "Kinesis endpoint off" in agent_log.read_text(), 30, log=agent_log)
        squatter.close()
        proc.send_signal(signal.SIGHUP)
        kinesis = aws_client("kinesis", f"http://127.0.0.1:{port}")
        wait_for(lambda: _answers(kinesis), timeout=20, log=agent_log)
    finally:
        squatter.close()
        assert stop_agent(proc) == 0


def _answers(kinesis: Any) -> bool:
    try:
        kinesis.list_streams()
    except Exception:
        return False
    return True


def test_a_reload_whose_observers_fail_still_moves_the_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restarting the observers raises partway through a reload: the flows are already on the new
    configuration, so the new localStore.listen is served too (not a half-applied reload)."""
    old_port, new_port = free_port(), free_port()
    config = write_config(tmp_path / "agent.json", _doc(tmp_path, "app", f"127.0.0.1:{old_port}"))
    (tmp_path / "logs").mkdir()

    async def broken_reload(self: Observers, tg: asyncio.TaskGroup, cfg: AgentConfig) -> None:
        raise RuntimeError("an observer could not restart")

    async def scenario() -> None:
        agent = Agent(load_config(str(config)), config_path=str(config))
        running = asyncio.create_task(agent.run())
        try:
            await _until_served(old_port)
            write_config(config, _doc(tmp_path, "app", f"127.0.0.1:{new_port}"))
            monkeypatch.setattr(Observers, "reload", broken_reload)
            await agent.reload()
            await _until_served(new_port)
        finally:
            agent.stop.set()
            await asyncio.wait_for(running, 30)

    asyncio.run(scenario())


async def _until_served(port: int) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
