"""The store's Kinesis endpoint against kinesalite and a stand-in server, with boto3 as the client.

    .venv/bin/python tests/bench/bench_endpoint.py [--put 200000] [--drain 1000000]
        [--drain-kinesalite 200000] [--latency 500]

Each case runs on a fresh server of its own (a fresh store for ``kinesis-agent serve``, a fresh
kinesalite, as bench_kinesis.py does), on a fresh 4-shard stream, all on 127.0.0.1:

- PutRecords: one boto3 loop, 500 records of 200 B per call, one call at a time; records/s and
  the serving process's CPU-seconds per record (utime + stime from /proc/<pid>/stat). The
  stand-in answers every PutRecords at once with a canned 500-entry success: the client's own
  ceiling. It also answers every GetRecords with a canned page of 10,000 200-byte records, so
  the drain has a client ceiling too (``--drain-kinesalite`` records of it).
- GetRecords: a stream filled beforehand (the store directly, kinesalite through PutRecords),
  drained shard by shard with Limit 10,000; records/s and server CPU-seconds per record.
  kinesalite slows as it fills and takes minutes to fill with 1,000,000 records, so its drain is
  measured on ``--drain-kinesalite`` records (rate and CPU per record are what compare).
- Latency: one record put every 10 ms while a consumer loops GetRecords on that shard without
  pausing; p50/p99 of put → returned.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import proc_cpu  # noqa: E402

from tests.peers.helpers import aws_client  # noqa: E402
from tests.peers.servers import (  # noqa: E402
    TEST_ENV,
    Peer,
    _wait_http,
    start_kinesalite,
    start_store_endpoint,
)

SIZE = 200
SHARDS = 4


def lines(n: int) -> list[bytes]:
    pad = b"x" * (SIZE - 16)
    return [b"rid=%09d %s\n" % (i, pad) for i in range(n)]


def put_loop(endpoint: str, stream: str, records: list[bytes]) -> float:
    client = aws_client("kinesis", endpoint)
    start = time.perf_counter()
    for i in range(0, len(records), 500):
        pending = [{"Data": d, "PartitionKey": str(j)} for j, d in enumerate(records[i : i + 500])]
        while pending:
            resp = client.put_records(StreamName=stream, Records=pending)
            pending = [r for r, a in zip(pending, resp["Records"], strict=True) if "ErrorCode" in a]
    return time.perf_counter() - start


def drain(endpoint: str, stream: str, want: int) -> tuple[float, int]:
    client = aws_client("kinesis", endpoint)
    got = 0
    start = time.perf_counter()
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        it = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            page = client.get_records(ShardIterator=it, Limit=10_000)
            got += len(page["Records"])
            it = page["NextShardIterator"]
            if not page["Records"] or (page.get("MillisBehindLatest", 1) == 0 and got >= want):
                break
    return time.perf_counter() - start, got


def latency(endpoint: str, stream: str, count: int) -> tuple[float, float]:
    client = aws_client("kinesis", endpoint)
    consumer = aws_client("kinesis", endpoint)
    shard = "shardId-000000000000"
    it = consumer.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="LATEST")[
        "ShardIterator"
    ]
    sent: dict[bytes, float] = {}
    seen: dict[bytes, float] = {}
    done = threading.Event()

    def consume() -> None:
        nonlocal it
        while not done.is_set():
            page = consumer.get_records(ShardIterator=it)
            now = time.perf_counter()
            for r in page["Records"]:
                seen[r["Data"]] = now
            it = page["NextShardIterator"]

    thread = threading.Thread(target=consume)
    thread.start()
    for i in range(count):
        data = b"lat-%d" % i
        sent[data] = time.perf_counter()
        client.put_record(StreamName=stream, Data=data, PartitionKey="k", ExplicitHashKey="0")
        time.sleep(0.01)
    deadline = time.monotonic() + 10
    while len(seen) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    done.set()
    thread.join(10)
    delays = sorted((seen[d] - t) * 1000 for d, t in sent.items() if d in seen)
    if len(delays) < count:
        raise RuntimeError(f"latency: only {len(delays)} of {count} records came back")
    return statistics.median(delays), delays[int(0.99 * (len(delays) - 1))]


STANDIN = r"""
import asyncio, base64, json, sys
sys.path.insert(0, sys.argv[1])
from agent.endpoint.http import HttpServer
from agent.endpoint.messages import Response
entry = {"ShardId": "shardId-000000000000", "SequenceNumber": "4" * 56}
canned = json.dumps({"FailedRecordCount": 0, "Records": [entry] * 500}).encode()
record = {"SequenceNumber": "4" * 56, "ApproximateArrivalTimestamp": 1700000000.123,
          "Data": base64.b64encode(b"x" * 200).decode(), "PartitionKey": "123"}
answers = {
    "ListShards": json.dumps({"Shards": [{"ShardId": entry["ShardId"]}]}).encode(),
    "GetShardIterator": json.dumps({"ShardIterator": "AAAA"}).encode(),
    "GetRecords": json.dumps({"Records": [record] * 10_000, "NextShardIterator": "AAAA",
                              "MillisBehindLatest": 0}).encode(),
}
headers = [("Content-Type", "application/x-amz-json-1.1")]
async def handle(request):
    if request.method != "POST":
        return Response(200, b"ok", headers)
    operation = request.headers.get("x-amz-target", "").rpartition(".")[2]
    return Response(200, answers.get(operation, canned), headers)
