"""The long-running scenarios, parameterised by length: short in ``make test``, long in ``make soak``.

Each returns a :class:`Tally`; the tests assert on it, ``soak.py`` prints it.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from agent.pipeline.flow import CHECKPOINT_INTERVAL
from tests.peers.faultproxy import PASS, Fault, FaultProxy
from tests.peers.helpers import new_stream
from tests.peers.servers import PEERS_DIR, PeerError, ensure_kinesalite, free_port
from tests.support.reliability import (
    RssSampler,
    Tally,
    kill,
    kinesis_lines,
    record,
    rss_bytes,
    start,
    stop,
    wait_for,
    write_config,
)


class Writers:
    """Numbered lines into several files; rename rotations (in and out of the pattern) and
    copytruncate, at random. ``written`` is every line, in order per file name."""

    def __init__(
        self,
        logs: Path,
        names: list[str],
        seed: int,
        *,
        rate_sleep: float = 0.004,
        rotate_out: Path | None = None,
        copytruncate: bool = True,
        rotate_chance: float = 0.02,
    ) -> None:
        self.rotate_chance = rotate_chance
        self.logs = logs
        self.names = names
        self.rng = random.Random(seed)
        self.rate_sleep = rate_sleep
        self.rotate_out = rotate_out
        self.copytruncate = copytruncate
        self.written: dict[str, list[bytes]] = {n: [] for n in names}
        self.rotations = 0
        self.copytruncates = 0
        self.rotated_out = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self) -> Writers:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def all(self) -> list[bytes]:
        return [line for lines in self.written.values() for line in lines]

    def prime(self) -> None:
        """One line in each file before the agent starts, so it knows every file's first
        generation (a file rotated out of the pattern before it was ever seen cannot be read)."""
        for name in self.names:
            line = f"{name} {0:08d} first\n".encode()
            with open(self.logs / f"{name}.log", "ab") as fh:
                fh.write(line)
            self.written[name].append(line)

    def run(self) -> None:
        seq = dict.fromkeys(self.names, 0)
        while not self.stop.is_set():
            name = self.rng.choice(self.names)
            live = self.logs / f"{name}.log"
            batch = []
            for _ in range(self.rng.randint(1, 40)):
                seq[name] += 1
                batch.append(f"{name} {seq[name]:08d} {'x' * self.rng.randint(0, 120)}\n".encode())
            with open(live, "ab") as fh:
                fh.write(b"".join(batch))
            self.written[name] += batch
            roll = self.rng.random()
            if roll < self.rotate_chance:
                self.rotations += 1
                if self.rotate_out is not None and self.rng.random() < 0.5:
                    self.rotated_out += 1  # out of the pattern: drained through the open fd
                    os.rename(live, self.rotate_out / f"{name}.{self.rotations}")
                else:
                    os.rename(live, self.logs / f"{name}.log.{self.rotations}")
            elif roll < self.rotate_chance * 1.5 and self.copytruncate:
                self.copytruncates += 1
                self.rotations += 1
                shutil.copyfile(live, self.logs / f"{name}.log.{self.rotations}")
                os.truncate(live, 0)
            time.sleep(self.rng.uniform(0, self.rate_sleep))


class ForwardedClock:
    """Samples how many entries the proxy has forwarded (stored), so a kill's window is known."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            n = sum(len(e.forwarded) for e in list(self.proxy.events))
            self.samples.append((time.monotonic(), n))

    def at(self, t: float) -> int:
        best = 0
        for when, n in self.samples:
            if when > t:
                break
            best = n
        return best

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def forwarded(proxy: FaultProxy) -> int:
    """Entries the proxy passed on to kinesalite (stored), duplicates included: cheap to poll,
    unlike reading a stream of hundreds of thousands of records back."""
    return sum(len(e.forwarded) for e in list(proxy.events))


def wait_delivered(proxy: FaultProxy, endpoint: str, stream: str, total: int, log: Path) -> None:
    """Until the proxy has forwarded ``total`` entries and kinesalite holds ``total`` distinct
    lines (the agent's log tail in the failure message)."""
    ok = wait_for(lambda: forwarded(proxy) >= total, 300, 0.2)
    ok = ok and wait_for(lambda: len(set(kinesis_lines(endpoint, stream))) >= total, 60, 2.0)
    assert ok, log.read_text()[-3000:]


def kinesis_config(tmp: Path, endpoint: str, stream: str, **flow: Any) -> Path:
    return write_config(
        tmp / "agent.json",
        {
            "checkpointFile": str(tmp / "cp.db"),
            "kinesis.endpoint": endpoint,
            "cloudwatch.emitMetrics": False,
            "flows": [
                {
                    "filePattern": str(tmp / "logs" / "*.log*"),
                    "kinesisStream": stream,
                    "initialPosition": "START_OF_FILE",
                    "maxBufferAgeMillis": 1000,
                    "maxTimeBetweenFileTrackerRefreshMillis": 500,
                    "retryInitialBackoffMillis": 20,
                    "retryMaxBackoffMillis": 500,
                    **flow,
                }
            ],
        },
    )


