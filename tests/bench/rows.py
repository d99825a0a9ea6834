"""The rows of `make bench`'s table: every goal of issue 14 beside its reference from the same run.

A scenario returns one dict of figures per run; ``rows_for`` turns a scenario's runs into rows of
figure, agent, reference, agent/reference, target, met. Every figure shows its median and its
spread over the runs, ``417,909 (401,000-425,000)``: on a shared two-core machine one run's number
says little without the others. A ratio goal (P1 against syslog-ng, P2 against rsyslog's raw copy,
K1 against the sink alone, S1 against botocore's import) is computed per run, each run's agent
against the reference measured beside it, and the table gives the median and the spread of those
per-run ratios; ``met`` judges the median and, when a goal is missed, says by how much.

Only the standard library here, so the table's logic is unit-tested (tests/test_bench_table.py)
without the benchmarks' peers.
"""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable, Mapping, Sequence

Row = tuple[str, str, str, str, str, str]
HEADER = ["figure", "agent", "reference (same run)", "agent/ref", "target", "met"]

# Keys of a scenario's dict that are not the agent's own figures: references measured beside it
# and fixed parameters. ``--against`` compares only the rest.
REFERENCE_PREFIXES = (
    "rsyslog",
    "syslog-ng",
    "wc ",
    "window",
    "budget",
    "sink",
    "records",
    "botocore",
    "stdlib",
)

Measure = Mapping[str, float]
_TESTS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


def fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def spread(values: Sequence[float], unit: str = "") -> str:
    """``median (min-max)``; just the value when the runs agree (or there is one run)."""
    med, low, high = statistics.median(values), min(values), max(values)
    if fmt(low) == fmt(high):
        return f"{fmt(med)}{unit}"
    return f"{fmt(med)}{unit} ({fmt(low)}-{fmt(high)})"


def verdict(value: float, test: str, goal: float) -> str:
    """``yes``, or ``NO`` and how far the median is from the goal."""
    if _TESTS[test](value, goal):
        return "yes"
    if test == ">=":
        return f"NO, {1 - value / goal:.0%} short"
    return f"NO, {value / goal - 1:.0%} over"


class Runs:
    """One scenario's figures, one dict per run."""

    def __init__(self, runs: Sequence[Measure]) -> None:
        if not runs:
            raise ValueError("no runs")
        self.runs = runs

    def each(self, key: str | Callable[[Measure], float]) -> list[float]:
        """The figure (a key, or a function of one run's dict) in every run."""
        return [r[key] if isinstance(key, str) else key(r) for r in self.runs]

    def median(self, key: str | Callable[[Measure], float]) -> float:
        return statistics.median(self.each(key))

    def cell(self, key: str | Callable[[Measure], float], unit: str = "") -> str:
        return spread(self.each(key), unit)

    def ratios(self, agent: str, ref: str) -> list[float]:
        """agent/ref in each run: both measured on the same machine at the same time."""
        return [r[agent] / r[ref] for r in self.runs]


def _row(
    figure: str, agent: str, ref: str = "", ratio: str = "", target: str = "", met: str = ""
) -> Row:
    return (figure, agent, ref, ratio, target, met)


def _ratio_row(
    m: Runs,
    figure: str,
    agent: str,
    ref_name: str,
    ref: str,
    goal: tuple[str, float] | None = None,
    ratios: list[float] | None = None,
) -> Row:
    """A row of the agent's figure against one reference, with the per-run ratio and its goal."""
    per_run = ratios if ratios is not None else m.ratios(agent, ref)
    target = met = ""
    if goal is not None:
        test, bound = goal
        target = f"{test} {bound:.2f}x"
        met = verdict(statistics.median(per_run), test, bound)
    return _row(
        figure, m.cell(agent), f"{ref_name} {m.cell(ref)}", spread(per_run, "x"), target, met
    )


def _limit_row(figure: str, m: Runs, key: str, ref: str, test: str, limit: float) -> Row:
    """A row of an absolute goal (memory, latency, CPU %): the median against the limit."""
    return _row(
        figure, m.cell(key), ref, "", f"{test} {fmt(limit)}", verdict(m.median(key), test, limit)
    )


def _p1(m: Runs) -> list[Row]:
    # Issue 14: P1 >= 1.0x syslog-ng tuned file() -> file() on the same file, with fewer
    # CPU-seconds than rsyslog; both references and wc -l are from the same run.
    return [
        _ratio_row(
            m, "P1 lines/s", "agent lines/s", "syslog-ng tuned", "syslog-ng lines/s", (">=", 1.0)
        ),
        _ratio_row(m, "P1 lines/s", "agent lines/s", "rsyslog", "rsyslog lines/s"),
        _row("P1 lines/s, the disk's floor", "", f"wc -l {m.cell('wc lines/s')}"),
        _ratio_row(m, "P1 CPU-seconds", "agent CPU-s", "rsyslog", "rsyslog CPU-s", ("<", 1.0)),
        _ratio_row(m, "P1 CPU-seconds", "agent CPU-s", "syslog-ng tuned", "syslog-ng CPU-s"),
        # MB/s against syslog-ng: the same file, so the same ratio as lines/s
        _row("P1 MB/s", m.cell("agent MB/s"), f"syslog-ng tuned {m.cell('syslog-ng MB/s')}"),
        _ratio_row(
            m, "P1 peak RSS MB", "agent peak RSS MB", "syslog-ng tuned", "syslog-ng peak RSS MB"
        ),
        _ratio_row(m, "P1 peak RSS MB", "agent peak RSS MB", "rsyslog", "rsyslog peak RSS MB"),
    ]


