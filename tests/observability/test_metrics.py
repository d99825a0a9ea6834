"""Counters, statistic sets, lag ages, rates and the AWS progress lines."""

from __future__ import annotations

import logging

import pytest

from agent.observability import progress
from agent.observability.metrics import (
    LAG_MARKS,
    AgentMetrics,
    FileMetrics,
    FlowMetrics,
    RateMeter,
    StatSet,
)

MIB = 1024 * 1024


class TestStatSet:
    def test_add_and_merge(self) -> None:
        """Count, sum, min and max over values, and over two sets merged."""
        a, b = StatSet(), StatSet()
        for v in (5, 1, 9):
            a.add(v)
        b.add(20)
        a.merge(b)
        a.merge(StatSet())
        assert (a.count, a.sum, a.min, a.max) == (4, 35, 1, 20)


class TestSendCall:
    def test_counters_and_per_call_sets(self) -> None:
        """Each call adds to the counters and one value per AWS metric to the sets."""
        m = FlowMetrics("f", "KinesisStream:s")
        m.send_call(attempted=500, sent=497, sent_bytes=4970, failed=3, service_error=False)
        m.send_call(attempted=3, sent=0, sent_bytes=0, failed=3, service_error=True)
        assert (m.send_calls, m.record_send_attempts, m.records_sent) == (2, 503, 497)
        assert (m.bytes_sent, m.record_send_errors, m.service_errors) == (4970, 6, 1)
        stats = m.take_send_stats()
        assert stats["RecordSendAttempts"] == StatSet(2, 503, 3, 500)
        assert stats["RecordsSent"] == StatSet(2, 497, 0, 497)
        assert stats["RecordSendErrors"] == StatSet(2, 6, 3, 3)
        assert stats["BytesSent"] == StatSet(2, 4970, 0, 4970)
        assert stats["ServiceErrors"] == StatSet(2, 1, 0, 1)
        assert m.take_send_stats() == {}


class TestFileLag:
    def test_lag_ages_from_when_the_unacknowledged_bytes_appeared(self) -> None:
        """Lag seconds date the oldest unacknowledged byte; acknowledging moves to the next mark."""
        f = FileMetrics("/a", "id", size=0)
        f.observe_size(100, now=10.0)
        f.observe_size(300, now=20.0)
        assert f.lag_bytes == 300
        assert f.lag_seconds(now=25.0) == 15.0
        f.checkpoint_advanced(100, wall=1.0)
        assert f.lag_seconds(now=25.0) == 5.0
        f.checkpoint_advanced(300, wall=2.0)
        assert f.lag_bytes == 0 and f.lag_seconds(now=99.0) == 0.0

    def test_marks_stay_bounded_and_err_old(self) -> None:
        """A file growing forever keeps at most LAG_MARKS marks; new growth takes the last one's age."""
        f = FileMetrics("/a", "id")
        for i in range(1, 1000):
            f.observe_size(i, now=float(i))
        assert len(f.marks) == LAG_MARKS
        f.checkpoint_advanced(998, wall=0.0)
        assert f.lag_seconds(now=1000.0) == 1000.0 - LAG_MARKS

    def test_truncation_restarts_the_clock(self) -> None:
        """A truncated file forgets the ages of bytes that no longer exist."""
        f = FileMetrics("/a", "id")
        f.observe_size(500, now=1.0)
        f.observe_size(10, now=50.0)
        assert f.lag_seconds(now=60.0) == 10.0

    def test_file_opened_behind_starts_its_clock(self) -> None:
        """A file found with unread bytes is behind from the moment it is opened."""
        f = FileMetrics("/a", "id", size=1000, checkpoint_offset=200)
        assert f.lag_bytes == 800 and len(f.marks) == 1


class TestRateMeter:
    def test_window_and_peak(self) -> None:
        """Average over the last window, and the busiest interval between samples."""
        metrics = AgentMetrics()
        m = metrics.flow("f", "KinesisStream:s")
        meter = RateMeter(metrics)
        for t, sent in enumerate((0, 100, 300, 300, 400)):
            m.records_sent = sent
            m.bytes_sent = sent * 10
            meter.sample(now=float(t))
        assert meter.rates("f", window=2.0)["records_sent"] == 50.0
        assert meter.rates("f", window=10.0)["records_sent"] == 100.0
        assert meter.peak("f")["records_sent"] == 200.0
        assert meter.peak("f")["bytes_sent"] == 2000.0
        assert meter.rates("unknown")["records_sent"] == 0.0


def _agent(lag_files: list[int]) -> AgentMetrics:
    metrics = AgentMetrics()
    m = metrics.flow("kinesis:s:/var/log/app.log", "KinesisStream:s")
    m.records_parsed, m.bytes_parsed, m.records_processed = 10, 1000, 9
    m.records_skipped, m.records_sent = 1, 8
    for i, lag in enumerate(lag_files):
        m.files[str(i)] = FileMetrics(f"/var/log/app.log.{i}", str(i), size=lag)
    return metrics


