"""Benchmark: COMBINEDAPACHELOG → JSON, the processors alone and through ``run --once``.

    .venv/bin/python tests/bench/bench_processors.py [--lines 2000000] [--runs 3] [--profile]

(a) The LOGTOJSON chain alone over N generated ~200-byte Combined Log Format lines: lines/s and
    MB/s of input (MiB/s too: the issue's 41 MiB/s target is in MiB).
(b) If ``kinesis-agent run --once`` works in this checkout: the whole agent, file → LOGTOJSON →
    localStream in a temp directory, ``--runs`` times from scratch; median lines/s, MB/s and the
    child's CPU seconds (user + system).
(c) ``--pipeline``: the agent in this process, ``run --once`` semantics, with a sink that accepts
    everything and stores nothing: tailing + framing + processors + batching + checkpoints
    without the store, to see what limits the pipeline (``--profile`` profiles it too).
``--profile`` prints the top of a cProfile of the processor hot path.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.processors import build_chain  # noqa: E402 - after the path set-up above
from tests.support.config import from_start, state_config  # noqa: E402

LOGTOJSON = {"optionName": "LOGTOJSON", "logFormat": "COMBINEDAPACHELOG"}
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
PATHS = [
    "/?utm_source=newsletter&utm_campaign=w{n}",
    "/index.html?session={n:016x}",
    "/static/app/main.{n:08x}.js",
    "/static/css/site.{n:06x}.css",
    "/api/v2/orders/{n}",
    "/img/products/{n}/thumb.jpg",
    "/search?q=item{n}&page=2",
]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/119.0 Safari/537.36",
    "curl/8.5.0 (x86_64-pc-linux-gnu) libcurl/8.5.0 OpenSSL/3.0.11 zlib/1.2.13",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
]
REFERERS = ["-", "https://www.example.com/products/list", "https://shop.example.com/cart?step=2"]


def generate(path: Path, count: int, seed: int = 7) -> int:
    """Write ``count`` Combined Log Format lines (about 200 bytes each); returns the byte size."""
    rnd = random.Random(seed)
    size = 0
    with path.open("wb") as out:
        batch: list[str] = []
        for i in range(count):
            ip = (
                f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}"
                if i % 10
                else f"2001:db8::{rnd.randrange(65536):x}"
            )
            stamp = (
                f"{rnd.randrange(1, 29):02d}/{rnd.choice(MONTHS)}/2026:"
                f"{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:{rnd.randrange(60):02d} +0000"
            )
            url = rnd.choice(PATHS).format(n=rnd.randrange(1 << 28))
            status = rnd.choice((200, 200, 200, 304, 404, 500))
            nbytes = "-" if status == 304 else str(rnd.randrange(100, 200000))
            batch.append(
                f'{ip} - - [{stamp}] "GET {url} HTTP/1.1" {status} {nbytes} '
                f'"{rnd.choice(REFERERS)}" "{rnd.choice(AGENTS)}"\n'
            )
            if len(batch) == 10000:
                data = "".join(batch).encode()
                size += len(data)
                out.write(data)
                batch.clear()
        data = "".join(batch).encode()
        size += len(data)
        out.write(data)
    return size


def bench_processors(lines: list[bytes], total_bytes: int) -> dict[str, float]:
    chain = build_chain([LOGTOJSON])
    started = time.perf_counter()
    cpu0 = time.process_time()
    for line in lines:
        chain(line)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    assert chain.skipped == 0 and chain.errors == 0, (chain.skipped, chain.errors)
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "lines_per_s": len(lines) / elapsed,
        "MB_per_s": total_bytes / elapsed / 1e6,
        "MiB_per_s": total_bytes / elapsed / 2**20,
    }


def profile(lines: list[bytes]) -> None:
    chain = build_chain([LOGTOJSON])
    profiler = cProfile.Profile()
    profiler.enable()
    for line in lines:
        chain(line)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(8)


def agent_command() -> list[str]:
    exe = Path(sys.executable).with_name("kinesis-agent")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "agent"]


def bench_config(workdir: Path, log: Path) -> Path:
    return state_config(
        workdir, from_start(log, localStream="bench", dataProcessingOptions=[LOGTOJSON])
    )


def run_once(workdir: Path, log: Path) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """One ``run --once`` from an empty state directory: wall seconds, child CPU seconds."""
    state = workdir / "state"
    if state.exists():
        subprocess.run(["rm", "-rf", str(state)], check=True)
    state.mkdir()
    config = bench_config(workdir, log)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [*agent_command(), "--log-level", "WARNING", "run", "--once", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, done


def bench_end_to_end(workdir: Path, log: Path, count: int, size: int, runs: int) -> None:
    # A smoke run on a few lines first: is `run --once` with a localStream there at all?
    smoke_log = workdir / "smoke.log"
    generate(smoke_log, 100)
    smoke_dir = workdir / "smoke"
    smoke_dir.mkdir()
    _, _, smoke = run_once(smoke_dir, smoke_log)
    if smoke.returncode != 0:
        tail = (smoke.stderr or smoke.stdout).strip().splitlines()[-3:]
        print("end-to-end: skipped, `run --once` failed on 100 lines:", *tail, sep="\n  ")
        return
    results = []
    for i in range(runs):
        elapsed, cpu, done = run_once(workdir, log)
        if done.returncode != 0:
            print(f"end-to-end run {i + 1}: exit {done.returncode}\n{done.stderr[-2000:]}")
            return
        results.append((elapsed, cpu))
        print(
            f"  run {i + 1}: {elapsed:.2f} s wall, {cpu:.2f} CPU-s, "
            f"{count / elapsed:,.0f} lines/s, {size / elapsed / 1e6:.1f} MB/s"
        )
    wall = statistics.median(r[0] for r in results)
    cpu = statistics.median(r[1] for r in results)
    print(
        f"end-to-end (run --once, median of {runs}): {count / wall:,.0f} lines/s, "
        f"{size / wall / 1e6:.1f} MB/s ({size / wall / 2**20:.1f} MiB/s), "
        f"{cpu:.2f} CPU-seconds, {wall:.2f} s wall"
    )


class DiscardSink:
    """Accepts every batch at once and keeps nothing: the pipeline's cost without a store."""

    transactional = False
    packs_records = False
    max_record_bytes = 1024 * 1024
    max_batch_records = 500
    max_batch_bytes = 5 * 1024 * 1024
    max_send_records = None
    max_send_bytes = None
    metrics = None

    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0

    def load_checkpoints(self, flow_id: str) -> list[Any]:
        return []

    async def send(self, records: Any, checkpoints: Any) -> Any:
        from agent.sinks import SendResult

        self.records += len(records)
        self.bytes += sum(len(r.data) for r in records)
        return SendResult(delivered=list(records))

    async def aclose(self) -> None:
        pass


