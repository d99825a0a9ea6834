"""Store write throughput: put_records of 500-record batches of ~200 B, as the local sink sends them.

    .venv/bin/python tests/bench/bench_store.py [--records 1000000] [--shards 4] [--size 200]

Prints records/s and MB/s (median of --runs), each run into a fresh store in a temporary
directory. Partition keys are made beforehand (RANDOM keys, as the AWS agent makes them), so the
figure is the store's own cost: MD5 placement, sequence numbers, inserts, the checkpoint upsert
and the commit.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

from agent.records import Checkpoint, FileId
from agent.store import StreamStore


def run_once(
    records: int, shards: int, size: int, batch: int, keys: list[str]
) -> tuple[float, float]:
    line = b"x" * (size - 1) + b"\n"
    entries = [(keys[i % len(keys)], line) for i in range(batch)]
    file_id = FileId(2049, 123456, 1024, b"\x00" * 32)
    with tempfile.TemporaryDirectory() as tmp:
        store = StreamStore.open(tmp)
        store.ensure_stream("bench", shards, 24)
        start, cpu = time.perf_counter(), time.process_time()
        offset = 0
        for _ in range(records // batch):
            offset += batch * size
            store.put_records("bench", entries, [Checkpoint("f", file_id, "/x.log", offset)])
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        store.close()
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--size", type=int, default=200, help="bytes per record")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    keys = [repr(random.random() * 1e6) for _ in range(args.batch * 10)]
    runs = [
        run_once(args.records, args.shards, args.size, args.batch, keys) for _ in range(args.runs)
    ]
    n = (args.records // args.batch) * args.batch
    elapsed = statistics.median(t for t, _ in runs)
    best = min(t for t, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    print(
        f"put_records: {n} records of {args.size} B in batches of {args.batch}, "
        f"{args.shards} shard(s), median of {args.runs} runs:\n"
        f"  {n / elapsed:,.0f} records/s, {n * args.size / elapsed / 1e6:.1f} MB/s "
        f"(best run {n / best:,.0f} records/s; {n / cpu:,.0f} records per CPU-second)"
    )


if __name__ == "__main__":
    main()
