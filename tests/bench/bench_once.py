"""`kinesis-agent run --once` on a 1,000,000-line file into the embedded store, against `wc -l`.

Prints the median of N runs (fresh state each run): lines/s, MB/s, CPU-seconds, peak RSS, and the
`wc -l` time on the same file measured in the same run.

    .venv/bin/python tests/bench/bench_once.py [--lines 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import agent_once, make_log, median, table, timed

from tests.support.config import write_config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "ka-bench"))
    args = parser.parse_args()
    work = Path(args.workdir)
    log = make_log(work / "input" / f"access-{args.lines}.log", args.lines)
    size = log.stat().st_size
    rows = []
    results = []
    wc = []
    for i in range(args.runs):
        state = work / f"state-{i}"
        shutil.rmtree(state, ignore_errors=True)
        config = write_config(
            work / f"once-{i}.json",
            {
                "checkpointFile": str(state / "cp.db"),
                "localStore.directory": str(state / "streams"),
                "cloudwatch.emitMetrics": False,
                "flows": [
                    {
                        "filePattern": str(log),
                        "localStream": "bench",
                        "initialPosition": "START_OF_FILE",
                    }
                ],
            },
        )
        run = agent_once(config)
        if run.returncode != 0:
            print(f"run {i}: kinesis-agent exited {run.returncode}", file=sys.stderr)
            return 1
        results.append(run)
        wc.append(timed(["wc", "-l", str(log)]).wall)
        rows.append(
            [
                f"run {i + 1}",
                f"{args.lines / run.wall:,.0f}",
                f"{size / run.wall / 1e6:.1f}",
                f"{run.cpu:.2f}",
                f"{run.rss_mb:.0f}",
                f"{run.wall:.2f}",
            ]
        )
        shutil.rmtree(state, ignore_errors=True)
    wall = median([r.wall for r in results])
    rows.append(
        [
            "median",
            f"{args.lines / wall:,.0f}",
            f"{size / wall / 1e6:.1f}",
            f"{median([r.cpu for r in results]):.2f}",
            f"{median([r.rss_mb for r in results]):.0f}",
            f"{wall:.2f}",
        ]
    )
    print(f"input: {log} ({args.lines:,} lines, {size / 1e6:.1f} MB)")
    print(table(rows, ["", "lines/s", "MB/s", "CPU-s", "peak RSS MB", "wall s"]))
    w = median(wc)
    print(
        f"wc -l on the same file: {w:.3f} s median ({args.lines / w:,.0f} lines/s); agent/wc time ratio {wall / w:.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
