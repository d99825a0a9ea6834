"""Start and stop the test peers (kinesalite from npm, moto_server from the venv) on 127.0.0.1.

Each start either returns a running peer or raises PeerError saying what to fix: a peer that
cannot start fails the tests that need it, it never skips them.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

PEERS_DIR = Path(__file__).resolve().parent
KINESALITE_PKG = PEERS_DIR / "node_modules" / "kinesalite" / "package.json"
JS_SDK_PKG = PEERS_DIR / "node_modules" / "@aws-sdk" / "client-kinesis" / "package.json"

# Dummy credentials and no instance metadata: nothing in the tests can reach real AWS.
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


class PeerError(RuntimeError):
    """A test peer could not be installed or started."""


class Peer:
    """A running peer process and where it listens."""

    def __init__(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        port: int,
        log: Path,
        files: tuple[IO[bytes], ...] = (),
    ) -> None:
        self.files = files
        self.name = name
        self.process = process
        self.port = port
        self.log = log

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for f in (*self.files, self.process.stdout):
            if f is not None:
                f.close()

    def __repr__(self) -> str:
        return f"Peer({self.name}, {self.endpoint}, pid={self.process.pid})"


def ensure_kinesalite() -> None:
    """npm install in tests/peers when `make` has not done it yet."""
    if KINESALITE_PKG.exists() and JS_SDK_PKG.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise PeerError("npm is not installed: kinesalite (tests/peers/package.json) needs it")
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=PEERS_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0 or not KINESALITE_PKG.exists():
        raise PeerError(f"npm install in {PEERS_DIR} failed:\n{done.stdout}\n{done.stderr}")


def start_kinesalite(log_dir: Path) -> Peer:
    ensure_kinesalite()
    node = shutil.which("node")
    if node is None:
        raise PeerError("node is not installed: kinesalite needs it")
    log = log_dir / "kinesalite.log"
    out = log.open("wb")
    process = subprocess.Popen(
        [node, str(PEERS_DIR / "kinesalite-server.js"), "0"],
        cwd=PEERS_DIR,
        stdout=subprocess.PIPE,
        stderr=out,
        start_new_session=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line.startswith("listening "):
        process.kill()
        raise PeerError(
            f"kinesalite did not start ({line!r}); see {log}: {log.read_text()[-2000:]}"
        )
    peer = Peer("kinesalite", process, int(line.split()[1]), log, (out,))
    _wait_http(peer, "/", 10)
    return peer


def start_moto(log_dir: Path) -> Peer:
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists():
        raise PeerError(f"{exe} not found: install the dev extras (moto[server])")
    log = log_dir / "moto.log"
    for _ in range(3):
        port = free_port()
        out = log.open("ab")
        process = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **TEST_ENV},
            start_new_session=True,
        )
        peer = Peer("moto", process, port, log, (out,))
        try:
            _wait_http(peer, "/moto-api/", 30)
            return peer
        except PeerError:
            peer.stop()
    raise PeerError(f"moto_server did not start; see {log}: {log.read_text()[-2000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(peer: Peer, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if peer.process.poll() is not None:
            raise PeerError(f"{peer.name} exited with {peer.process.returncode}; see {peer.log}")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=2)
            try:
                conn.request("GET", path)
                conn.getresponse().read()
                return
            finally:
                conn.close()
        time.sleep(0.05)
    raise PeerError(f"{peer.name} did not answer on {peer.endpoint} within {timeout} s")


def start_store_endpoint(store: Path, log_dir: Path, *extra: str) -> Peer:
    """``kinesis-agent serve`` (this checkout's) on the store in ``store``, on a free loopback port."""
    log = log_dir / f"serve-{store.name}.log"
    out = log.open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "serve",
            "--store",
            str(store),
            "--listen",
            "127.0.0.1:0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=out,
        env={**os.environ, **TEST_ENV},
        start_new_session=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if " at http://127.0.0.1:" not in line:
        process.kill()
        process.wait(5)
        raise PeerError(
            f"kinesis-agent serve did not start ({line!r}); see {log}: {log.read_text()[-2000:]}"
        )
    port = int(line.rsplit(":", 1)[1])
    peer = Peer("kinesis-agent serve", process, port, log, (out,))
    _wait_http(peer, "/", 10)
    return peer
