"""The figures of issues 6, 12 and 14, one function each; every run is from scratch.

P1  SINGLELINE file → embedded store with ``run --once`` against syslog-ng file() → file() (tuned),
    rsyslog imfile → omfile and ``wc -l`` on the same file, in the same run.
P2  LOGTOJSON COMBINEDAPACHELOG and CSVTOJSON → store (``run --once``), MiB/s of input, each beside
    rsyslog's raw copy (imfile → omfile, no parsing) of the same file in the same run (issue 14).
K1  aggregated Kinesis to kinesalite: the agent with aggregateRecords against KinesisSink with KPL
    aggregation alone, each on a fresh kinesalite (bench_kinesis.py's cases; issue 14).
P4  RSS of the running daemon: steady (tailing 10k lines/s) and with a 1 GB backlog while the
    destination refuses everything (the store's write lock held by this process).
P6  append → readable in the store latency at 10k lines/s (measured with the P4 steady run).
P7  CPU of the daemon over a window with 1,000 idle matched files.
S1  start-up of ``run --once`` on empty flows beside ``import botocore.session`` (issue 14).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common import agent_once, make_log, timed
from peers import proc_cpu, proc_mem_mb, rsyslog_once, stop, syslog_ng_once

from tests.support.agent import wait_for
from tests.support.config import write_config

MIB = 1024 * 1024
STREAM = "bench"


@dataclass
class Sizes:
    """How big each scenario is; ``quick`` shrinks them for a smoke run."""

    p1_lines: int = 2_000_000
    p2_lines: int = 2_000_000  # issue 3: 2,000,000 lines of ~200 bytes (the P1 file)
    backlog_bytes: int = 1_000_000_000
    window: float = 60.0  # P7
    latency_seconds: float = 20.0  # P6 / P4 steady
    backlog_seconds: float = 20.0
    idle_files: int = 1000
    rate: int = 10_000  # lines/s for P6
    discovery_counts: tuple[int, ...] = (1000, 10_000, 100_000)  # D1 (issue 12)
    # K1: issue 14's figures (233k against 289k records/s) are of 500,000 records of 200 B; a run
    # (two kinesalites, the sink, a warm-up and the agent) takes ~10 s on the 2-core VM.
    k1_records: int = 500_000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            200_000,
            100_000,
            100_000_000,
            10.0,
            6.0,
            8.0,
            1000,
            10_000,
            (1000, 3000),
            k1_records=50_000,
        )


@dataclass
class Context:
    work: Path
    sizes: Sizes
    files: dict[str, Path] = field(default_factory=dict)

    def log(self, kind: str, lines: int) -> Path:
        key = f"{kind}-{lines}"
        if key not in self.files:
            self.files[key] = make_log(self.work / "input" / f"{key}.log", lines, kind=kind)
        return self.files[key]


def _config(ctx: Context, name: str, flow: dict[str, object], **extra: object) -> Path:
    state = ctx.work / f"state-{name}"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    doc: dict[str, object] = {
        "checkpointFile": str(state / "cp.db"),
        "localStore.directory": str(state / "streams"),
        "cloudwatch.emitMetrics": False,
        "flows": [{"localStream": STREAM, "initialPosition": "START_OF_FILE", **flow}],
        **extra,
    }
    return write_config(ctx.work / f"{name}.json", doc)


def _state(ctx: Context, name: str) -> Path:
    return ctx.work / f"state-{name}"


# --- P1 / P2 ---------------------------------------------------------------------------------------


def p1(ctx: Context) -> dict[str, float]:
    lines = ctx.sizes.p1_lines
    log = ctx.log("apache", lines)
    size = log.stat().st_size
    # Each shipper starts with no dirty pages of the other's output left to write back.
    os.sync()
    agent = agent_once(_config(ctx, "p1", {"filePattern": str(log)}))
    if agent.returncode != 0:
        raise RuntimeError(f"kinesis-agent run --once exited {agent.returncode}")
    shutil.rmtree(_state(ctx, "p1"), ignore_errors=True)
    os.sync()
    rsyslog = rsyslog_once(ctx.work, log)
    os.sync()
    syslog_ng = syslog_ng_once(ctx.work, log, profile="tuned")
    wc = timed(["wc", "-l", str(log)])
    return {
        "agent lines/s": lines / agent.wall,
        "agent MB/s": size / agent.wall / 1e6,
        "agent CPU-s": agent.cpu,
        "agent peak RSS MB": agent.rss_mb,
        "rsyslog lines/s": lines / rsyslog.wall,
        "rsyslog MB/s": size / rsyslog.wall / 1e6,
        "rsyslog CPU-s": rsyslog.cpu,
        "rsyslog peak RSS MB": rsyslog.rss_mb,
        "syslog-ng lines/s": lines / syslog_ng.wall,
        "syslog-ng MB/s": size / syslog_ng.wall / 1e6,
        "syslog-ng CPU-s": syslog_ng.cpu,
        "syslog-ng peak RSS MB": syslog_ng.rss_mb,
        "wc lines/s": lines / wc.wall,
    }


CSV_FIELDS = [
    "time",
    "host",
    "client",
    "method",
    "path",
    "status",
    "bytes",
    "seconds",
    "agent",
    "id",
]


def p2(ctx: Context) -> dict[str, float]:
    """Each processor's agent run, then rsyslog copying the same file raw: issue 14's reference."""
    out: dict[str, float] = {}
    cases = {
        "LOGTOJSON": (
            ctx.log("apache", ctx.sizes.p2_lines),
            {"optionName": "LOGTOJSON", "logFormat": "COMBINEDAPACHELOG"},
        ),
        "CSVTOJSON": (
            ctx.log("csv", ctx.sizes.p2_lines),
            {"optionName": "CSVTOJSON", "customFieldNames": CSV_FIELDS},
        ),
    }
    for name, (log, option) in cases.items():
        conf = _config(ctx, "p2", {"filePattern": str(log), "dataProcessingOptions": [option]})
        run = agent_once(conf)
        if run.returncode != 0:
            raise RuntimeError(f"{name}: kinesis-agent run --once exited {run.returncode}")
        size = log.stat().st_size
        out[f"{name} MiB/s"] = size / run.wall / MIB
        out[f"{name} CPU-s"] = run.cpu
        shutil.rmtree(_state(ctx, "p2"), ignore_errors=True)
        os.sync()
        rsyslog = rsyslog_once(ctx.work, log)
        out[f"rsyslog {name} MiB/s"] = size / rsyslog.wall / MIB
        out[f"rsyslog {name} CPU-s"] = rsyslog.cpu
        os.sync()
    return out


# --- the daemon ------------------------------------------------------------------------------------


@contextlib.contextmanager
def daemon(ctx: Context, conf: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """``kinesis-agent run`` in the background; stopped (SIGTERM) when the block ends."""
    errors = (ctx.work / f"{name}.stderr").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=errors,
    )
    try:
        yield proc
        if proc.poll() is not None:
            raise RuntimeError(f"{name}: the agent exited {proc.returncode}; see {errors.name}")
    finally:
        stop(proc)
        errors.close()


def _stream_exists(store_dir: Path) -> bool:
    db = store_dir / "streams.db"
    if not db.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as c:
            return bool(c.execute("SELECT 1 FROM streams WHERE name = ?", (STREAM,)).fetchall())
    except sqlite3.Error:
        return False


# --- P4 steady + P6 --------------------------------------------------------------------------------


def p6(ctx: Context) -> dict[str, float]:
    """Append at ``rate`` lines/s; read the store as it fills; latency and the agent's RSS."""
    from agent.store import StreamStore
    from agent.store.reader import StreamCursor

    sizes = ctx.sizes
    live = ctx.work / "live" / "app.log"
    shutil.rmtree(live.parent, ignore_errors=True)
    live.parent.mkdir(parents=True)
    # a first line before the agent starts: an empty file waits for the next rescan (10 s)
    live.write_bytes(b"%.6f start\n" % time.time())
    age_ms = 1000
    conf = _config(ctx, "p6", {"filePattern": str(live), "maxBufferAgeMillis": age_ms})
    store_dir = _state(ctx, "p6") / "streams"
    latencies: list[float] = []
    rss: list[float] = []
    done = threading.Event()
    pad = b"x" * 150

    def write() -> None:
        per_tick, tick = sizes.rate // 100, 0.01
        n = 0
        next_at = time.monotonic()
        with live.open("ab", buffering=0) as fh:
            while not done.is_set():
                now = time.time()
                fh.write(b"".join(b"%.6f %09d %s\n" % (now, n + i, pad) for i in range(per_tick)))
                n += per_tick
                next_at += tick
                time.sleep(max(0.0, next_at - time.monotonic()))

    with daemon(ctx, conf, "p6") as proc:
        wait_for(lambda: _stream_exists(store_dir), 30, what="the agent to make its stream")
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        started = time.monotonic()
        with StreamStore.open(store_dir, create=False, read_only=True) as store:
            cursor = StreamCursor(store, STREAM)
            while time.monotonic() - started < sizes.latency_seconds:
                records = cursor.poll(10_000)
                seen = time.time()
                if time.monotonic() - started > 2.0:  # after warm-up
                    latencies += [seen - float(r.data.split(b" ", 1)[0]) for r in records]
                    rss.append(proc_mem_mb(proc.pid))
                if not records:
                    time.sleep(0.005)
        done.set()
        writer.join()
    if not latencies:
        raise RuntimeError("p6: nothing became readable")
    q = statistics.quantiles(latencies, n=100)
    return {
        "p50 ms": statistics.median(latencies) * 1000,
        "p99 ms": q[98] * 1000,
        "max age ms": age_ms,
        "steady RSS MB": max(rss),
    }