# --- R1: SIGKILL soak into kinesalite -------------------------------------------------------------


def crash_soak_kinesis(tmp: Path, kinesalite_port: int, kills: int, seed: int = 5) -> Tally:
    """``kills`` SIGKILLs while three files grow, rotate by rename and copytruncate.

    0 lost. Duplicates are bounded per kill by what the agent can have delivered without a saved
    checkpoint: the entries stored in the last checkpoint interval (plus a quarter second for the
    save itself) before the kill. The sum of those windows bounds the duplicates.
    """
    endpoint = f"http://127.0.0.1:{kinesalite_port}"
    stream = new_stream(endpoint, shards=2)
    (tmp / "logs").mkdir()
    log = tmp / "agent.log"
    rng = random.Random(seed)
    windows = 0
    sampler = RssSampler()
    with FaultProxy(kinesalite_port) as proxy:
        clock = ForwardedClock(proxy)
        config = kinesis_config(tmp, proxy.endpoint, stream)
        with Writers(tmp / "logs", ["app", "web", "db"], seed) as writers:
            for _ in range(kills):
                proc = start(config, log)
                sampler.watch(proc)
                time.sleep(rng.uniform(0.6, 2.0))
                kill(proc)
                t = time.monotonic()
                time.sleep(0.1)  # let the sampler see the last forwards
                windows += clock.at(t + 0.05) - clock.at(t - CHECKPOINT_INTERVAL - 0.25)
        total = len(writers.all)
        proc = start(config, log)
        sampler.watch(proc)
        try:
            assert wait_for(lambda: forwarded(proxy) >= total, 300, 0.2), log.read_text()[-3000:]
            ok = wait_for(lambda: len(set(kinesis_lines(endpoint, stream))) >= total, 60, 2.0)
            assert ok, log.read_text()[-3000:]
            time.sleep(1.5)
        finally:
            assert stop(proc) == 0
        clock.close()
    got = kinesis_lines(endpoint, stream)
    tally = Tally.of(
        f"R1 {kills} SIGKILLs, Kinesis (kinesalite)", writers.all, got, sampler.close()
    )
    tally.notes.update(
        window_bound=windows, rotations=writers.rotations, copytruncates=writers.copytruncates
    )
    return record(tally)


# --- R2: destination outage -----------------------------------------------------------------------


