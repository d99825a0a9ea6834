"""The processor worker process: results in order, counters and logs carried back, death survived."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from agent.pipeline.processing import MAX_WORKERS, worker_count
from agent.processors import build_chain
from agent.processors.worker import ChainWorker, WorkerFailed, decode_results, encode_request
from tests.tailing.harness import FlowHarness, fast_flow

LOGTOJSON = {"optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG"}


def access_line(i: int) -> bytes:
    return f'10.0.0.{i % 250} - - [22/Nov/2026:10:00:00 +0000] "GET /item/{i} HTTP/1.1" 200 {i}\n'.encode()


def lines_with_garbage(count: int) -> list[bytes]:
    """Access lines where every 7th line matches no format (LOGTOJSON skips it)."""
    return [b"garbage %d\n" % i if i % 7 == 3 else access_line(i) for i in range(count)]


async def with_worker(options: list[dict[str, object]], body):  # type: ignore[no-untyped-def]
    worker = await ChainWorker.start(options, "dataProcessingOptions")
    try:
        return await body(worker)
    finally:
        await worker.aclose()


def logtojson_harness(logs: Path, workers: bool | int | None = None) -> FlowHarness:
    """A flow over ``logs/*.log`` with LOGTOJSON, so the processor worker is in play."""
    return FlowHarness(
        logs.parent,
        fast_flow(str(logs / "*.log"), data_processing_options=(LOGTOJSON,)),
        processor_worker=workers,
    )


class TestWireFormat:
    def test_round_trip_keeps_skips_and_order(self) -> None:
        """Output lengths of -1 come back as None, in place; every other output is sliced out."""
        import struct
        from array import array

        outputs = [b"a\n", None, b"", b"bcd\n"]
        body = array("q", [-1 if o is None else len(o) for o in outputs]).tobytes()
        body += b"".join(o for o in outputs if o is not None) + b'{"m":1}'
        results, at = decode_results(len(outputs), body)
        assert results == outputs
        assert body[at:] == b'{"m":1}'
        request = encode_request([b"x\n", b"", b"yz\n"])
        assert struct.unpack("<II", request[:8]) == (3, 5)


class TestChainWorker:
    def test_results_match_the_chain_in_this_process(self) -> None:
        """The worker's output is byte for byte what the chain gives here, chunk after chunk."""
        chunks = [lines_with_garbage(50)[i : i + 10] for i in range(0, 50, 10)]
        local = build_chain([LOGTOJSON])

        async def body(worker: ChainWorker) -> list[list[bytes | None]]:
            futures = [worker.submit(c) for c in chunks]  # all in flight at once
            return [(await f).results for f in futures]

        got = asyncio.run(with_worker([LOGTOJSON], body))
        assert got == [local.process_many(c) for c in chunks]

    def test_counters_and_logs_come_back_with_the_chunk(self) -> None:
        """Skips are counted per chunk and the worker's warnings are returned to be logged."""

        async def body(worker: ChainWorker):  # type: ignore[no-untyped-def]
            return await worker.submit(lines_with_garbage(14))

        processed = asyncio.run(with_worker([LOGTOJSON], body))
        assert processed.skipped == 2 and processed.errors == 0
        assert processed.results.count(None) == 2
        assert any("does not match" in message for _, _, message in processed.logs)

    def test_a_killed_worker_fails_what_it_holds_with_a_clear_reason(self) -> None:
        """Waiting chunks fail with WorkerFailed naming the signal; later submits fail at once."""

        async def body(worker: ChainWorker) -> None:
            await worker.submit([access_line(1)])  # up and running
            os.kill(worker.pid, signal.SIGKILL)
            pending = worker.submit([access_line(2)])
            with pytest.raises(WorkerFailed, match="killed by signal 9"):
                await pending
            with pytest.raises(WorkerFailed):
                await worker.submit([access_line(3)])

        asyncio.run(with_worker([LOGTOJSON], body))

    def test_the_worker_ignores_sigterm_and_exits_when_its_input_closes(self) -> None:
        """systemd's SIGTERM to the group must not kill it mid-drain; closing stdin ends it."""

        async def body(worker: ChainWorker) -> int | None:
            await worker.submit([access_line(0)])  # started: its signal dispositions are set
            os.kill(worker.pid, signal.SIGTERM)
            processed = await worker.submit([access_line(1)])
            assert processed.results[0] is not None
            await worker.aclose()
            return worker.proc.returncode

        assert asyncio.run(with_worker([LOGTOJSON], body)) == 0


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d


def expected(lines: list[bytes]) -> list[bytes]:
    chain = build_chain([LOGTOJSON])
    return [out for out in chain.process_many(lines) if out is not None]


class TestFlowWithWorker:
    def test_delivers_in_order_and_counts_skips(self, logs: Path) -> None:
        """Through the worker, records arrive in file order; skipped ones are counted and acked."""
        lines = lines_with_garbage(20_000)
        (logs / "app.log").write_bytes(b"".join(lines))
        h = logtojson_harness(logs)
        try:
            h.start()
            assert h.flow is not None and h.flow.processing.use_worker
            want = expected(lines)
            assert h.wait_until(lambda: len(h.memory.records) >= len(want))
            assert h.memory.records == want
            metrics = h.flow.metrics
            assert metrics.records_skipped == len(lines) - len(want)
            assert metrics.records_processed == len(want)
            assert metrics.processor_worker_failures == 0
            acks = next(iter(h.flow.files.files.values())).acks  # type: ignore[union-attr]
            assert h.wait_until(lambda: acks.checkpoint == sum(map(len, lines)))
        finally:
            h.close()

    def test_worker_killed_mid_run_loses_and_duplicates_nothing(
        self, logs: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Chunks the dead worker held are processed in the agent; a new worker takes over."""
        lines = lines_with_garbage(100_000)
        (logs / "app.log").write_bytes(b"".join(lines))
        h = logtojson_harness(logs)
        try:
            with caplog.at_level(logging.ERROR, logger="agent.pipeline.processing"):
                flow = h.start_flow()
                assert h.wait_until(
                    lambda: flow.processing.worker is not None and bool(flow.processing.chunks)
                )
                first = flow.processing.worker
                assert first is not None
                os.kill(first.pid, signal.SIGKILL)
                want = expected(lines)
                assert h.wait_until(lambda: len(h.memory.records) >= len(want), timeout=30)
                h.run_for(0.1)
            assert h.memory.records == want  # every record once, in file order
            assert flow.metrics.processor_worker_failures == 1
            assert flow.metrics.records_skipped == len(lines) - len(want)
            assert (
                flow.processing.worker is not None and flow.processing.worker is not first
            )  # restarted
            assert any("killed by signal 9" in r.getMessage() for r in caplog.records)
            assert any("nothing is lost" in r.getMessage() for r in caplog.records)
        finally:
            h.close()

    def test_checkpoint_stays_behind_records_at_the_worker(self, logs: Path) -> None:
        """A record sent to the worker is registered with its file: no checkpoint passes it."""
        lines = [access_line(i) for i in range(1000)]
        (logs / "app.log").write_bytes(b"".join(lines))
        h = logtojson_harness(logs)
        try:
            flow = h.start_flow()
            assert h.wait_until(lambda: len(h.memory.records) == 1000)
            acks = next(iter(flow.files.files.values())).acks  # type: ignore[union-attr]
            assert acks.checkpoint == sum(map(len, lines))
            # now hold the worker still: what it holds must keep the checkpoint down
            worker = flow.processing.worker
            assert worker is not None
            os.kill(worker.pid, signal.SIGSTOP)
            try:
                more = [access_line(i) for i in range(1000, 1100)]
                with (logs / "app.log").open("ab") as fh:
                    fh.write(b"".join(more))
                assert h.wait_until(lambda: bool(flow.processing.chunks))
                h.run_for(0.3)
                assert acks.checkpoint == sum(map(len, lines))
                assert sum(len(s) for s in acks.pending) == len(more)  # records held
            finally:
                os.kill(worker.pid, signal.SIGCONT)
            assert h.wait_until(lambda: len(h.memory.records) == 1100)
            assert h.wait_until(lambda: acks.checkpoint == sum(map(len, lines + more)))
        finally:
            h.close()

    def test_a_wedged_worker_is_replaced_and_its_chunks_redone(
        self, logs: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A worker that stops answering (SIGSTOP here) past the timeout is killed and replaced;
        the chunks it held are processed in the agent, every record once, in order."""
        lines = [access_line(i) for i in range(300)]
        h = logtojson_harness(logs)
        try:
            with caplog.at_level(logging.ERROR, logger="agent.pipeline.processing"):
                flow = h.start_flow()
                flow.processing.worker_timeout = 0.5
                assert h.wait_until(lambda: flow.processing.worker is not None)
                wedged = flow.processing.worker
                assert wedged is not None
                os.kill(wedged.pid, signal.SIGSTOP)
                (logs / "app.log").write_bytes(b"".join(lines))
                want = expected(lines)
                assert h.wait_until(lambda: len(h.memory.records) >= len(want), timeout=30)
                h.run_for(0.1)
            assert h.memory.records == want
            assert flow.metrics.processor_worker_failures == 1
            assert flow.processing.worker is not None and flow.processing.worker is not wedged
            assert wedged.proc.returncode is not None  # killed, not left stopped
            assert any("did not answer within 0.5 s" in r.getMessage() for r in caplog.records)
        finally:
            h.close()


def test_meta_is_json() -> None:
    """The counters travel as JSON (orjson both ends)."""
    assert orjson.loads(orjson.dumps({"skipped": 1})) == {"skipped": 1}


# A parent that is the agent's own parent side (ChainWorker), floods its worker with chunks and
# dies by SIGKILL without reading an answer: the worker then writes into a pipe nobody reads.
_DYING_PARENT = r"""
import asyncio, os, signal, sys
from agent.processors.worker import ChainWorker

async def main():
    worker = await ChainWorker.start([{"optionName": "ADDBRACKETS"}], "dataProcessingOptions")
    for _ in range(200):
        worker.submit([b"x" * 1000 + b"\n"] * 100)
    await asyncio.sleep(0.05)  # the first chunks are at the worker
    print(worker.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_worker_exits_quietly_when_its_parent_is_killed(tmp_path: Path) -> None:
    """After kill -9 of the agent the worker's answers hit a closed pipe: it exits, with no
    BrokenPipeError traceback on the terminal or in the journal."""
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as err:
        parent = subprocess.run(
            [sys.executable, "-c", _DYING_PARENT],
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=60,
            env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        )
    assert parent.returncode == -signal.SIGKILL
    worker_pid = int(parent.stdout)
    deadline = time.monotonic() + 20
    while not _gone(worker_pid):
        assert time.monotonic() < deadline, "the orphaned worker did not exit"
        time.sleep(0.05)
    assert stderr.read_text() == ""


class TestSeveralWorkers:
    def test_one_worker_per_core_beyond_the_agents_own(self) -> None:
        """Two cores: one worker (as before); more cores: more workers, up to MAX_WORKERS; none
        on one core or with processing.workerProcess false."""
        assert [worker_count(True, cpus) for cpus in (1, 2, 3, 4, 64)] == [0, 1, 2, 3, MAX_WORKERS]
        assert worker_count(False, 8) == 0

    def test_reads_go_to_every_worker_and_arrive_in_file_order(self, logs: Path) -> None:
        """Three workers take the reads in turn; the records arrive once each, in file order,
        and the file is acknowledged to its end."""
        lines = lines_with_garbage(60_000)
        (logs / "app.log").write_bytes(b"".join(lines))
        h = logtojson_harness(logs, workers=3)
        try:
            flow = h.start_flow()
            assert len(flow.processing.workers) == 3
            used: set[int] = set()
            want = expected(lines)

            def progressed() -> bool:
                used.update(c.worker.pid for c in flow.processing.chunks if c.worker is not None)
                return len(h.memory.records) >= len(want)

            assert h.wait_until(progressed, timeout=30)
            assert h.memory.records == want
            assert len(used) >= 2  # more than one worker was given reads
            acks = next(iter(flow.files.files.values())).acks  # type: ignore[union-attr]
            assert h.wait_until(lambda: acks.checkpoint == sum(map(len, lines)))
        finally:
            h.close()

    def test_one_of_several_workers_killed_loses_and_duplicates_nothing(
        self, logs: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The chunks the dead one held are processed in the agent, the others' results still
        come back in read order, and a new worker takes the dead one's place."""
        lines = lines_with_garbage(100_000)
        (logs / "app.log").write_bytes(b"".join(lines))
        h = logtojson_harness(logs, workers=2)
        try:
            with caplog.at_level(logging.ERROR, logger="agent.pipeline.processing"):
                flow = h.start_flow()
                assert h.wait_until(
                    lambda: any(
                        c.worker is flow.processing.workers[1] for c in flow.processing.chunks
                    )
                )
                victim = flow.processing.workers[1]
                os.kill(victim.pid, signal.SIGKILL)
                want = expected(lines)
                assert h.wait_until(lambda: len(h.memory.records) >= len(want), timeout=30)
                h.run_for(0.1)
            assert h.memory.records == want  # every record once, in file order
            assert flow.metrics.processor_worker_failures == 1
            assert len(flow.processing.workers) == 2 and victim not in flow.processing.workers
        finally:
            h.close()