def _p2(m: Runs) -> list[Row]:
    # Issue 14: LOGTOJSON >= 1.0x and CSVTOJSON >= 0.8x rsyslog's raw copy (imfile -> omfile, no
    # parsing) of the very file each one processes, measured in the same run.
    out = []
    for kind, name, goal in (("LOGTOJSON", "P2", 1.0), ("CSVTOJSON", "P2b", 0.8)):
        copy = "rsyslog raw copy"
        out += [
            _ratio_row(
                m,
                f"{name} {kind} MiB/s",
                f"{kind} MiB/s",
                copy,
                f"rsyslog {kind} MiB/s",
                (">=", goal),
            ),
            _ratio_row(
                m, f"{name} {kind} CPU-seconds", f"{kind} CPU-s", copy, f"rsyslog {kind} CPU-s"
            ),
        ]
    return out


def _k1(m: Runs) -> list[Row]:
    # Issue 14: the agent with aggregateRecords within 0.8x of KinesisSink + KPL aggregation alone,
    # each on a fresh kinesalite; the agent's rate counts its whole process, start-up included.
    records = f"{m.median('records'):,.0f} records"
    return [
        _ratio_row(
            m,
            f"K1 aggregated Kinesis records/s ({records})",
            "agent records/s",
            "sink + KPL",
            "sink records/s",
            (">=", 0.8),
        ),
        _ratio_row(
            m,
            "K1 the same, agent without its start-up",
            "agent records/s w/o start-up",
            "sink + KPL",
            "sink records/s",
        ),
    ]


def _s1(m: Runs) -> list[Row]:
    # bench_startup's ratios are already per run (the median of its rounds' ratios).
    floor = m.cell("stdlib floor ratio", "x")
    return [
        _ratio_row(
            m,
            f"S1 start-up s, empty {kind} flow",
            f"{kind} s",
            "import botocore.session",
            "botocore import s",
            ("<=", goal),
            m.each(f"{kind} ratio"),
        )
        for kind, goal in (("local", 0.4), ("kinesis", 1.2))
    ] + [_row("S1 stdlib imports alone (the floor)", "", "", floor)]


def _d1(m: Runs) -> list[Row]:
    out = []
    counts = sorted({int(k.rsplit("@", 1)[1]) for k in m.runs[0]})
    for n in counts:
        lag = m.each(
            lambda r, n=n: max(r[f"once worst lag ms @{n}"], r[f"daemon worst lag ms @{n}"])
        )
        gap = m.each(
            lambda r, n=n: max(r[f"once watchdog gap s @{n}"], r[f"daemon watchdog gap s @{n}"])
        )
        out += [
            _row(
                f"D1 {n:,} files: worst loop lag ms",
                spread(lag),
                f"--once {m.cell(f'once s @{n}')} s, daemon {m.cell(f'daemon s @{n}')} s",
                "",
                "< 100",
                verdict(statistics.median(lag), "<", 100),
            ),
            _row(
                f"D1 {n:,} files: longest watchdog gap s",
                spread(gap),
                "WATCHDOG_USEC 2 s",
                "",
                "< 2",
                verdict(statistics.median(gap), "<", 2),
            ),
        ]
        if f"idle CPU % @{n}" in m.runs[0]:
            out.append(
                _limit_row(
                    f"D1 {n:,} files: idle CPU (% of a core)", m, f"idle CPU % @{n}", "10 s", "<", 1
                )
            )
    return out


def _p4(m: Runs) -> list[Row]:
    # Issue 14: with a refusing destination and a 1 GB backlog, RSS <= budget + 40 MB.
    return [
        _limit_row(
            "P4 RSS, 1 GB backlog, destination refusing (peak MB)",
            m,
            "backlog peak RSS MB",
            f"budget {m.cell('budget MB')} MB",
            "<=",
            m.median("budget MB") + 40,
        )
    ]


def _p6(m: Runs) -> list[Row]:
    return [
        _row("P6 append->readable p50 ms", m.cell("p50 ms"), "10k lines/s"),
        _limit_row(
            "P6 append->readable p99 ms",
            m,
            "p99 ms",
            f"maxBufferAgeMillis {m.cell('max age ms')}",
            "<=",
            m.median("max age ms") + 100,
        ),
        # Issue 14: steady RSS <= 60 MB tailing 10k lines/s.
        _limit_row("P4 RSS steady MB (tailing 10k lines/s)", m, "steady RSS MB", "", "<=", 60),
    ]


def _p7(m: Runs) -> list[Row]:
    return [
        _limit_row(
            "P7 CPU, 1,000 idle files (% of a core)",
            m,
            "idle CPU %",
            f"over {m.cell('window s')} s",
            "<",
            1,
        )
    ]


ROWS: dict[str, Callable[[Runs], list[Row]]] = {
    "P1": _p1,
    "P2": _p2,
    "K1": _k1,
    "P4": _p4,
    "P6": _p6,
    "P7": _p7,
    "D1": _d1,
    "S1": _s1,
}


def rows_for(name: str, runs: Sequence[Measure]) -> list[Row]:
    """The table rows of one scenario from its runs' dicts (one per run)."""
    return ROWS[name](Runs(runs))
