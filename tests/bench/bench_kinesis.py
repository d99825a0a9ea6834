"""Kinesis throughput on one kinesalite: a plain boto3 PutRecords loop vs KinesisSink vs the agent.

    .venv/bin/python tests/bench/bench_kinesis.py [--records 500000] [--size 200] [--rounds 3]

Per round, each case on a fresh kinesalite of its own (127.0.0.1, tests/peers) and a fresh 4-shard
stream: (1) boto3 put_records in batches of 500, one call at a time, (2) KinesisSink.send in sends
of its max_send_records (four calls of 500, two in flight on disjoint shard lanes, as the agent
sends a backlog), (3) KinesisSink with KPL aggregation in sends of its max_send_bytes, (4) the
agent process (`kinesis-agent run --once`) on a file of the same lines, plain and aggregated, with
and without its start-up (interpreter, imports, client; until it logs "tailing"). Prints
records/s (median of rounds) and each one's ratio to the plain loop; then the three in-process
kinds alternated call by call on one stream (single calls: no lanes), which keeps the ratios
honest on a busy machine. kinesalite is the bottleneck (one node core); the ratios say how much
the agent adds on top of the cheapest possible client.

Why a fresh server per case: kinesalite slows down as it accumulates data, deleted streams
included, and big aggregated records suffer most. On one shared server, the sink with KPL
aggregation ran at 149.8k records/s when it came after 1.5 M plain records, and at 280-300k on a
fresh server. The ratios then measured each case's place in the order more than the case itself.

Last run (2-core VM, 500,000 records of 200 B, medians of 3, agent byte-compiled as installed,
fresh kinesalite per case): plain loop 17.0k records/s; KinesisSink 1.08x; KinesisSink + KPL
16.99x; agent run --once 1.16x (1.17x without start-up); agent + aggregateRecords 13.76x (15.69x
without start-up; rounds 196k, 241k, 234k records/s). The same code on one shared server for the
whole run (the earlier method) measured 8.3x for the aggregated agent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.config import AgentConfig, FlowConfig  # noqa: E402
from agent.records import Record  # noqa: E402
from agent.sinks.kinesis import KinesisSink  # noqa: E402
from tests.peers.helpers import aws_client, new_stream, read_stream  # noqa: E402
from tests.peers.servers import TEST_ENV, start_kinesalite  # noqa: E402


def make_lines(n: int, size: int) -> list[bytes]:
    pad = b"x" * max(0, size - 16)
    return [b"rid=%09d %s\n" % (i, pad) for i in range(n)]


def plain_loop(endpoint: str, stream: str, lines: list[bytes]) -> float:
    client = aws_client("kinesis", endpoint)
    start = time.perf_counter()
    for i in range(0, len(lines), 500):
        batch = lines[i : i + 500]
        records = [{"Data": d, "PartitionKey": str(j)} for j, d in enumerate(batch)]
        pending = records
        while pending:
            resp = client.put_records(StreamName=stream, Records=pending)
            pending = [r for r, a in zip(pending, resp["Records"], strict=True) if "ErrorCode" in a]
    return len(lines) / (time.perf_counter() - start)


def sink_loop(endpoint: str, stream: str, lines: list[bytes], aggregate: bool) -> float:
    flow = FlowConfig(file_pattern="/x", kinesis_stream=stream, aggregate_records=aggregate)
    sink = KinesisSink.open(AgentConfig(flows=(flow,), kinesis_endpoint=endpoint), flow)

    async def run() -> float:
        records = [Record(d, None, 0, len(d)) for d in lines]
        start = time.perf_counter()
        i = 0
        while i < len(records):
            n, size = 0, 0
            while (
                i + n < len(records)
                and n < sink.max_send_records
                and size + len(records[i + n].data) + 40 <= sink.max_send_bytes
            ):
                size += len(records[i + n].data) + 40
                n += 1
            pending = records[i : i + n]
            while pending:
                result = await sink.send(pending, ())
                pending = result.retry
            i += n
        elapsed = time.perf_counter() - start
        await sink.aclose()
        return len(records) / elapsed

    return asyncio.run(run())


def installed_env(pycache: Path) -> dict[str, str]:
    """The agent process's environment: bytecode compiled once, as an installed agent has it.

    Packages byte-compile at install (packaging/stage.sh); a source tree under
    PYTHONDONTWRITEBYTECODE would compile every agent module at each start (~0.2 s more). The
    cache lives in its own prefix (nothing written into the tree); a warm-up run fills it with
    whatever else the agent imports.
    """
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "agent")],
        env={**os.environ, "PYTHONPYCACHEPREFIX": str(pycache)},
        check=True,
    )
    env = {**os.environ, **TEST_ENV, "PYTHONPYCACHEPREFIX": str(pycache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def agent_run(
    endpoint: str,
    stream: str,
    lines: list[bytes],
    aggregate: bool,
    env: dict[str, str],
    cwd: Path = ROOT,
) -> tuple[float, float]:
    """(records/s over the whole process, records/s from opening the file to exit).

    ``cwd`` is first on the agent's sys.path (``python -m agent``): this checkout by default; the
    caller's own when PYTHONPATH names the tree to run (run_all.py --against).
    """
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp, "logs")
        logs.mkdir()
        (logs / "a.log").write_bytes(b"".join(lines))
        config = Path(tmp, "agent.json")
        config.write_text(
            json.dumps(
                {
                    "checkpointFile": f"{tmp}/cp.db",
                    "cloudwatch.emitMetrics": False,
                    "kinesis.endpoint": endpoint,
                    "flows": [
                        {
                            "filePattern": f"{logs}/*.log",
                            "kinesisStream": stream,
                            "initialPosition": "START_OF_FILE",
                            "aggregateRecords": aggregate,
                        }
                    ],
                }
            )
        )
        start = time.perf_counter()
        opened = None
        with subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "-c", str(config), "--once"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=cwd,
        ) as agent:
            assert agent.stderr is not None
            for line in agent.stderr:
                if opened is None and b"tailing " in line:
                    opened = time.perf_counter()
        end = time.perf_counter()
        if agent.returncode != 0:
            raise RuntimeError(f"kinesis-agent run --once exited {agent.returncode}")
        steady = len(lines) / (end - opened) if opened is not None else 0.0
        return len(lines) / (end - start), steady


def interleaved(endpoint: str, stream: str, lines: list[bytes], calls: int) -> dict[str, float]:
    """Calls of each kind alternated one by one on one stream: per-call medians as records/s.

    Alternating makes background load hit every kind alike, so the ratios hold on a busy box.
    """
    client = aws_client("kinesis", endpoint)
    flow = FlowConfig(file_pattern="/x", kinesis_stream=stream)
    sink = KinesisSink.open(AgentConfig(flows=(flow,), kinesis_endpoint=endpoint), flow)
    agg_flow = FlowConfig(file_pattern="/x", kinesis_stream=stream, aggregate_records=True)
    agg = KinesisSink.open(AgentConfig(flows=(agg_flow,), kinesis_endpoint=endpoint), agg_flow)
    plain_batch = lines[:500]
    agg_n = min(len(lines), agg.max_batch_bytes // (len(lines[0]) + 40))
    times: dict[str, list[float]] = {"boto3": [], "sink": [], "sink+kpl": []}
    loop = asyncio.new_event_loop()
    try:
        for _ in range(calls):
            start = time.perf_counter()
            client.put_records(
                StreamName=stream,
                Records=[{"Data": d, "PartitionKey": str(j)} for j, d in enumerate(plain_batch)],
            )
            times["boto3"].append(time.perf_counter() - start)
            records = [Record(d, None, 0, len(d)) for d in plain_batch]
            start = time.perf_counter()
            loop.run_until_complete(sink.send(records, ()))
            times["sink"].append(time.perf_counter() - start)
            records = [Record(d, None, 0, len(d)) for d in lines[:agg_n]]
            start = time.perf_counter()
            loop.run_until_complete(agg.send(records, ()))
            times["sink+kpl"].append(time.perf_counter() - start)
    finally:
        loop.close()
    sizes = {"boto3": len(plain_batch), "sink": len(plain_batch), "sink+kpl": agg_n}
    return {k: sizes[k] / statistics.median(v) for k, v in times.items()}


def count_stored(endpoint: str, stream: str) -> int:
    return sum(len(records) for records in read_stream(endpoint, stream).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--size", type=int, default=200, help="bytes per record")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-agent", action="store_true", help="skip the agent-process runs")
    args = parser.parse_args()
    os.environ.update(TEST_ENV)
    lines = make_lines(args.records, args.size)
    with tempfile.TemporaryDirectory() as logdir:
        agent_env = installed_env(Path(logdir, "pycache"))
        cases: dict[str, Callable[[str, str], float]] = {
            "boto3 PutRecords loop": lambda ep, s: plain_loop(ep, s, lines),
            "KinesisSink": lambda ep, s: sink_loop(ep, s, lines, aggregate=False),
            "KinesisSink + KPL aggregation": lambda ep, s: sink_loop(ep, s, lines, aggregate=True),
        }
        steady: dict[str, list[float]] = {}

        def agent_case(name: str, aggregate: bool) -> Callable[[str, str], float]:
            def run(ep: str, s: str) -> float:
                whole, after_start = agent_run(ep, s, lines, aggregate, agent_env)
                steady.setdefault(name, []).append(after_start)
                return whole

            return run

        if not args.no_agent:
            cases["agent run --once"] = agent_case("agent run --once", False)
            cases["agent run --once + aggregateRecords"] = agent_case(
                "agent run --once + aggregateRecords", True
            )
        rates: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        warmed = False
        for r in range(args.rounds):
            # rotate the order so no case always runs first or last
            for name in names[r % len(names) :] + names[: r % len(names)]:
                # A fresh kinesalite for every case: it slows down as it accumulates data
                # (deleted streams included; big aggregated records most), so a shared server
                # measured each case's place in the order more than the case itself.
                case_dir = Path(logdir, f"round{r}-case{names.index(name)}")
                case_dir.mkdir()
                peer = start_kinesalite(case_dir)
                try:
                    ep = peer.endpoint
                    if not warmed and not args.no_agent:  # fills the bytecode cache, unmeasured
                        agent_run(ep, new_stream(ep, shards=4), lines[:1000], True, agent_env)
                        warmed = True
                    stream = new_stream(ep, shards=4)
                    rate = cases[name](ep, stream)
                    rates[name].append(rate)
                    if r == 0 and "aggregat" not in name:
                        stored = count_stored(ep, stream)
                        assert stored == args.records, (name, stored)
                finally:
                    peer.stop()
                print(f"round {r + 1}: {name:50s} {rate:>12,.0f} records/s", flush=True)
        case_dir = Path(logdir, "interleaved")
        case_dir.mkdir()
        peer = start_kinesalite(case_dir)
        try:
            ab = interleaved(peer.endpoint, new_stream(peer.endpoint, shards=4), lines, calls=40)
        finally:
            peer.stop()
    base = statistics.median(rates["boto3 PutRecords loop"])
    print(f"\n{args.records:,} records of {args.size} B, median of {args.rounds} rounds:")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  {name:50s} {rate:>12,.0f} records/s   ratio {rate / base:6.2f}")
    for name, values in steady.items():
        rate = statistics.median(values)
        label = f"{name} (w/o startup)"
        print(f"  {label:50s} {rate:>12,.0f} records/s   ratio {rate / base:6.2f}")
    print("\nInterleaved call by call (40 of each, per-call medians; robust to background load):")
    for name, rate in ab.items():
        print(f"  {name:50s} {rate:>12,.0f} records/s   ratio {rate / ab['boto3']:6.2f}")


if __name__ == "__main__":
    main()
