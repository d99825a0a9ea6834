"""`make bench`: the figures of issues 6 and 12 as one table of medians, each beside its reference.

    .venv/bin/python tests/bench/run_all.py [--runs 3] [--only P1,P7] [--quick] [--workdir DIR]
    .venv/bin/python tests/bench/run_all.py --against /tmp/before [--only P1,P2]

``--against TREE`` runs every scenario on the agent of this checkout and on the agent of TREE (another
checkout, e.g. ``git worktree add /tmp/before <commit>``), in turn, run by run (A B A B), so both
see the same machine; it prints each agent figure's median for both and their ratio. That is how a
restructuring shows it kept the speed: same run, both commits.

Every scenario runs ``--runs`` times from scratch (scenarios.py says what each measures); the
references (syslog-ng file() → file(), rsyslog imfile → omfile, ``wc -l``) are measured in the
same runs on the same files.
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
from scenarios import SCENARIOS, Context, Sizes

Row = tuple[str, str, str, str, str]


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def rows_for(name: str, m: dict[str, float]) -> list[Row]:
    """Table rows of one scenario from its medians: figure, agent, reference, target, met."""

    def row(figure: str, agent: float, ref: str, target: str, ok: bool | None) -> Row:
        return (figure, _fmt(agent), ref, target, "" if ok is None else ("yes" if ok else "NO"))

    if name == "P1":
        # Issue 14: P1 >= 1.0x syslog-ng tuned file() -> file() on the same file, with fewer
        # CPU-seconds than rsyslog; both references and wc -l are from the same run.
        lines, sng, rsl = m["agent lines/s"], m["syslog-ng lines/s"], m["rsyslog lines/s"]
        return [
            row(
                "P1 lines/s",
                lines,
                f"syslog-ng tuned {_fmt(sng)}; rsyslog {_fmt(rsl)}; wc -l {_fmt(m['wc lines/s'])}",
                "",
                None,
            ),
            row(
                "P1 lines/s, agent/syslog-ng tuned",
                lines / sng,
                f"agent/rsyslog {lines / rsl:.2f}",
                ">= 1.00",
                lines / sng >= 1.0,
            ),
            row(
                "P1 MB/s",
                m["agent MB/s"],
                f"syslog-ng tuned {_fmt(m['syslog-ng MB/s'])}; rsyslog {_fmt(m['rsyslog MB/s'])}",
                "",
                None,
            ),
            row(
                "P1 CPU-seconds",
                m["agent CPU-s"],
                f"rsyslog {_fmt(m['rsyslog CPU-s'])}; syslog-ng tuned {_fmt(m['syslog-ng CPU-s'])}",
                "< rsyslog",
                m["agent CPU-s"] < m["rsyslog CPU-s"],
            ),
            row(
                "P1 peak RSS MB",
                m["agent peak RSS MB"],
                f"rsyslog {_fmt(m['rsyslog peak RSS MB'])}; "
                f"syslog-ng tuned {_fmt(m['syslog-ng peak RSS MB'])}",
                "",
                None,
            ),
        ]
    if name == "P2":
        return [
            row(
                f"P2{'b' if kind == 'CSVTOJSON' else ''} {kind} MiB/s",
                m[f"{kind} MiB/s"],
                f"{_fmt(m[f'{kind} CPU-s'])} CPU-s",
                ">= 41",
                m[f"{kind} MiB/s"] >= 41,
            )
            for kind in ("LOGTOJSON", "CSVTOJSON")
        ]
    if name == "P4":
        limit = m["budget MB"] + 50
        return [
            row(
                "P4 RSS, 1 GB backlog, destination refusing (peak MB)",
                m["backlog peak RSS MB"],
                f"budget {_fmt(m['budget MB'])} MB",
                f"<= {_fmt(limit)}",
                m["backlog peak RSS MB"] <= limit,
            )
        ]
    if name == "P6":
        target = m["max age ms"] + 100
        return [
            row("P6 append->readable p50 ms", m["p50 ms"], "10k lines/s", "", None),
            row(
                "P6 append->readable p99 ms",
                m["p99 ms"],
                f"maxBufferAgeMillis {_fmt(m['max age ms'])}",
                f"<= {_fmt(target)}",
                m["p99 ms"] <= target,
            ),
            row(
                "P4 RSS steady MB (tailing 10k lines/s)",
                m["steady RSS MB"],
                "",
                "<= 80",
                m["steady RSS MB"] <= 80,
            ),
        ]
    if name == "P7":
        return [
            row(
                "P7 CPU, 1,000 idle files (% of a core)",
                m["idle CPU %"],
                f"over {_fmt(m['window s'])} s",
                "< 1",
                m["idle CPU %"] < 1,
            )
        ]
    if name == "D1":
        out = []
        counts = sorted({int(k.rsplit("@", 1)[1]) for k in m})
        for n in counts:
            lag = max(m[f"once worst lag ms @{n}"], m[f"daemon worst lag ms @{n}"])
            gap = max(m[f"once watchdog gap s @{n}"], m[f"daemon watchdog gap s @{n}"])
            out += [
                row(
                    f"D1 {n:,} files: worst loop lag ms",
                    lag,
                    f"--once {_fmt(m[f'once s @{n}'])} s, daemon {_fmt(m[f'daemon s @{n}'])} s",
                    "< 100",
                    lag < 100,
                ),
                row(
                    f"D1 {n:,} files: longest watchdog gap s",
                    gap,
                    "WATCHDOG_USEC 2 s",
                    "< 2",
                    gap < 2,
                ),
            ]
            if f"idle CPU % @{n}" in m:
                idle = m[f"idle CPU % @{n}"]
                out.append(
                    row(f"D1 {n:,} files: idle CPU (% of a core)", idle, "10 s", "< 1", idle < 1)
                )
        return out
    if name == "S1":
        boto = (
            f"import botocore.session {_fmt(m['botocore import s'])} s; "
            f"stdlib floor {_fmt(m['stdlib floor ratio'])}x"
        )
        return [
            row(
                f"S1 start-up s, empty {kind} flow ({_fmt(m[f'{kind} ratio'])}x)",
                m[f"{kind} s"],
                boto,
                f"<= {goal}x",
                m[f"{kind} ratio"] <= goal,
            )
            for kind, goal in (("local", 0.4), ("kinesis", 1.2))
        ]
    raise KeyError(name)


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
    try:
        for name in chosen:
            scenario: Callable[[Context], dict[str, float]] = SCENARIOS[name]
            runs = []
            for i in range(args.runs):
                result = scenario(ctx)
                print(
                    f"{name} run {i + 1}: "
                    + ", ".join(f"{k} {_fmt(v)}" for k, v in result.items()),
                    flush=True,
                )
                runs.append(result)
            rows += rows_for(name, medians(runs))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nmedians of {args.runs} runs; {os.cpu_count()} CPUs, Python {platform.python_version()}"
        f"{'; --quick sizes' if args.quick else ''}"
    )
    print(
        table([list(r) for r in rows], ["figure", "agent", "reference (same run)", "target", "met"])
    )
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
                        + ", ".join(f"{k} {_fmt(v)}" for k, v in runs[-1].items()),
                        flush=True,
                    )
            a, b = medians(a_runs), medians(b_runs)
            for key in a:
                if not key.startswith(
                    ("rsyslog", "syslog-ng", "wc ", "window", "budget")
                ):  # references: same file
                    ratio = a[key] / b[key] if b[key] else float("nan")
                    out.append([f"{name} {key}", _fmt(a[key]), _fmt(b[key]), f"{ratio:.3f}"])
    finally:
        os.chdir(cwd)
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nmedians of {args.runs} interleaved runs; A = {here}, B = {other}")
    print(table(out, ["figure", "A (this checkout)", "B (--against)", "A/B"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