class PrivateKinesalite:
    """A kinesalite of our own on disk (LevelDB), so it can be stopped and started again."""

    def __init__(self, tmp: Path) -> None:
        ensure_kinesalite()
        self.path = tmp / "kinesalite-data"
        self.log = tmp / "kinesalite.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise PeerError("node is not installed")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [node, str(PEERS_DIR / "kinesalite-server.js"), str(self.port), str(self.path)],
                cwd=PEERS_DIR,
                stdout=subprocess.PIPE,
                stderr=out,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        self.proc.stdout.close()
        if not line.startswith("listening"):
            raise PeerError(f"kinesalite did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


def outage(tmp: Path, outage_seconds: float, refuse_seconds: float) -> Tally:
    """kinesalite killed for ``outage_seconds`` and started again, then the proxy refusing
    everything (resets and 503s) for ``refuse_seconds``, while files grow and rotate — half the
    rotations out of the pattern. 0 lost; RSS within maxInFlightBytes plus slack; every rotated
    file drained afterwards."""
    (tmp / "logs").mkdir()
    (tmp / "rotated").mkdir()
    server = PrivateKinesalite(tmp)
    server.start()
    log = tmp / "agent.log"
    budget = 1024 * 1024
    sampler = RssSampler()
    try:
        endpoint = f"http://127.0.0.1:{server.port}"
        stream = new_stream(endpoint, shards=2)
        with FaultProxy(server.port) as proxy:
            config = kinesis_config(tmp, proxy.endpoint, stream, maxInFlightBytes=budget)
            writers = Writers(
                tmp / "logs",
                ["app", "web"],
                9,
                rotate_out=tmp / "rotated",
                copytruncate=False,
                # A rotation every few seconds. A generation that is created and renamed out of
                # the pattern before the agent first looks (well under a second, on a starved
                # 2-core box) cannot be read by anyone; one the agent has opened must be drained.
                rotate_chance=0.002,
                rate_sleep=0.01,  # ~3k lines/s: a sustained load that kinesalite can drain
            )
            writers.prime()
            proc = start(config, log)
            try:
                assert wait_for(lambda: len(proxy.events) > 0, 30), log.read_text()[-2000:]
                with writers:
                    assert wait_for(lambda: len(proxy.events) > 3, 30), log.read_text()[-2000:]
                    time.sleep(1)
                    baseline = rss_bytes(proc.pid)  # warmed up: interpreter, boto3, batches
                    sampler.watch(proc)
                    server.stop()
                    time.sleep(outage_seconds / 2)
                    # the precise case: a file the agent has open is rotated out of the pattern
                    # in the middle of the outage; its descriptor is held and drained afterwards
                    try:
                        os.rename(tmp / "logs" / "web.log", tmp / "rotated" / "web.during-outage")
                        writers.rotated_out += 1
                    except FileNotFoundError:  # the writer rotated it this very instant
                        pass
                    time.sleep(outage_seconds / 2)
                    server.start()
                    proxy.choose_with(
                        lambda rng: rng.choice([Fault("reset"), Fault("status", status=503)])
                    )
                    time.sleep(refuse_seconds)
                    proxy.choose_with(None)
                    time.sleep(1)
                total = len(writers.all)
                wait_delivered(proxy, endpoint, stream, total, log)
                time.sleep(1.5)
            finally:
                assert stop(proc) == 0
        got = kinesis_lines(endpoint, stream)
    finally:
        server.stop()
    peak = sampler.close()
    tally = Tally.of(
        f"R2 outage {outage_seconds:.0f}s + refusing {refuse_seconds:.0f}s",
        writers.all,
        got,
        peak,
    )
    tally.notes.update(
        baseline_rss=baseline,
        budget=budget,
        rotated_out=writers.rotated_out,
        rotations=writers.rotations,
        unanswered=sum(1 for e in proxy.events if e.fault in ("reset", "status")),
    )
    return record(tally)


# --- R3: throttling and a flaky network, live ----------------------------------------------------


def flaky(tmp: Path, kinesalite_port: int, seconds: float) -> Tally:
    """Throttling (30% of entries), 500/503 and resets at random while files grow and rotate.

    Throttled entries never reach kinesalite, so any duplicate would mean a successful entry was
    sent again: only the failed ones may be resent. 0 lost, 0 duplicated."""
    endpoint = f"http://127.0.0.1:{kinesalite_port}"
    stream = new_stream(endpoint, shards=2)
    (tmp / "logs").mkdir()
    log = tmp / "agent.log"
    sampler = RssSampler()

    def chaos(rng: random.Random) -> Fault:
        return rng.choices(
            [
                PASS,
                Fault("throttle", fraction=0.3),
                Fault("status", status=500),
                Fault("status", status=503),
                Fault("reset"),
            ],
            weights=[4, 4, 1, 1, 1],
        )[0]

    with FaultProxy(kinesalite_port, seed=4) as proxy:
        proxy.choose_with(chaos)
        config = kinesis_config(tmp, proxy.endpoint, stream)
        proc = start(config, log)
        sampler.watch(proc)
        try:
            # ~2k lines/s: what kinesalite absorbs with a third of the entries throttled
            with Writers(tmp / "logs", ["app", "web", "db"], 3, rate_sleep=0.02) as writers:
                time.sleep(seconds)
            total = len(writers.all)
            wait_delivered(proxy, endpoint, stream, total, log)
            time.sleep(1.5)
        finally:
            assert stop(proc) == 0
    got = kinesis_lines(endpoint, stream)
    tally = Tally.of(
        f"R3 throttling + 5xx + resets {seconds:.0f}s", writers.all, got, sampler.close()
    )
    tally.notes.update(
        throttled_entries=sum(len(e.rejected) for e in proxy.events),
        requests=len(proxy.events),
    )
    return record(tally)


# --- R1: SIGKILL soak into the embedded store -----------------------------------------------------


def crash_soak_local(tmp: Path, kills: int, seed: int = 7) -> Tally:
    """``kills`` SIGKILLs while three files grow and rotate, shipping into the embedded store:
    exactly once (records and checkpoints commit together)."""
    from tests.support.e2e import stored_lines

    (tmp / "logs").mkdir()
    store = tmp / "streams"
    config = write_config(
        tmp / "agent.json",
        {
            "checkpointFile": str(tmp / "cp.db"),
            "localStore.directory": str(store),
            "localStore.shardCount": 1,
            "cloudwatch.emitMetrics": False,
            "flows": [
                {
                    "filePattern": str(tmp / "logs" / "*.log*"),
                    "localStream": "crash",
                    "initialPosition": "START_OF_FILE",
                    "maxBufferAgeMillis": 1000,
                    "maxTimeBetweenFileTrackerRefreshMillis": 500,
                    "maxBufferSizeRecords": 50,
                }
            ],
        },
    )
    log = tmp / "agent.log"
    rng = random.Random(seed)
    sampler = RssSampler()
    with Writers(tmp / "logs", ["app", "web", "db"], seed) as writers:
        for _ in range(kills):
            proc = start(config, log)
            sampler.watch(proc)
            time.sleep(rng.uniform(0.15, 0.9))
            kill(proc)
    total = len(writers.all)
    proc = start(config, log)
    sampler.watch(proc)

    def count() -> int:
        try:
            return len(stored_lines(store, "crash"))
        except Exception:
            return 0

    try:
        assert wait_for(lambda: count() >= total, 120, 0.5), log.read_text()[-3000:]
        time.sleep(1.5)
    finally:
        assert stop(proc) == 0
    got = stored_lines(store, "crash")
    tally = Tally.of(f"R1 {kills} SIGKILLs, embedded store", writers.all, got, sampler.close())
    tally.notes.update(rotations=writers.rotations, copytruncates=writers.copytruncates)
    return record(tally)
