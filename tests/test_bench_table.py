"""`make bench`'s table says what issue 14 says: per-run ratios, medians with spreads, its goals."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


def _load_rows() -> ModuleType:
    # tests/bench is a directory of scripts, not a package: load its table module by path.
    path = Path(__file__).resolve().parent / "bench" / "rows.py"
    spec = importlib.util.spec_from_file_location("bench_rows", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rows = _load_rows()


def by_figure(table: list[tuple[str, ...]], figure: str, ref: str = "") -> tuple[str, ...]:
    """The one row of ``figure`` whose reference starts with ``ref``."""
    found = [r for r in table if r[0] == figure and r[2].startswith(ref)]
    assert len(found) == 1, (figure, ref, table)
    return found[0]


P1_REST = {
    "agent MB/s": 80.0,
    "agent CPU-s": 4.0,
    "agent peak RSS MB": 90.0,
    "rsyslog lines/s": 300_000.0,
    "rsyslog MB/s": 58.0,
    "rsyslog CPU-s": 9.0,
    "rsyslog peak RSS MB": 88.0,
    "syslog-ng MB/s": 90.0,
    "syslog-ng CPU-s": 5.0,
    "syslog-ng peak RSS MB": 20.0,
    "wc lines/s": 40_000_000.0,
}


class TestSpread:
    def test_median_then_min_and_max(self) -> None:
        """A figure is its median, then the lowest and highest run."""
        assert rows.spread([401_000.0, 425_000.0, 417_909.0]) == "417,909 (401,000-425,000)"

    def test_one_run_is_just_its_value(self) -> None:
        """With one run (or runs that agree) there is no spread to show."""
        assert rows.spread([0.4], "x") == "0.40x"


class TestRatioGoals:
    def test_p1_ratio_is_the_median_of_the_runs_own_ratios(self) -> None:
        """Each run's agent is set against the syslog-ng of the same run, not the medians against
        each other: here the median run's ratio is 1.07 (met) though the medians' ratio is 0.71."""
        runs = [
            {**P1_REST, "agent lines/s": a, "syslog-ng lines/s": s}
            for a, s in ((100_000.0, 90_000.0), (300_000.0, 280_000.0), (200_000.0, 400_000.0))
        ]
        row = by_figure(rows.rows_for("P1", runs), "P1 lines/s", "syslog-ng tuned")
        assert row == (
            "P1 lines/s",
            "200,000 (100,000-300,000)",
            "syslog-ng tuned 280,000 (90,000-400,000)",
            "1.07x (0.50-1.11)",
            ">= 1.00x",
            "yes",
        )

    def test_p1_cpu_goal_is_fewer_cpu_seconds_than_rsyslog(self) -> None:
        """Agent/rsyslog CPU-s below 1 in the median run meets it; else NO, and by how much."""
        base = {**P1_REST, "agent lines/s": 1.0, "syslog-ng lines/s": 1.0}
        fewer = [{**base, "agent CPU-s": 4.0, "rsyslog CPU-s": 9.0}] * 3
        more = [{**base, "agent CPU-s": 11.0, "rsyslog CPU-s": 10.0}] * 3
        assert by_figure(rows.rows_for("P1", fewer), "P1 CPU-seconds", "rsyslog")[4:] == (
            "< 1.00x",
            "yes",
        )
        assert by_figure(rows.rows_for("P1", more), "P1 CPU-seconds", "rsyslog")[3:] == (
            "1.10x",
            "< 1.00x",
            "NO, 10% over",
        )

    def test_p2_against_rsyslog_raw_copy_of_the_same_file(self) -> None:
        """LOGTOJSON needs 1.0x rsyslog's raw copy, CSVTOJSON 0.8x; CPU-seconds stay shown."""
        run = {
            "LOGTOJSON MiB/s": 45.0,
            "LOGTOJSON CPU-s": 9.0,
            "rsyslog LOGTOJSON MiB/s": 50.0,
            "rsyslog LOGTOJSON CPU-s": 6.0,
            "CSVTOJSON MiB/s": 40.0,
            "CSVTOJSON CPU-s": 12.0,
            "rsyslog CSVTOJSON MiB/s": 50.0,
            "rsyslog CSVTOJSON CPU-s": 4.0,
        }
        table = rows.rows_for("P2", [run, run])
        log = by_figure(table, "P2 LOGTOJSON MiB/s")
        assert log[1:] == ("45.00", "rsyslog raw copy 50.00", "0.90x", ">= 1.00x", "NO, 10% short")
        csv = by_figure(table, "P2b CSVTOJSON MiB/s")
        assert csv[3:] == ("0.80x", ">= 0.80x", "yes")
        cpu = by_figure(table, "P2b CSVTOJSON CPU-seconds")
        assert cpu[1:4] == ("12.00", "rsyslog raw copy 4.00", "3.00x")

    def test_k1_aggregated_kinesis_within_0_8_of_the_sink_names_its_size(self) -> None:
        """The agent's whole-process rate against the sink with KPL, goal 0.8x; the row says how
        many records a run sent."""
        runs = [
            {
                "records": 500_000.0,
                "agent records/s": agent,
                "agent records/s w/o start-up": agent * 1.1,
                "sink records/s": 289_000.0,
            }
            for agent in (233_000.0, 240_000.0, 220_000.0)
        ]
        row = by_figure(
            rows.rows_for("K1", runs), "K1 aggregated Kinesis records/s (500,000 records)"
        )
        assert row[2:] == (
            "sink + KPL 289,000",
            "0.81x (0.76-0.83)",
            ">= 0.80x",
            "yes",
        )

    def test_s1_uses_each_runs_startup_ratio(self) -> None:
        """bench_startup's ratios are per run already: the table takes their median and spread."""
        runs = [
            {
                "local s": 0.12,
                "kinesis s": 0.33,
                "botocore import s": 0.30,
                "local ratio": local,
                "kinesis ratio": 1.1,
                "stdlib floor ratio": 0.2,
            }
            for local in (0.38, 0.46, 0.5)
        ]
        table = rows.rows_for("S1", runs)
        local = by_figure(table, "S1 start-up s, empty local flow")
        assert local[3:] == ("0.46x (0.38-0.50)", "<= 0.40x", "NO, 15% over")
        assert by_figure(table, "S1 start-up s, empty kinesis flow")[4:] == ("<= 1.20x", "yes")


