"""One agent per state: a second agent on the same checkpoint file or store refuses to start."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from agent.config import AgentConfig, FlowConfig, load_config
from agent.errors import AgentError
from agent.service.instance import AlreadyRunning, InstanceLock, state_locks
from tests.support.agent import kill_agent, run_agent, start_agent, stop_agent, wait_for
from tests.support.config import write_config
from tests.support.streams import stored_lines


def config(tmp_path: Path, *, local: bool = True, aws: bool = False) -> AgentConfig:
    flows = []
    if local:
        flows.append(FlowConfig(file_pattern=str(tmp_path / "a*.log"), local_stream="a"))
    if aws:
        flows.append(FlowConfig(file_pattern=str(tmp_path / "b*.log"), kinesis_stream="b"))
    return AgentConfig(
        flows=tuple(flows),
        checkpoint_file=str(tmp_path / "state" / "cp.db"),
        local_store_directory=str(tmp_path / "streams"),
    )


def agent_json(tmp_path: Path) -> dict[str, object]:
    """One local flow over tmp_path/logs/*.log, its state under tmp_path."""
    return {
        "checkpointFile": str(tmp_path / "cp.db"),
        "localStore.directory": str(tmp_path / "streams"),
        "flows": [
            {
                "filePattern": str(tmp_path / "logs" / "*.log"),
                "localStream": "a",
                "initialPosition": "START_OF_FILE",
                "maxBufferAgeMillis": 1000,
            }
        ],
    }


def test_the_state_a_configuration_uses_is_what_gets_locked(tmp_path: Path) -> None:
    assert state_locks(config(tmp_path)) == [tmp_path / "streams" / "agent.lock"]
    assert state_locks(config(tmp_path, local=False, aws=True)) == [
        tmp_path / "state" / "cp.db.lock"
    ]
    assert len(state_locks(config(tmp_path, aws=True))) == 2


def test_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    cfg = config(tmp_path, aws=True)
    with InstanceLock() as first:
        first.acquire(cfg)
        second = InstanceLock()
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
            second.acquire(cfg)
        assert second.held == {}
        first.acquire(cfg)  # its own locks again: a reload of the same configuration
    second.acquire(cfg)  # free once the first let go
    second.release()


def test_all_or_nothing(tmp_path: Path) -> None:
    """The store is free but the checkpoint file is not: nothing stays locked by the loser."""
    holder = InstanceLock()
    holder.acquire(config(tmp_path, local=False, aws=True))
    loser = InstanceLock()
    with pytest.raises(AlreadyRunning):
        loser.acquire(config(tmp_path, aws=True))
    assert loser.held == {}
    other = InstanceLock()
    other.acquire(config(tmp_path))  # the store lock the loser took first was given back
    other.release()
    holder.release()


@pytest.mark.slow
def test_second_process_refuses_and_the_first_keeps_shipping(tmp_path: Path) -> None:
    """The real thing: the second agent exits 1 naming the first; SIGKILL frees the lock."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log_file = logs / "a.log"
    log_file.write_bytes(b"one\n")
    path = write_config(tmp_path / "agent.json", agent_json(tmp_path))
    first = start_agent(path, log=tmp_path / "first.log")
    try:
        wait_for(lambda: stored_lines(tmp_path / "streams", "a") == [b"one\n"], timeout=20)
        second = run_agent("run", "-c", str(path), timeout=30, text=False)
        assert second.returncode == 1
        err = second.stderr.decode()
        assert f"another kinesis-agent (pid {first.pid})" in err, err
        assert first.poll() is None
        with open(log_file, "ab") as fh:
            fh.write(b"two\n")
        wait_for(lambda: stored_lines(tmp_path / "streams", "a") == [b"one\n", b"two\n"], 20)
        status = json.loads(
            run_agent("status", "--json", "-c", str(path), timeout=30, check=True).stdout
        )
        assert status["pid"] == first.pid  # the second never took over the status socket
    finally:
        kill_agent(first)
    third = start_agent(path, log=tmp_path / "third.log")  # the kernel dropped the lock with it
    try:
        with open(log_file, "ab") as fh:
            fh.write(b"three\n")
        wait_for(
            lambda: stored_lines(tmp_path / "streams", "a") == [b"one\n", b"two\n", b"three\n"],
            timeout=20,
        )
    finally:
        assert stop_agent(third) == 0


@pytest.mark.slow
def test_reload_onto_a_locked_store_is_rejected(tmp_path: Path) -> None:
    """SIGHUP to a configuration whose store another agent holds: rejected, the old one runs on."""
    logs = tmp_path / "logs"
    logs.mkdir()
    doc = agent_json(tmp_path)
    path = write_config(tmp_path / "agent.json", doc)
    agent_log = tmp_path / "agent.log"
    proc = start_agent(path, log=agent_log)
    other = InstanceLock()
    try:
        (logs / "a.log").write_bytes(b"one\n")
        wait_for(lambda: stored_lines(tmp_path / "streams", "a") == [b"one\n"], 20, log=agent_log)
        moved = dict(doc, **{"localStore.directory": str(tmp_path / "elsewhere")})
        write_config(tmp_path / "moved.json", moved)
        other.acquire(load_config(str(tmp_path / "moved.json")))
        path.write_text(json.dumps(moved))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in agent_log.read_text(), timeout=20, log=agent_log)
        assert "elsewhere/agent.lock" in agent_log.read_text()
        with open(logs / "a.log", "ab") as fh:
            fh.write(b"two\n")
        wait_for(lambda: stored_lines(tmp_path / "streams", "a") == [b"one\n", b"two\n"], 20)
    finally:
        other.release()
        assert stop_agent(proc) == 0


class TestPlantedLockFile:
    """The state directory is the agent user's; root running the agent must not write through it."""

    VICTIM = b"root:secret:19000:0:99999:7:::\n"

    def plant(self, tmp_path: Path, how: str) -> tuple[Path, Path]:
        victim = tmp_path / "victim"
        victim.write_bytes(self.VICTIM)
        lock = tmp_path / "state" / "cp.db.lock"
        lock.parent.mkdir()
        if how == "symlink":
            lock.symlink_to(victim)
        elif how == "hardlink":
            os.link(victim, lock)
        else:
            lock.write_bytes(self.VICTIM)
            victim = lock
        return victim, lock

    @pytest.mark.parametrize(
        ("how", "says"),
        [
            ("symlink", "is a symbolic link"),
            ("hardlink", "is a hard link"),
            ("foreign", "holds something other than a pid"),
        ],
    )
    def test_refused_and_left_unchanged(self, tmp_path: Path, how: str, says: str) -> None:
        victim, _lock = self.plant(tmp_path, how)
        locks = InstanceLock()
        with pytest.raises(AgentError, match=says):
            locks.acquire(config(tmp_path, local=False, aws=True))
        assert locks.held == {}
        assert victim.read_bytes() == self.VICTIM

    def test_a_lock_an_agent_left_is_reused(self, tmp_path: Path) -> None:
        """A dead agent's lock (its pid inside) is the normal case: taken over, pid replaced."""
        lock = tmp_path / "state" / "cp.db.lock"
        lock.parent.mkdir()
        lock.write_bytes(b"4194303\n")
        with InstanceLock() as locks:
            locks.acquire(config(tmp_path, local=False, aws=True))
            assert lock.read_bytes() == f"{os.getpid()}\n".encode()

    def test_run_once_refuses_a_planted_link(self, tmp_path: Path) -> None:
        """The reported attack: `run --once` over a lock linked to a victim exits 1, victim intact."""
        victim, lock = self.plant(tmp_path, "symlink")
        (tmp_path / "logs").mkdir()
        (tmp_path / "logs" / "a.log").write_bytes(b"one\n")
        doc = {
            "checkpointFile": str(tmp_path / "state" / "cp.db"),
            "kinesis.endpoint": "http://127.0.0.1:9",
            "flows": [
                {
                    "filePattern": str(tmp_path / "logs" / "*.log"),
                    "kinesisStream": "s",
                    "initialPosition": "START_OF_FILE",
                }
            ],
        }
        path = write_config(tmp_path / "agent.json", doc)
        proc = run_agent("run", "--once", "-c", str(path), text=False)
        err = proc.stderr.decode()
        assert proc.returncode == 1, err
        assert f"the lock file {lock} is a symbolic link" in err
        assert victim.read_bytes() == self.VICTIM
        assert lock.is_symlink()


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_store_directory_that_is_a_file_is_named(tmp_path: Path, command: str) -> None:
    """localStore.directory names a plain file: run exits 1 with one line naming the key and the
    path (it said "cannot create the lock file …: File exists"), and check says so too (it
    passed). Exit 1, not 78: the configuration is right, a file is in the directory's place."""
    doc = agent_json(tmp_path)
    (tmp_path / "logs").mkdir()
    plain = tmp_path / "streams"
    plain.write_text("not a directory\n")
    cfg = write_config(tmp_path / "agent.json", doc)
    proc = run_agent(command, "-c", str(cfg))
    said = proc.stdout + proc.stderr
    assert proc.returncode == 1, said
    assert f"localStore.directory is {plain}, but it is not a directory" in said
    assert "File exists" not in said
    assert plain.read_text() == "not a directory\n"
    if command == "run":
        assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_a_file_above_the_store_directory_is_named(tmp_path: Path) -> None:
    plain = tmp_path / "state"
    plain.write_text("")
    cfg = config(tmp_path)
    cfg = AgentConfig(flows=cfg.flows, local_store_directory=str(plain / "streams"))
    with pytest.raises(AgentError, match=f"but {plain} above it is not a directory"):
        InstanceLock().acquire(cfg)