async def main():
    server = HttpServer(handle, "127.0.0.1", 0)
    await server.start()
    print(f"listening {server.port}", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def start_standin(log_dir: Path) -> Peer:
    log = log_dir / "standin.log"
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", STANDIN, str(ROOT)],
        stdout=subprocess.PIPE,
        stderr=out,
        start_new_session=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline().split()[1])
    peer = Peer("stand-in", proc, port, log, (out,))
    _wait_http(peer, "/", 10)
    return peer


def fresh(kind: str, work: Path) -> tuple[Peer, Path | None]:
    """A new server of ``kind`` (and its store directory, for the store)."""
    if kind == "store":
        store = Path(tempfile.mkdtemp(dir=work, prefix="store-")) / "s"
        return start_store_endpoint(store, work), store
    if kind == "kinesalite":
        return start_kinesalite(work), None
    return start_standin(work), None


def measured(peer: Peer, body: Callable[[], Any]) -> tuple[Any, float]:
    before = proc_cpu(peer.process.pid)
    result = body()
    return result, proc_cpu(peer.process.pid) - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--put", type=int, default=200_000)
    parser.add_argument("--drain", type=int, default=1_000_000)
    parser.add_argument("--drain-kinesalite", type=int, default=200_000)
    parser.add_argument("--latency", type=int, default=500)
    args = parser.parse_args()
    os.environ.update(TEST_ENV)
    work = Path(tempfile.mkdtemp(prefix="ka-bench-endpoint-"))
    data = lines(max(args.put, args.drain_kinesalite))
    out: dict[str, float] = {}
    for kind in ("standin", "store", "kinesalite"):
        peer, _store = fresh(kind, work)
        try:
            if kind != "standin":
                aws_client("kinesis", peer.endpoint).create_stream(
                    StreamName="b", ShardCount=SHARDS
                )
                time.sleep(0.6 if kind == "kinesalite" else 0)  # kinesalite: CREATING → ACTIVE
            seconds, cpu = measured(peer, partial(put_loop, peer.endpoint, "b", data[: args.put]))
            out[f"{kind} put rec/s"] = args.put / seconds
            out[f"{kind} put CPU us/rec"] = cpu / args.put * 1e6
        finally:
            peer.stop()
    peer, _store = fresh("standin", work)
    try:
        seconds, got = drain(peer.endpoint, "b", args.drain_kinesalite)
        out["standin get rec/s"] = got / seconds
    finally:
        peer.stop()
    for kind, n in (("store", args.drain), ("kinesalite", args.drain_kinesalite)):
        peer, store = fresh(kind, work)
        try:
            client = aws_client("kinesis", peer.endpoint)
            client.create_stream(StreamName="b", ShardCount=SHARDS)
            time.sleep(0.6 if kind == "kinesalite" else 0)
            if store is not None:
                fill_store(store, n)
            else:
                put_loop(peer.endpoint, "b", data[:n])
            (seconds, got), cpu = measured(peer, partial(drain, peer.endpoint, "b", n))
            if got != n:
                raise RuntimeError(f"{kind}: drained {got} of {n}")
            out[f"{kind} get rec/s"] = n / seconds
            out[f"{kind} get CPU us/rec"] = cpu / n * 1e6
            p50, p99 = latency(peer.endpoint, "b", args.latency)
            out[f"{kind} latency p50 ms"], out[f"{kind} latency p99 ms"] = p50, p99
        finally:
            peer.stop()
    print(json.dumps({k: round(v, 2) for k, v in out.items()}, indent=1))
    report(out, args)
    return 0


def fill_store(directory: Path, n: int) -> None:
    """Fill the served store directly (as the agent would), 500 records per put."""
    from agent.store import StreamStore

    with StreamStore.open(directory) as store:
        pad = b"x" * (SIZE - 16)
        for start in range(0, n, 500):
            count = min(500, n - start)
            store.put_columns(
                "b",
                [str(i) for i in range(count)],
                [b"rid=%09d %s\n" % (start + i, pad) for i in range(count)],
            )


def report(m: dict[str, float], args: argparse.Namespace) -> None:
    def ratio(a: str, b: str) -> float:
        return m[a] / m[b]

    rows = [
        (
            "PutRecords rec/s: store / kinesalite",
            ratio("store put rec/s", "kinesalite put rec/s"),
            ">= 4",
        ),
        (
            "PutRecords rec/s: store / stand-in",
            ratio("store put rec/s", "standin put rec/s"),
            ">= 0.8",
        ),
        (
            "PutRecords server CPU per record: store / kinesalite",
            ratio("store put CPU us/rec", "kinesalite put CPU us/rec"),
            "<= 0.1",
        ),
        (
            "GetRecords server CPU per record: store / kinesalite",
            ratio("store get CPU us/rec", "kinesalite get CPU us/rec"),
            "<= 0.1",
        ),
        (
            f"GetRecords drain rec/s: store ({args.drain:,}) / kinesalite ({args.drain_kinesalite:,})",
            ratio("store get rec/s", "kinesalite get rec/s"),
            ">= 4",
        ),
        (
            "GetRecords drain rec/s: store / stand-in (the client's ceiling)",
            ratio("store get rec/s", "standin get rec/s"),
            "(context)",
        ),
        ("put -> get p99 ms (store)", m["store latency p99 ms"], "<= 50"),
    ]
    print()
    for name, value, goal in rows:
        print(f"{name:<72} {value:10.3f}   goal {goal}")


if __name__ == "__main__":
    raise SystemExit(main())
