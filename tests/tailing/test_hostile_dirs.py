"""What a watched directory holds cannot stall, starve or leak: loops, sparse giants, many files."""

from __future__ import annotations

import itertools
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from agent.tailing import budget, scanning
from agent.tailing.tracker import FileSet
from tests.support.agent import kill_agent, run_agent, start_agent, stop_agent, wait_for
from tests.support.config import local_flow_config
from tests.support.streams import stored_lines
from tests.tailing.harness import FlowHarness, fast_flow, file_set_for


class TestSymlinkLoops:
    def test_loops_under_doublestar_freeze_nothing(self, tmp_path: Path) -> None:
        """``ln -s . l1; ln -s . l2`` under ``**``: the agent ships, pings the watchdog, stops on SIGTERM."""
        logs = tmp_path / "logs"
        app = logs / "app"
        app.mkdir(parents=True)
        os.symlink(".", app / "l1")
        os.symlink(".", app / "l2")
        other = logs / "other.log"
        other.write_bytes(b"")
        store = tmp_path / "streams"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp_path / "notify.sock"))
        pings: list[float] = []
        config = local_flow_config(
            tmp_path,
            logs / "**" / "*.log",
            "loops",
            maxBufferAgeMillis=1000,
            maxTimeBetweenFileTrackerRefreshMillis=1000,
        )
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
        proc = start_agent(config, log=tmp_path / "agent.log", env=env)

        def listen() -> None:  # systemd's side: when each WATCHDOG=1 arrives
            notify.settimeout(0.2)
            while not done.is_set():
                try:
                    data = notify.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if b"WATCHDOG=1" in data.split(b"\n"):
                    pings.append(time.monotonic())

        done = threading.Event()
        listener = threading.Thread(target=listen, daemon=True)
        listener.start()

        try:
            with open(other, "ab") as fh:
                fh.write(b"first\n")
            wait_for(
                lambda: stored_lines(store, "loops") == [b"first\n"],
                timeout=20,
                log=tmp_path / "agent.log",
            )
            for i in range(20):  # a few rescans of the looping tree, while shipping
                with open(other, "ab") as fh:
                    fh.write(f"line {i}\n".encode())
                time.sleep(0.1)
            expected = [b"first\n"] + [f"line {i}\n".encode() for i in range(20)]
            wait_for(lambda: stored_lines(store, "loops") == expected, timeout=10)
            gaps = [b - a for a, b in itertools.pairwise(pings)]
            assert len(pings) >= 3
            assert max(gaps) < 1.0, gaps  # WatchdogSec=1 would never have fired
            started = time.monotonic()
            assert stop_agent(proc, timeout=10) == 0
            assert time.monotonic() - started < 5
        finally:
            done.set()
            listener.join()
            notify.close()
            if proc.poll() is None:
                kill_agent(proc)


def file_set(pattern: str, **overrides: object) -> FileSet:
    return file_set_for(fast_flow(pattern, **overrides), clock=time.monotonic)


def sparse(path: Path, size: str = "30G") -> Path:
    subprocess.run(["truncate", "-s", size, str(path)], check=True)
    subprocess.run(["touch", "-d", "2000-01-01", str(path)], check=True)
    return path


