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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agent.pipeline.checkpointer import CHECKPOINT_INTERVAL
from tests.peers.faultproxy import CHAOS, Fault, FaultProxy
from tests.peers.helpers import new_stream
from tests.peers.servers import PEERS_DIR, PeerError, ensure_kinesalite, free_port
from tests.reliability.tally import Tally, record
from tests.support.agent import (
    RssSampler,
    kill_agent,
    rss_bytes,
    start_agent,
    stop_agent,
    wait_for,
)
from tests.support.config import NO_CLOUDWATCH, aws_config, from_start, local_config
from tests.support.logs import Writers
from tests.support.streams import kinesis_lines, stored_lines, stored_so_far


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


def sigkills(
    config: Path,
    log: Path,
    kills: int,
    alive: Callable[[], float],
    sampler: RssSampler | None = None,
) -> Iterator[float]:
    """Start the agent and SIGKILL it after ``alive()`` seconds, ``kills`` times; yields the
    moment of each kill."""
    for _ in range(kills):
        proc = start_watched(config, log, sampler)
        time.sleep(alive())
        kill_agent(proc)
        yield time.monotonic()


def start_watched(
    config: Path, log: Path, sampler: RssSampler | None = None
) -> subprocess.Popen[bytes]:
    """The agent started, its RSS sampled by ``sampler``."""
    proc = start_agent(config, log=log)
    if sampler is not None:
        sampler.watch(proc)
    return proc


def forwarded(proxy: FaultProxy) -> int:
    """Entries the proxy passed on to kinesalite (stored), duplicates included: cheap to poll,
    unlike reading a stream of hundreds of thousands of records back."""
    return sum(len(e.forwarded) for e in list(proxy.events))


def wait_delivered(
    proxy: FaultProxy, endpoint: str, stream: str, written: list[bytes], log: Path
) -> None:
    """Until the proxy has forwarded as many entries as were ``written`` and kinesalite holds
    that many distinct lines (the agent's log tail in the failure message), then 1.5 s more for
    anything extra (a duplicate) to show up."""
    total = len(written)
    wait_for(lambda: forwarded(proxy) >= total, 300, interval=0.2, log=log)
    wait_for(lambda: len(set(kinesis_lines(endpoint, stream))) >= total, 60, interval=2.0, log=log)
    time.sleep(1.5)


def kinesis_config(tmp: Path, endpoint: str, stream: str, **flow: Any) -> Path:
    """Growing, rotating files (``tmp/logs/*.log*``) into ``stream`` at ``endpoint``."""
    return aws_config(
        tmp,
        from_start(
            tmp / "logs" / "*.log*",
            kinesisStream=stream,
            maxBufferAgeMillis=1000,
            maxTimeBetweenFileTrackerRefreshMillis=500,
            retryInitialBackoffMillis=20,
            retryMaxBackoffMillis=500,
            **flow,
        ),
        checkpoints=tmp / "cp.db",
        **{"kinesis.endpoint": endpoint},
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
            for t in sigkills(config, log, kills, lambda: rng.uniform(0.6, 2.0), sampler):
                time.sleep(0.1)  # let the sampler see the last forwards
                windows += clock.at(t + 0.05) - clock.at(t - CHECKPOINT_INTERVAL - 0.25)
        proc = start_watched(config, log, sampler)
        try:
            wait_delivered(proxy, endpoint, stream, writers.all, log)
        finally:
            assert stop_agent(proc) == 0
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
            proc = start_agent(config, log=log)
            try:
                wait_for(lambda: len(proxy.events) > 0, 30, log=log)
                with writers:
                    wait_for(lambda: len(proxy.events) > 3, 30, log=log)
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
                wait_delivered(proxy, endpoint, stream, writers.all, log)
            finally:
                assert stop_agent(proc) == 0
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

    with FaultProxy(kinesalite_port, seed=4) as proxy:
        proxy.choose_with(CHAOS)
        config = kinesis_config(tmp, proxy.endpoint, stream)
        proc = start_watched(config, log, sampler)
        try:
            # ~2k lines/s: what kinesalite absorbs with a third of the entries throttled
            with Writers(tmp / "logs", ["app", "web", "db"], 3, rate_sleep=0.02) as writers:
                time.sleep(seconds)
            wait_delivered(proxy, endpoint, stream, writers.all, log)
        finally:
            assert stop_agent(proc) == 0
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


def crash_config(tmp: Path) -> Path:
    """Three growing, rotating files (``tmp/logs/*.log*``) into the local stream ``crash`` in
    ``tmp/streams``, in batches of 50 so that a kill lands between many commits."""
    return local_config(
        tmp,
        from_start(
            tmp / "logs" / "*.log*",
            localStream="crash",
            maxBufferAgeMillis=1000,
            maxTimeBetweenFileTrackerRefreshMillis=500,
            maxBufferSizeRecords=50,
        ),
        **NO_CLOUDWATCH,
    )


def crash_soak_local(tmp: Path, kills: int, seed: int = 7) -> Tally:
    """``kills`` SIGKILLs while three files grow and rotate, shipping into the embedded store:
    exactly once (records and checkpoints commit together)."""
    (tmp / "logs").mkdir()
    store = tmp / "streams"
    config = crash_config(tmp)
    log = tmp / "agent.log"
    rng = random.Random(seed)
    sampler = RssSampler()
    with Writers(tmp / "logs", ["app", "web", "db"], seed) as writers:
        list(sigkills(config, log, kills, lambda: rng.uniform(0.15, 0.9), sampler))
    total = len(writers.all)
    proc = start_watched(config, log, sampler)
    try:
        wait_for(lambda: len(stored_so_far(store, "crash")) >= total, 120, interval=0.5, log=log)
        time.sleep(1.5)
    finally:
        assert stop_agent(proc) == 0
    got = stored_lines(store, "crash")
    tally = Tally.of(f"R1 {kills} SIGKILLs, embedded store", writers.all, got, sampler.close())
    tally.notes.update(rotations=writers.rotations, copytruncates=writers.copytruncates)
    return record(tally)