def bench_pipeline(workdir: Path, log: Path, count: int, size: int, *, profile_it: bool) -> None:
    """The agent's own flow in-process with DiscardSink (uses the lead's internals; may move)."""
    try:
        import asyncio

        import agent.service.daemon as daemon
        from agent.config import parse_config
    except ImportError as exc:
        print(f"pipeline: skipped ({exc})")
        return
    state = workdir / "pipeline-state"
    state.mkdir(parents=True, exist_ok=True)
    config = parse_config(
        {
            "checkpointFile": str(state / "checkpoints.db"),
            "flows": [
                {
                    "filePattern": str(log),
                    "kinesisStream": "bench",
                    "initialPosition": "START_OF_FILE",
                    "dataProcessingOptions": [LOGTOJSON],
                }
            ],
        }
    )
    sinks: list[DiscardSink] = []

    def open_discard(*_args: Any) -> DiscardSink:
        sinks.append(DiscardSink())
        return sinks[-1]

    daemon.open_sink = open_discard  # type: ignore[assignment]
    profiler = cProfile.Profile() if profile_it else None
    started = time.perf_counter()
    cpu0 = time.process_time()
    if profiler:
        profiler.enable()
    asyncio.run(daemon.Agent(config).run(once=True))
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    got = sum(s.records for s in sinks)
    print(
        f"pipeline in-process, discard sink: {count / wall:,.0f} lines/s, "
        f"{size / wall / 1e6:.1f} MB/s ({size / wall / 2**20:.1f} MiB/s), {cpu:.2f} CPU-s, "
        f"{got:,} records delivered{' (profiled: slower)' if profiler else ''}"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--pipeline", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-processors-") as tmp:
        workdir = Path(tmp)
        log = workdir / "access.log"
        size = generate(log, args.lines)
        print(
            f"input: {args.lines:,} lines, {size / 1e6:.1f} MB, "
            f"{size / args.lines:.0f} bytes/line; Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} CPUs"
        )
        lines = log.read_bytes().splitlines(keepends=True)
        runs = [bench_processors(lines, size) for _ in range(args.runs)]
        best = statistics.median(r["seconds"] for r in runs)
        median = next(r for r in runs if r["seconds"] == best)
        print(
            f"processors alone (LOGTOJSON chain, median of {args.runs}): "
            f"{median['lines_per_s']:,.0f} lines/s, {median['MB_per_s']:.1f} MB/s "
            f"({median['MiB_per_s']:.1f} MiB/s), {median['cpu_seconds']:.2f} CPU-seconds"
        )
        if args.profile:
            profile(lines[:200_000])
        del lines
        if not args.skip_end_to_end:
            bench_end_to_end(workdir, log, args.lines, size, args.runs)
        if args.pipeline:
            bench_pipeline(workdir, log, args.lines, size, profile_it=False)
            if args.profile:
                bench_pipeline(workdir / "p2", log, args.lines, size, profile_it=True)


if __name__ == "__main__":
    main()