class TestMemoryGoals:
    @pytest.mark.parametrize(("steady", "met"), [(59.0, "yes"), (61.0, "NO, 2% over")])
    def test_steady_rss_at_most_60_mb(self, steady: float, met: str) -> None:
        """Tailing 10k lines/s, RSS <= 60 MB (issue 14; an older issue allowed 80)."""
        run = {"p50 ms": 20.0, "p99 ms": 50.0, "max age ms": 1000.0, "steady RSS MB": steady}
        row = by_figure(rows.rows_for("P6", [run]), "P4 RSS steady MB (tailing 10k lines/s)")
        assert row[4:] == ("<= 60.00", met)

    @pytest.mark.parametrize(("peak", "met"), [(73.0, "yes"), (75.0, "NO, 2% over")])
    def test_backlog_rss_at_most_budget_plus_40_mb(self, peak: float, met: str) -> None:
        """A 1 GB backlog and a refusing destination: RSS <= the in-flight budget + 40 MB."""
        run = {"backlog peak RSS MB": peak, "backlog RSS MB": peak, "budget MB": 33.55}
        row = by_figure(
            rows.rows_for("P4", [run]), "P4 RSS, 1 GB backlog, destination refusing (peak MB)"
        )
        assert row[4:] == ("<= 73.55", met)


def test_every_row_has_every_column() -> None:
    """Rows of every kind fit the header (the table printer zips them strictly)."""
    run = {
        "idle CPU %": 0.5,
        "window s": 60.0,
    }
    for row in rows.rows_for("P7", [run, run]):
        assert len(row) == len(rows.HEADER)
