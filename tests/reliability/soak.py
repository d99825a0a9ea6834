"""``make soak``: the long versions of the reliability scenarios, then one summary table.

    python -m tests.reliability.soak [--quick]

Starts its own kinesalite (127.0.0.1), runs each scenario against the real agent process and
prints, per scenario, lines written / delivered / lost / duplicated and the agent's peak RSS; then
the real nginx/Apache + logrotate runs (tests/realworld/soak.py), one row per rotation mode.
Exits 1 when any scenario lost a line (or duplicated one where the contract says exactly once).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from tests.peers.servers import TEST_ENV, start_kinesalite
from tests.realworld import soak as realworld
from tests.reliability.scenarios import crash_soak_kinesis, crash_soak_local, flaky, outage
from tests.reliability.tally import TALLIES, Tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the make-test lengths")
    parser.add_argument(
        "--realworld-only", action="store_true", help="only the real nginx/Apache + logrotate runs"
    )
    args = parser.parse_args()
    if args.realworld_only:
        realworld_failures = realworld.soak(args.quick)
        print()
        print(realworld.table())
        for f in realworld_failures:
            print("FAILED:", f)
        return 1 if realworld_failures else 0
    import os

    os.environ.update(TEST_ENV)
    kills = 8 if args.quick else 30
    down, refuse = (10.0, 4.0) if args.quick else (60.0, 20.0)
    flaky_s = 6.0 if args.quick else 60.0
    root = Path(tempfile.mkdtemp(prefix="kinesis-agent-soak-"))
    kinesalite = start_kinesalite(root)
    failures: list[str] = []
    exactly_once = {"R1 embedded", "R3"}
    plan: list[tuple[str, Callable[[Path], Tally]]] = [
        ("R1 embedded", lambda d: crash_soak_local(d, kills)),
        ("R1 kinesis", lambda d: crash_soak_kinesis(d, kinesalite.port, kills)),
        ("R2", lambda d: outage(d, down, refuse)),
        ("R3", lambda d: flaky(d, kinesalite.port, flaky_s)),
    ]
    try:
        for i, (name, run) in enumerate(plan):
            work = root / f"s{i}"
            work.mkdir()
            started = time.monotonic()
            print(f"== {name} ...", flush=True)
            try:
                t = run(work)
            except Exception:
                traceback.print_exc()
                failures.append(f"{name}: crashed (see above; logs in {work})")
                continue
            t.notes["seconds"] = round(time.monotonic() - started)
            print(f"   {t}", flush=True)
            if t.lost or (name in exactly_once and t.duplicated):
                failures.append(f"{name}: lost {t.lost}, duplicated {t.duplicated}")
            bound = t.notes.get("window_bound")
            if bound is not None and t.duplicated > bound:
                failures.append(f"{name}: {t.duplicated} duplicates > bound {bound}")
    finally:
        kinesalite.stop()
    failures += realworld.soak(args.quick)
    print()
    print("| scenario | written | delivered | lost | duplicated | peak RSS | notes |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for t in TALLIES:
        notes = ", ".join(f"{k}={v}" for k, v in t.notes.items() if k != "baseline_rss")
        print(t.row() + f" {notes} |")
    print()
    print(realworld.table())
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
