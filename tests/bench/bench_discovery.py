"""Discovery at scale (issue 12): N matched one-line files, with ``run --once`` and as a daemon.

For each N: the time to ship every file, the event loop's worst lag (the agent's own measure,
logged at exit), the longest gap between systemd watchdog pings (a fake NOTIFY_SOCKET, as in
tests/service/test_systemd.py, with WATCHDOG_USEC=2 s: a ping a second), and with 1,000 files the idle
CPU of the daemon once everything is shipped. Goals: worst lag < 100 ms, gaps never past the
watchdog, idle CPU < 1 % of a core.

    .venv/bin/python tests/bench/bench_discovery.py [--counts 1000,10000,100000] [--workdir DIR]

Run it against other code (an older tree) with PYTHONPATH=that tree: figures it cannot get
(no lag measure) print as -1.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table
from peers import proc_cpu

from tests.support.config import write_config

PER_DIR = 1000  # files per directory, under a ``**`` pattern
WATCHDOG_USEC = 2_000_000
IDLE_WINDOW = 10.0


def make_files(root: Path, count: int) -> Path:
    """``count`` one-line files in directories of PER_DIR (kept between runs: made once)."""
    done = root / f".made-{count}"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for i in range(count):
        d = root / f"d{i // PER_DIR:04d}"
        if i % PER_DIR == 0:
            d.mkdir(parents=True)
        (d / f"app-{i:06d}.log").write_bytes(b"%d one line of a small log file\n" % i)
    done.touch()
    return root


class Watchdog:
    """systemd's side of the notify socket: when each WATCHDOG=1 arrived."""

    def __init__(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.pings: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._done.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            if b"WATCHDOG=1" in data.split(b"\n"):
                self.pings.append(time.monotonic())

    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}

    def max_gap(self, until: float) -> float:
        times = [*self.pings, until] if self.pings else []
        return max((b - a for a, b in itertools.pairwise(times)), default=-1.0)

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self.sock.close()


def _config(work: Path, name: str, pattern: str) -> Path:
    state = work / f"state-{name}"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    return write_config(
        work / f"{name}.json",
        {
            "checkpointFile": str(state / "cp.db"),
            "localStore.directory": str(state / "streams"),
            "localStore.shardCount": 1,
            "cloudwatch.emitMetrics": False,
            "flows": [
                {
                    "filePattern": pattern,
                    "localStream": "bench",
                    "initialPosition": "START_OF_FILE",
                    "maxBufferAgeMillis": 1000,  # the smallest allowed: time to ship, not to age
                }
            ],
        },
    )


def _worst_lag(stderr: Path) -> float:
    found = re.findall(r"event loop: worst lag (\d+) ms", stderr.read_text(errors="replace"))
    return float(found[-1]) if found else -1.0


def _stored(work: Path, name: str) -> int:
    from agent.store import StreamStore

    directory = work / f"state-{name}" / "streams"
    if not (directory / "streams.db").exists():
        return 0
    try:
        with StreamStore.open(directory, create=False) as store:
            if "bench" not in store.list_streams():
                return 0
            return sum(s.records for s in store.shard_stats("bench"))
    except Exception:  # created but not yet initialised
        return 0


@contextlib.contextmanager
def _agent(
    config: Path, stderr: Path, env: dict[str, str], *args: str
) -> Iterator[subprocess.Popen[bytes]]:
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "-c", str(config), *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, **env},
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def once(work: Path, root: Path, count: int) -> dict[str, float]:
    name = f"once-{count}"
    config = _config(work, name, str(root / "**" / "*.log"))
    dog = Watchdog(work / f"{name}.notify")
    stderr = work / f"{name}.stderr"
    try:
        started = time.monotonic()
        with _agent(config, stderr, dog.env(), "--once") as proc:
            proc.wait()
        ended = time.monotonic()
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: exited {proc.returncode}; see {stderr}")
    finally:
        dog.close()
    shipped = _stored(work, name)
    if shipped != count:
        raise RuntimeError(f"{name}: {shipped} of {count} records shipped")
    return {
        "once s": ended - started,
        "once worst lag ms": _worst_lag(stderr),
        "once watchdog gap s": dog.max_gap(ended),
    }


def daemon(work: Path, root: Path, count: int, *, idle: bool) -> dict[str, float]:
    name = f"daemon-{count}"
    config = _config(work, name, str(root / "**" / "*.log"))
    dog = Watchdog(work / f"{name}.notify")
    stderr = work / f"{name}.stderr"
    out: dict[str, float] = {}
    try:
        started = time.monotonic()
        with _agent(config, stderr, dog.env()) as proc:
            deadline = started + 600
            while _stored(work, name) < count:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name}: exited {proc.returncode}; see {stderr}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: not everything shipped in 600 s; see {stderr}")
                time.sleep(0.5)
            out["daemon s"] = time.monotonic() - started
            if idle:
                time.sleep(3.0)  # the last checkpoints and flushes
                cpu0, t0 = proc_cpu(proc.pid), time.monotonic()
                time.sleep(IDLE_WINDOW)
                out["idle CPU %"] = 100 * (proc_cpu(proc.pid) - cpu0) / (time.monotonic() - t0)
            stop_at = time.monotonic()
        out["daemon stop s"] = time.monotonic() - stop_at
        out["daemon watchdog gap s"] = dog.max_gap(stop_at)
    finally:
        dog.close()
    out["daemon worst lag ms"] = _worst_lag(stderr)
    return out


def measure(work: Path, count: int) -> dict[str, float]:
    root = make_files(work / f"files-{count}", count)
    return {**once(work, root, count), **daemon(work, root, count, idle=count == 1000)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,10000,100000")
    parser.add_argument("--workdir", help="keep the generated files here (default: a temp dir)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ka-discovery-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for count in [int(c) for c in args.counts.split(",")]:
            m = measure(work, count)
            print(f"{count} files: " + ", ".join(f"{k} {v:.3g}" for k, v in m.items()), flush=True)
            rows.append(
                [
                    f"{count:,}",
                    f"{m['once s']:.1f}",
                    f"{m['once worst lag ms']:.0f}",
                    f"{m['once watchdog gap s']:.2f}",
                    f"{m['daemon s']:.1f}",
                    f"{m['daemon worst lag ms']:.0f}",
                    f"{m['daemon watchdog gap s']:.2f}",
                    f"{m['daemon stop s']:.1f}",
                    f"{m['idle CPU %']:.2f}" if "idle CPU %" in m else "",
                ]
            )
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(
        table(
            rows,
            [
                "files",
                "--once s",
                "worst lag ms",
                "max ping gap s",
                "daemon: all shipped s",
                "worst lag ms",
                "max ping gap s",
                "SIGTERM s",
                "idle CPU %",
            ],
        )
    )
    print(f"goals: worst lag < 100 ms; ping gaps < {WATCHDOG_USEC / 1e6:g} s; idle CPU < 1 %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
