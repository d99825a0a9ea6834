"""`make bench`: the figures of issues 6, 12 and 14 as one table, each goal beside its reference.

    .venv/bin/python tests/bench/run_all.py [--runs 3] [--only P1,P7] [--quick] [--workdir DIR]
    .venv/bin/python tests/bench/run_all.py --against /tmp/before [--only P1,P2]

``--against TREE`` runs every scenario on the agent of this checkout and on the agent of TREE (another
checkout, e.g. ``git worktree add /tmp/before <commit>``), in turn, run by run (A B A B), so both
see the same machine; it prints each agent figure's median (and min-max) for both and the ratio
of the medians. That is how a restructuring shows it kept the speed: same run, both commits.

Every scenario runs ``--runs`` times from scratch (scenarios.py says what each measures); the
references (syslog-ng file() → file(), rsyslog imfile → omfile, ``wc -l``, KinesisSink with KPL
aggregation, ``import botocore.session``) are measured in the same runs on the same files. Each
cell is the median and the spread (min-max) over the runs; a goal that is a ratio is judged on
the runs' own ratios (rows.py).
``--quick`` shrinks files and windows for a smoke run (its figures are not the issue's).
The single-purpose scripts (bench_once.py, bench_store.py, bench_processors.py) run on their own.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table
from rows import HEADER, REFERENCE_PREFIXES, Row, fmt, rows_for, spread
from scenarios import SCENARIOS, Context, Sizes


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="e.g. P1,P7")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workdir", help="keep generated inputs here (default: a temp dir)")
    parser.add_argument(
        "--against", help="another checkout's root: run both agents in turn, print ratios"
    )
    args = parser.parse_args()
    if args.against:
        return compare(args, Path(args.against).resolve())
    chosen = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    sizes = Sizes.quick() if args.quick else Sizes()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ka-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(work, sizes)
    rows: list[Row] = []
    load_before = os.getloadavg()[0]
    try:
        for name in chosen:
            scenario: Callable[[Context], dict[str, float]] = SCENARIOS[name]
            runs = []
            for i in range(args.runs):
                result = scenario(ctx)
                print(
                    f"{name} run {i + 1}: " + ", ".join(f"{k} {fmt(v)}" for k, v in result.items()),
                    flush=True,
                )
                runs.append(result)
            rows += rows_for(name, runs)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nmedian (min-max) of {args.runs} runs; agent/ref: the median (min-max) of the runs' "
        f"ratios; met: judged on the median; {os.cpu_count()} CPUs, load {load_before:.2f} "
        f"before, {os.getloadavg()[0]:.2f} after; Python {platform.python_version()}"
        f"{'; --quick sizes' if args.quick else ''}"
    )
    print(table([list(r) for r in rows], HEADER))
    return 0


def _on_tree(tree: Path) -> None:
    """Make the agent processes a scenario starts import ``agent`` from ``tree`` (and check they do)."""
    os.environ["PYTHONPATH"] = str(tree)
    where = subprocess.run(
        [sys.executable, "-c", "import agent; print(agent.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(tree):
        raise RuntimeError(f"agent imported from {where}, not from {tree}")


def compare(args: argparse.Namespace, other: Path) -> int:
    """A/B of two checkouts' agents, interleaved run by run; agent figures only."""
    if not (other / "agent" / "__init__.py").is_file():
        print(f"--against {other}: no agent/ package there", file=sys.stderr)
        return 2
    here = Path(__file__).resolve().parents[2]
    chosen = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    sizes = Sizes.quick() if args.quick else Sizes()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ka-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(work, sizes)
    saved, cwd = os.environ.get("PYTHONPATH"), os.getcwd()
    os.chdir(work)  # `python -m agent` puts its cwd first on sys.path, before PYTHONPATH
    out: list[list[str]] = []
    try:
        for name in chosen:
            scenario: Callable[[Context], dict[str, float]] = SCENARIOS[name]
            a_runs, b_runs = [], []
            for i in range(args.runs):
                for tree, runs in ((here, a_runs), (other, b_runs)):
                    _on_tree(tree)
                    runs.append(scenario(ctx))
                    print(
                        f"{name} run {i + 1} {tree}: "
                        + ", ".join(f"{k} {fmt(v)}" for k, v in runs[-1].items()),
                        flush=True,
                    )
            a, b = medians(a_runs), medians(b_runs)
            for key in a:
                if not key.startswith(REFERENCE_PREFIXES):  # the same for both agents
                    ratio = a[key] / b[key] if b[key] else float("nan")
                    out.append(
                        [
                            f"{name} {key}",
                            spread([r[key] for r in a_runs]),
                            spread([r[key] for r in b_runs]),
                            f"{ratio:.3f}",
                        ]
                    )
    finally:
        os.chdir(cwd)
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nmedian (min-max) of {args.runs} interleaved runs; A = {here}, B = {other}")
    print(table(out, ["figure", "A (this checkout)", "B (--against)", "A/B"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