# --- P4 backlog ------------------------------------------------------------------------------------


def p4_backlog(ctx: Context) -> dict[str, float]:
    """A 1 GB file, the store locked by us: the agent must stop at its in-flight budget."""
    from agent.store import StreamStore

    source = ctx.log("apache", ctx.sizes.p1_lines)
    backlog = ctx.work / "backlog" / "big.log"
    if not backlog.exists() or backlog.stat().st_size < ctx.sizes.backlog_bytes:
        backlog.parent.mkdir(parents=True, exist_ok=True)
        with backlog.open("wb") as out:
            while out.tell() < ctx.sizes.backlog_bytes:
                with source.open("rb") as src:
                    shutil.copyfileobj(src, out, 16 * MIB)
    budget = 32 * MIB
    conf = _config(ctx, "p4", {"filePattern": str(backlog), "maxInFlightBytes": budget})
    store_dir = _state(ctx, "p4") / "streams"
    with StreamStore.open(store_dir) as store:
        store.ensure_stream(STREAM, 4, 24)
    lock = sqlite3.connect(store_dir / "streams.db", isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # every put waits for this lock, then fails, then retries
        with daemon(ctx, conf, "p4") as proc:
            time.sleep(ctx.sizes.backlog_seconds)
            peak = proc_mem_mb(proc.pid, "VmHWM")
            now = proc_mem_mb(proc.pid)
        lock.execute("ROLLBACK")
    finally:
        lock.close()
    return {"backlog peak RSS MB": peak, "backlog RSS MB": now, "budget MB": budget / 1e6}


# --- P7 --------------------------------------------------------------------------------------------


def p7(ctx: Context) -> dict[str, float]:
    """CPU over ``window`` seconds with 1,000 idle matched files (shipped, then left alone)."""
    idle = ctx.work / "idle"
    shutil.rmtree(idle, ignore_errors=True)
    idle.mkdir(parents=True)
    for i in range(ctx.sizes.idle_files):
        (idle / f"app-{i:04d}.log").write_bytes(
            b"%d hello from an idle file, long enough\n" % i * 40
        )
    conf = _config(ctx, "p7", {"filePattern": str(idle / "*.log")})
    with daemon(ctx, conf, "p7") as proc:
        time.sleep(8.0)  # start, open every file, ship what is there
        cpu0, t0 = proc_cpu(proc.pid), time.monotonic()
        time.sleep(ctx.sizes.window)
        cpu, wall = proc_cpu(proc.pid) - cpu0, time.monotonic() - t0
    return {"idle CPU %": 100 * cpu / wall, "window s": wall}


def d1(ctx: Context) -> dict[str, float]:
    """Discovery at scale: bench_discovery.py at each of ``discovery_counts`` files."""
    from bench_discovery import measure

    out: dict[str, float] = {}
    for count in ctx.sizes.discovery_counts:
        out.update({f"{key} @{count}": value for key, value in measure(ctx.work, count).items()})
    return out


def s1(ctx: Context) -> dict[str, float]:
    """Start-up (issue 14): bench_startup.py, ``run --once`` on empty flows beside botocore's import."""
    from bench_startup import measure

    return measure(ctx.work)


# --- K1 --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _test_credentials() -> Iterator[None]:
    """Dummy AWS credentials in os.environ for the in-process sink; the old values after."""
    from tests.peers.servers import TEST_ENV

    saved = {key: os.environ.get(key) for key in TEST_ENV}
    os.environ.update(TEST_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def k1(ctx: Context) -> dict[str, float]:
    """Aggregated Kinesis (issue 14): the agent with aggregateRecords against the sink with KPL.

    Each case on a fresh kinesalite (it slows down as it fills; bench_kinesis.py says why), both
    with ``k1_records`` records of 200 B. The sink's rate is its sending alone (in this process);
    the agent's is its whole ``run --once`` process, start-up included, as issue 14's 233k, and
    also from opening the file to exit. Between the two, an unmeasured agent run of 1,000 records
    on the sink's server fills the bytecode cache (an installed agent has its .pyc files) for
    whichever tree PYTHONPATH names (``--against`` switches it).
    """
    from bench_kinesis import agent_run, installed_env, make_lines, sink_loop

    from tests.peers.helpers import new_stream
    from tests.peers.servers import start_kinesalite

    count = ctx.sizes.k1_records
    lines = make_lines(count, 200)
    home = ctx.work / "k1"
    shutil.rmtree(home, ignore_errors=True)
    (home / "sink").mkdir(parents=True)
    (home / "agent").mkdir()
    # the agent's working directory is ours: `python -m agent` puts it first on sys.path
    here = Path.cwd()
    with _test_credentials():
        env = installed_env(ctx.work / "k1-pycache")
        peer = start_kinesalite(home / "sink")
        try:
            sink = sink_loop(peer.endpoint, new_stream(peer.endpoint, shards=4), lines, True)
            warm = new_stream(peer.endpoint, shards=4)
            agent_run(peer.endpoint, warm, lines[:1000], True, env, cwd=here)
        finally:
            peer.stop()
        peer = start_kinesalite(home / "agent")
        try:
            stream = new_stream(peer.endpoint, shards=4)
            whole, after_start = agent_run(peer.endpoint, stream, lines, True, env, cwd=here)
        finally:
            peer.stop()
    shutil.rmtree(home, ignore_errors=True)
    return {
        "records": count,
        "agent records/s": whole,
        "agent records/s w/o start-up": after_start,
        "sink records/s": sink,
    }


SCENARIOS = {
    "P1": p1,
    "P2": p2,
    "K1": k1,
    "P4": p4_backlog,
    "P6": p6,
    "P7": p7,
    "D1": d1,
    "S1": s1,
}


def cpu_count() -> int:
    return os.cpu_count() or 1