class TestNoStarvation:
    def test_sparse_giant_does_not_hold_back_app_log(self, tmp_path: Path, logs: Path) -> None:
        """A 30 GiB sparse file beside app.log: a line appended to app.log arrives within seconds."""
        sparse(logs / "zz.log")
        (logs / "app.log").write_bytes(b"old\n")
        h = FlowHarness(tmp_path, fast_flow(str(logs / "*.log"), initial_position="END_OF_FILE"))
        try:
            h.start()
            assert h.wait_until(lambda: h.flow is not None and h.flow.files is not None
                                and len(h.flow.files.files) == 2, timeout=5)  # fmt: skip
            with open(logs / "app.log", "ab") as fh:
                fh.write(b"hello\n")
            assert h.wait_until(lambda: b"hello\n" in h.memory.records, timeout=5)
        finally:
            h.close()

    def test_end_of_file_search_skips_holes(
        self, logs: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The first scan's END_OF_FILE search reads data only, never a sparse file's zeros."""
        giant = sparse(logs / "zz.log")
        with open(giant, "r+b") as fh:
            fh.write(b"one\ntwo\n")
        read = [0]
        real = os.pread

        def pread(fd: int, n: int, offset: int) -> bytes:
            data = real(fd, n, offset)
            read[0] += len(data)
            return data

        monkeypatch.setattr(os, "pread", pread)
        files = file_set(str(logs / "*.log"), initial_position="END_OF_FILE")
        files.rescan()
        (tracked,) = files.files.values()
        assert tracked.offset == len(b"one\ntwo\n")
        assert read[0] < 1 << 20
        files.close()


def fds_under(directory: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory) + os.sep):
            count += 1
    return count


class TestIdleFilesClosed:
    def test_descriptors_stay_bounded_and_reopened_files_lose_nothing(
        self, tmp_path: Path, logs: Path
    ) -> None:
        """Idle files are closed; one that grows is reopened by identity and read on, once."""
        n = 40
        expected: list[bytes] = []
        for i in range(n):
            line = f"file {i} line 0\n".encode()
            (logs / f"f{i:02d}.log").write_bytes(line)
            expected.append(line)
        h = FlowHarness(tmp_path, fast_flow(str(logs / "*.log"), close_inactive_millis=300))
        try:
            h.start()
            assert h.wait_until(lambda: len(h.memory.records) == n)
            assert h.wait_until(lambda: fds_under(logs) == 0, timeout=5)
            for round_ in (1, 2):
                for i in (3, 17):
                    line = f"file {i} line {round_}\n".encode()
                    with open(logs / f"f{i:02d}.log", "ab") as fh:
                        fh.write(line)
                    expected.append(line)
                assert h.wait_until(lambda: len(h.memory.records) == len(expected), timeout=5)
                assert h.wait_until(lambda: fds_under(logs) == 0, timeout=5)
            h.run_for(0.3)
            assert sorted(h.memory.records) == sorted(expected)
        finally:
            h.close()


class TestDescriptorBudget:
    @pytest.mark.parametrize("lagging_closes", [False, True], ids=["", "lagging-closes"])
    def test_more_files_than_descriptors_all_arrive_once(
        self, tmp_path: Path, logs: Path, monkeypatch: pytest.MonkeyPatch, lagging_closes: bool
    ) -> None:
        """With room for 8 open files, 60 files are all shipped, once, never past the budget;
        also when the worker thread closing the idle files shed for room is slow (busy)."""
        monkeypatch.setattr("agent.tailing.tables.fd_budget", lambda: 8)
        if lagging_closes:
            real_close_all = budget.close_all

            def close_all_late(fds: list[int]) -> None:
                time.sleep(0.2)
                real_close_all(fds)

            monkeypatch.setattr(budget, "close_all", close_all_late)
            monkeypatch.setattr(scanning, "close_all", close_all_late)
        expected = []
        for i in range(60):
            line = f"file {i} only line\n".encode()
            (logs / f"f{i:02d}.log").write_bytes(line)
            expected.append(line)
        h = FlowHarness(tmp_path, fast_flow(str(logs / "*.log")))
        peak = [0]

        def done() -> bool:
            peak[0] = max(peak[0], fds_under(logs))
            return len(h.memory.records) >= 60

        try:
            h.start()
            assert h.wait_until(done, timeout=10)
            h.run_for(0.3)
            assert sorted(h.memory.records) == sorted(expected)
            assert peak[0] <= 8
        finally:
            h.close()

    def test_real_agent_under_a_low_nofile_limit(self, tmp_path: Path, logs: Path) -> None:
        """RLIMIT_NOFILE 200 and 600 matched files: ``run --once`` ships every one, no EMFILE."""
        for i in range(600):
            (logs / f"f{i:03d}.log").write_bytes(f"file {i}\n".encode())
        store = tmp_path / "streams"
        config = local_flow_config(tmp_path, logs / "*.log", "many")

        run = run_agent(
            "run",
            "--once",
            "-c",
            str(config),
            prefix=("prlimit", "--nofile=200:200"),
            timeout=120,
            text=False,
        )
        err = run.stderr.decode(errors="replace")
        assert run.returncode == 0, err[-3000:]
        assert sorted(stored_lines(store, "many")) == sorted(
            f"file {i}\n".encode() for i in range(600)
        )
        assert "Too many open files" not in err
        # Files past the budget open as shipped ones close, which takes the sender's turn on
        # the loop: a reader pass that never waited held the loop for seconds, at full CPU.
        worst = re.search(r"event loop: worst lag (\d+) ms", err)
        assert worst is not None, err[-3000:]
        assert int(worst.group(1)) < 2000, worst.group(0)