class TestProgressLines:
    def test_overall_progress(self) -> None:
        """The AWS agent's progress line, word for word."""
        line = progress.progress_line(_agent([]))
        assert line.startswith(
            "Agent: Progress: 10 records parsed (1000 bytes), and 8 records sent successfully "
            "to destinations. Uptime: "
        )
        assert line.endswith("ms")

    def test_tailer_progress(self) -> None:
        """FileTailer[flow]: Tailer Progress: … as AWS prints it."""
        m = _agent([]).flows["kinesis:s:/var/log/app.log"]
        assert progress.tailer_progress_line(m) == (
            "FileTailer[kinesis:s:/var/log/app.log]: Tailer Progress: Tailer has parsed 10 "
            "records (1000 bytes), transformed 9 records, skipped 1 records, and has "
            "successfully sent 8 records to destination."
        )

    def test_behind_lines_with_newer_files(self) -> None:
        """MB with %f's six decimals, bytes, and the count of further files behind."""
        metrics = _agent([170_590_000, 5])
        assert progress.agent_behind_line(metrics) == (
            "Agent: Tailing is 162.687306 MB (170590005 bytes) behind. There are 1 file(s) "
            "newer than current file(s) being tailed."
        )
        m = metrics.flows["kinesis:s:/var/log/app.log"]
        assert progress.tailer_behind_line(m).startswith(
            "FileTailer[kinesis:s:/var/log/app.log]: Tailer is 162.687306 MB"
        )

    @pytest.mark.parametrize(
        ("lag", "level"),
        [(0, logging.DEBUG), (20 * MIB, logging.INFO), (40 * MIB, logging.WARNING)],
    )
    def test_behind_levels(self, lag: int, level: int) -> None:
        """WARN from 40 MiB, INFO from 20 MiB, DEBUG below, as the AWS agent."""
        assert progress.behind_level(lag) == level

    def test_report_logs_per_file_lag(self, caplog: pytest.LogCaptureFixture) -> None:
        """A round of progress logs every line, including the file that is behind."""
        caplog.set_level(logging.DEBUG, logger="agent.observability.progress")
        progress.report(_agent([25 * MIB]))
        text = caplog.text
        assert "Agent: Progress:" in text
        assert "Tailer Progress:" in text
        assert "/var/log/app.log.0 is 26214400 bytes behind" in text
        warn_or_info = [r for r in caplog.records if "Tailing is" in r.getMessage()]
        assert warn_or_info[0].levelno == logging.INFO


class TestForgetFinishedFiles:
    def test_only_rotated_acknowledged_and_idle_files_go(self) -> None:
        """A drained rotated file leaves after the idle time; live or lagging ones stay."""
        metrics = AgentMetrics()
        m = metrics.flow("f", "LocalStream:s")
        m.files["done"] = FileMetrics("/a.1", "done", size=10, checkpoint_offset=10, rotated=True)
        m.files["done"].checkpoint_updated = 100.0
        m.files["lagging"] = FileMetrics("/a.2", "lagging", size=10, rotated=True)
        m.files["live"] = FileMetrics("/a", "live", size=10, checkpoint_offset=10)
        assert metrics.forget_finished_files(now_wall=200.0, idle=300.0) == 0
        assert metrics.forget_finished_files(now_wall=400.0, idle=300.0) == 1
        assert set(m.files) == {"lagging", "live"}


class TestProgressOffTheLoop:
    def test_files_are_summed_in_a_worker_thread_with_the_same_lines(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The periodic report's pass over every file (100,000 of them held the event loop for
        ~270 ms) runs in a worker thread; the lines are those ``report`` logs."""
        import asyncio
        import threading

        metrics = _agent([25 * MIB, 0, 3 * MIB])
        threads: list[str] = []
        real = progress.flow_lag

        def spy(files: list[FileMetrics]) -> progress.FlowLag:
            threads.append(threading.current_thread().name)
            return real(files)

        caplog.set_level(logging.DEBUG, logger="agent.observability.progress")
        progress.report(metrics)
        expected = [r.getMessage() for r in caplog.records if "Uptime" not in r.getMessage()]
        caplog.clear()
        monkeypatch.setattr(progress, "flow_lag", spy)

        async def one_round() -> None:
            task = asyncio.create_task(progress.run(metrics, 0.01))
            while not any("Uptime" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.01)
            task.cancel()

        asyncio.run(asyncio.wait_for(one_round(), 10))
        assert threads and all(name != threading.main_thread().name for name in threads)
        got = [r.getMessage() for r in caplog.records if "Uptime" not in r.getMessage()]
        assert got[: len(expected)] == expected
