"""One flow wired end to end: files → framing → processors → batches → sink → checkpoints.

Two tasks per flow: the reader (scans, reads, frames, processes, queues) and the sender (cuts
batches, sends them one at a time in order, acknowledges, persists checkpoints). Memory is bounded
in bytes: when ``maxInFlightBytes`` of records (their data plus a per-record overhead) are queued
or in flight the reader stops reading and the backlog stays in the files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from agent.checkpoints import CheckpointDB
from agent.config import AgentConfig, FlowConfig
from agent.observability.metrics import FlowMetrics
from agent.pipeline.batching import Batcher
from agent.processors import build_chain
from agent.processors.worker import ChainWorker, Processed, WorkerFailed
from agent.records import Checkpoint, Record
from agent.service import gcpolicy
from agent.sinks import SendResult, Sink
from agent.sinks.retry import Backoff
from agent.tailing.discovery import Watcher
from agent.tailing.framing import Framed
from agent.tailing.tailer import FileAcks, TrackedFile, Truncated
from agent.tailing.tracker import FileSet, Flushed

log = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024
# A read pass over many files gives the event loop a turn at least this often (seconds).
PASS_SLICE = 0.02
CHECKPOINT_INTERVAL = 1.0
IDLE_POLL_WITH_INOTIFY = 1.0
# With inotify, every file is fstat'ed this often (a safety net for missed events); between, only
# the files events name. Keeps a thousand idle files from costing a thousand fstats a second.
STAT_ALL_WITH_INOTIFY = 10.0
# A transactional sink (the embedded store) commits every batch that is ready in one transaction,
# up to these limits: the 500-record cap is Kinesis's API limit, and a commit has a fixed cost.
GROUP_COMMIT_RECORDS = 50_000
GROUP_COMMIT_BYTES = 4 * 1024 * 1024
# What a queued record costs in memory beyond its data (the Record, the bytes object's header,
# its places in the queues); charged against maxInFlightBytes so the budget bounds memory.
RECORD_OVERHEAD = 160
# Chunks (reads of up to READ_CHUNK) at the processor worker at once: enough to keep it busy
# while the reader frames the next one, few enough to keep the memory and latency small.
WORKER_CHUNKS = 4
# A worker that dies this many times leaves processing to the agent's own process for good.
WORKER_RESTARTS = 3
# A chunk takes the worker milliseconds; one unanswered this long means the worker is wedged.
WORKER_TIMEOUT = 30.0


@dataclass(slots=True)
class _Chunk:
    """Records of one read, registered with their file, waiting for the processor worker."""

    acks: FileAcks
    records: list[Record]
    raw_size: int
    worker: ChainWorker | None
    future: asyncio.Future[Processed] | None


class Flow:
    """Runs one flow until told to stop (or, with ``once``, until every file is shipped to its end)."""

    def __init__(
        self,
        agent: AgentConfig,
        config: FlowConfig,
        sink: Sink,
        metrics: FlowMetrics,
        checkpoint_db: CheckpointDB | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        processor_worker: bool | None = None,
    ) -> None:
        self.agent = agent
        self.config = config
        self.sink = sink
        self.metrics = metrics
        self.checkpoint_db = checkpoint_db
        self.clock = clock
        self.chain = build_chain(config.data_processing_options, path="dataProcessingOptions")
        # A sink that packs many records into one (KPL aggregation, Firehose packing) takes
        # batches by its own limits: maxBufferSize* then bound the packed requests, not the input.
        packs = getattr(sink, "packs_records", False)
        self.batcher = Batcher(
            max_records=sink.max_batch_records
            if packs
            else min(config.max_buffer_size_records, sink.max_batch_records),
            max_bytes=sink.max_batch_bytes
            if packs
            else min(config.max_buffer_size_bytes, sink.max_batch_bytes),
            max_age=config.max_buffer_age_millis / 1000,
            clock=clock,
        )
        self._send_records: int | None = getattr(sink, "max_send_records", None)
        self._send_bytes: int | None = getattr(sink, "max_send_bytes", None)
        self.files: FileSet | None = None
        self._wake_reader = asyncio.Event()
        self._wake_sender = asyncio.Event()
        self._room = asyncio.Event()
        self._rescan_requested = False
        self._reading_done = False
        self._draining = False
        self._last_save = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_pending = threading.Event()
        self._reopen: set[str] = set()  # paths of dormant files written to (watcher's thread)
        self._touched: set[str] = set()  # paths of files written to (watcher's thread)
        self._acks_seen: set[FileAcks] = set()
        self._last_loud = 0.0
        self._charged = 0  # in-flight data plus RECORD_OVERHEAD per record, against the budget
        # A sink given the flow's metrics records each API call itself (FlowMetrics.send_call,
        # one per PutRecords/PutRecordBatch, as the AWS agent's CloudWatch metrics are per call);
        # otherwise the flow records each send as one call.
        self._sink_counts_calls = getattr(sink, "metrics", None) is metrics
        self._key_fallbacks_seen = 0
        self._records_cut_seen = 0
        # Processors in a worker process run beside the reader on a second core (worker.py).
        if processor_worker is None:
            processor_worker = agent.processing_worker_process and _cpus() >= 2
        self.use_worker = bool(self.chain) and processor_worker
        self._worker: ChainWorker | None = None
        self._worker_failures = 0
        self.worker_timeout = WORKER_TIMEOUT
        self._processing: deque[_Chunk] = deque()
        self._collect_wake = asyncio.Event()
        self._worker_room = asyncio.Event()
        self._submitting_done = False
        # idle files are closed after this long (0: never), so descriptors stay bounded
        self.close_inactive = config.close_inactive_millis / 1000

    # --- lifecycle --------------------------------------------------------------------------------

    def load_checkpoints(self) -> list[Checkpoint]:
        loader = getattr(self.sink, "load_checkpoints", None)
        if self.sink.transactional and loader is not None:
            result: list[Checkpoint] = loader(self.config.flow_id)
            return result
        if self.checkpoint_db is not None:
            return self.checkpoint_db.load(self.config.flow_id)
        return []

    async def run(self, stop: asyncio.Event, *, once: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        gcpolicy.tune()
        self.files = FileSet(
            self.config,
            await asyncio.to_thread(self.load_checkpoints),
            self.metrics,
            max_record_bytes=self.sink.max_record_bytes,
            clock=self.clock,
        )
        self.files.identify_partial_now = once  # every matched file is shipped to its end
        watcher = None if once else Watcher(self.config.file_pattern, self._wake_from_thread)
        if watcher is not None:
            # inotify on a ``**`` pattern adds a watch per directory: a walk, never on the loop
            await asyncio.to_thread(watcher.start)
        if self.use_worker:
            await self._start_worker()
        self.metrics.status = "running"
        try:
            async with asyncio.TaskGroup() as tg:
                sender = tg.create_task(self._sender(), name=f"send {self.config.flow_id}")
                collector = (
                    tg.create_task(self._collector(), name=f"process {self.config.flow_id}")
                    if self.use_worker
                    else None
                )
                try:
                    await self._reader(
                        stop, once=once, inotify=watcher is not None and watcher.active
                    )
                    if collector is not None:  # what the worker holds is processed and queued
                        self._submitting_done = True
                        self._collect_wake.set()
                        await collector
                finally:
                    self._reading_done = True
                    self._wake_sender.set()
                await sender
        finally:
            if watcher is not None:
                watcher.stop()
            if self._worker is not None:
                await self._worker.aclose()
            self._save_on_exit()
            self.files.close()
            self.metrics.status = "stopped"

    def _save_on_exit(self) -> None:
        """Cancelled or done: what is acknowledged must be on disk before we go (plain sinks)."""
        if self.sink.transactional or self.checkpoint_db is None:
            return
        rows = [a.row() for a in self._dirty_acks()]
        try:
            self.checkpoint_db.save(rows)
        except Exception as exc:
            log.error("%s: cannot save checkpoints at exit: %s", self.config.flow_id, exc)

    def _wake_from_thread(self, rescan: bool, path: str = "") -> None:
        # A file that was too short to identify (empty, say) and is now written through a
        # descriptor its writer keeps open only sends "modified": look again now, not at the
        # next periodic rescan. Writes to files already tailed never cost a rescan.
        files = self.files
        if rescan or (files is not None and path in files.waiting_paths):
            self._rescan_requested = True
        elif files is not None and path in files.dormant_paths:
            self._reopen.add(path)  # an idle file we closed was written to: reopen it now
        else:
            self._touched.add(path)  # written to: the next pass fstats it
        if self._wake_pending.is_set() or self._loop is None:
            return
        self._wake_pending.set()
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._wake_reader.set)

    # --- reader -----------------------------------------------------------------------------------

    async def _reader(self, stop: asyncio.Event, *, once: bool, inotify: bool) -> None:
        files = self.files
        assert files is not None
        cfg = self.config
        refresh = cfg.max_time_between_file_tracker_refresh_millis / 1000
        poll = cfg.min_time_between_file_polls_millis / 1000
        if inotify:
            poll = max(poll, IDLE_POLL_WITH_INOTIFY)
        flush_after = cfg.partial_line_flush_millis / 1000
        budget = cfg.max_in_flight_bytes
        close_after = self.close_inactive or float("inf")
        next_stat_all = 0.0
        next_scan = 0.0
        targets: dict[TrackedFile, int] = {}
        while not stop.is_set():
            now = self.clock()
            if now >= next_scan or self._rescan_requested:
                self._rescan_requested = False
                self._emit_flushed(await files.rescan_async())
                next_scan = now + refresh
                if once:  # each file is shipped up to its size when first seen
                    for t in files.files.values():
                        targets.setdefault(t, t.size)
            if self._reopen:
                paths, self._reopen = self._reopen, set()
                self._emit_flushed(await files.reopen_paths(paths))
            if files.backlog:  # files that waited for descriptors: open the next ones
                await files.adopt_backlog()
                if once:
                    for t in files.files.values():
                        targets.setdefault(t, t.size)
            progressed = False
            now = self.clock()
            if inotify and now < next_stat_all:
                # inotify names the files written to: fstat those (and files rotated away,
                # which no directory event covers), not every file every second
                touched, self._touched = self._touched, set()
                ordered = files.readable_touched(touched)
            else:
                ordered = await files.readable_async()
                now = self.clock()
                next_stat_all = now + STAT_ALL_WITH_INOTIFY
                for tracked in ordered:
                    tracked.stat_at = now  # sizes are fresh: no second fstat in this pass
            yielded = time.monotonic()
            for tracked in ordered:
                # checked at every file: a read gives up the GIL twice (pread, head check), and
                # taking it back behind a busy worker thread costs up to the switch interval
                if time.monotonic() - yielded >= PASS_SLICE:
                    await asyncio.sleep(0)  # a pass over many files leaves the loop its turns
                    yielded = time.monotonic()
                    if files.files.get((tracked.file_id.dev, tracked.file_id.ino)) is not tracked:
                        continue
                if once:
                    if tracked.offset >= targets.get(tracked, 0):
                        continue
                elif (
                    tracked.size == tracked.offset
                    and not tracked.gone
                    and not tracked.framer.has_pending()
                    and now - tracked.last_growth < close_after
                ):
                    continue  # read to its end, nothing held, not due to close: nothing to do
                rescanned = False
                while self._charged >= budget and not stop.is_set():
                    self._room.clear()
                    self._wake_sender.set()
                    self._wake_pending.clear()
                    await _wait_any(self._room, self._wake_reader, 1.0)
                    self._wake_reader.clear()
                    # Keep discovering while blocked: a file created and rotated out of the
                    # pattern during a long outage is then held open and drained afterwards.
                    if self.clock() >= next_scan or self._rescan_requested:
                        self._rescan_requested = False
                        self._emit_flushed(await files.rescan_async())
                        next_scan = self.clock() + refresh
                        rescanned = True
                if stop.is_set():
                    break
                if rescanned:  # the rescan may have closed files of this list: list them again
                    progressed = True
                    break
                while len(self._processing) >= WORKER_CHUNKS and not stop.is_set():
                    self._worker_room.clear()
                    await _wait_any(self._worker_room, stop, 1.0)
                if stop.is_set():
                    break
                try:
                    framed, n = tracked.read(READ_CHUNK, now)
                except Truncated:
                    self._emit_flushed(files.check_truncation(tracked, verify_head=True))
                    self._reread_now()
                    continue
                except OSError as exc:
                    self.metrics.read_errors += 1
                    log.error("%s: reading %s failed: %s", cfg.flow_id, tracked.path, exc)
                    if once:
                        targets[tracked] = tracked.offset
                    continue
                if n:
                    progressed = True
                    self._emit(tracked.acks, framed, n)
                    self._count_cuts(tracked)
                    fm = self.metrics.files.get(tracked.metrics_key)
                    if fm is not None:
                        fm.read_offset = tracked.offset
                        fm.observe_size(max(fm.size, tracked.size))
                    # One read per file per pass, oldest first: a busy or huge file (30 GiB of
                    # a sparse file's zeros) holds the others back for one read at most.
                    continue
                if once:
                    targets[tracked] = tracked.offset  # shorter than when we started: done with it
                self._idle_file(tracked, now, flush_after)
            if once:
                if not files.backlog and all(
                    t.offset >= targets.get(t, 0) for t in files.files.values()
                ):
                    for tracked in files.readable():
                        self._emit(tracked.acks, tracked.framer.flush(), 0)
                    return
                if progressed:
                    await asyncio.sleep(0)
                continue
            if not progressed:
                timeout = max(0.0, min(poll, next_scan - self.clock()))
                self._wake_pending.clear()
                await _wait_any(self._wake_reader, stop, timeout)
                self._wake_reader.clear()
            else:
                await asyncio.sleep(0)

    def _count_cuts(self, tracked: TrackedFile) -> None:
        framer = tracked.framer
        cuts = (framer.truncated, framer.bytes_discarded)
        if cuts != tracked.reported_cuts:
            before = tracked.reported_cuts
            self.metrics.records_truncated += cuts[0] - before[0]
            self.metrics.bytes_discarded += cuts[1] - before[1]
            if cuts[0] > before[0]:
                log.warning(
                    "%s: %s: %d record(s) over the size limit were cut (ending with the truncation terminator)",
                    self.config.flow_id,
                    tracked.path,
                    cuts[0] - before[0],
                )
            tracked.reported_cuts = cuts

    def _idle_file(self, tracked: TrackedFile, now: float, flush_after: float) -> None:
        assert self.files is not None
        if not tracked.gone:
            try:
                size = tracked.size if tracked.stat_at == now else tracked.refresh_size()
            except OSError:
                return
            if size < tracked.offset:
                self._emit_flushed(self.files.check_truncation(tracked, verify_head=False))
                self._reread_now()
                return
            fm = self.metrics.files.get(tracked.metrics_key)
            if fm is not None:
                fm.observe_size(size)
        idle = now - tracked.last_growth >= flush_after
        if idle and tracked.framer.has_pending():
            self._emit(tracked.acks, tracked.framer.flush(), 0)
        if tracked.gone and idle and tracked.unread_bytes() == 0:
            self.files.close_drained(tracked)
        elif (
            not tracked.gone
            and tracked.unread_bytes() == 0
            and not tracked.framer.has_pending()
            and (
                (self.close_inactive and now - tracked.last_growth >= self.close_inactive)
                or self.files.backlog  # files wait for descriptors: free this one now
            )
        ):
            self.files.make_dormant(tracked)  # reopened by identity when it changes

    def _reread_now(self) -> None:
        """After a truncation: its copy (opened by it) and the refilled file are read at once,
        not at the next wake-up or the next periodic rescan."""
        self._rescan_requested = True
        self._wake_reader.set()

    def _emit_flushed(self, flushed: list[Flushed]) -> None:
        for f in flushed:
            self._emit(f.acks, f.records, 0)

    def _emit(self, acks: FileAcks, framed: list[Framed], nbytes: int) -> None:
        m = self.metrics
        m.bytes_parsed += nbytes
        fm = m.files.get(str(acks.file_id)) if framed or nbytes else None
        if fm is not None:
            fm.bytes_parsed += nbytes
            fm.records_parsed += len(framed)
        if not framed:
            return
        m.records_parsed += len(framed)
        self._acks_seen.add(acks)
        if self.use_worker:
            self._submit(acks, framed)
            return
        if self.chain:
            records = self._process(acks, framed)
        else:
            records = [Record(data, acks, start, end) for data, start, end in framed]
            acks.pending.extend(records)
        if not records:
            return
        size = sum(map(len, [r.data for r in records]))
        m.in_flight_bytes += size
        m.in_flight_records += len(records)
        self._charged += size + RECORD_OVERHEAD * len(records)
        self.batcher.add(records, size)
        if self.batcher.full():
            self._wake_sender.set()

    def _process(self, acks: FileAcks, framed: list[Framed]) -> list[Record]:
        chain = self.chain
        limit = self.sink.max_record_bytes
        terminator = self.config.truncated_record_terminator.encode()
        skipped0, errors0 = chain.skipped, chain.errors
        results = list(map(chain, [data for data, _start, _end in framed]))
        if None not in results and max(map(len, cast(list[bytes], results))) <= limit:
            # the common case: nothing dropped, nothing to cut
            out = [
                Record(processed, acks, start, end)
                for processed, (_data, start, end) in zip(
                    cast(list[bytes], results), framed, strict=True
                )
            ]
            acks.pending.extend(out)
        else:
            out = []
            for processed, (_data, start, end) in zip(results, framed, strict=True):
                if processed is None:
                    acks.skip_to(end)
                    continue
                if len(processed) > limit:
                    processed = processed[: limit - len(terminator)] + terminator
                    self.metrics.records_truncated += 1
                record = Record(processed, acks, start, end)
                acks.register(record)
                out.append(record)
        self.metrics.records_skipped += chain.skipped - skipped0
        self.metrics.processing_errors += chain.errors - errors0
        self.metrics.records_processed += len(out)
        return out

    # --- the processor worker -------------------------------------------------------------------

    async def _start_worker(self) -> None:
        name = "dataProcessingOptions"
        try:
            self._worker = await ChainWorker.start(self.config.data_processing_options, name)
        except OSError as exc:
            log.warning(
                "%s: cannot start a processor worker (%s); processing in this process",
                self.config.flow_id,
                exc,
            )
            self._worker = None

    def _submit(self, acks: FileAcks, framed: list[Framed]) -> None:
        """Register the records with their file now (checkpoints stay behind them), process later.

        Registered unprocessed, a record holds its file's checkpoint down exactly as one in
        flight does; the collector fills in its data, in the order the chunks were read.
        """
        records = [Record(data, acks, start, end) for data, start, end in framed]
        acks.pending.extend(records)
        raw_size = sum(map(len, [r.data for r in records]))
        self._charged += raw_size + RECORD_OVERHEAD * len(records)
        worker = self._worker
        future = worker.submit([r.data for r in records]) if worker is not None else None
        self._processing.append(_Chunk(acks, records, raw_size, worker, future))
        self._collect_wake.set()

    async def _collector(self) -> None:
        """Takes the worker's results in the order the chunks were read and queues the records."""
        while True:
            while self._processing:
                chunk = self._processing[0]
                processed = await self._processed(chunk)
                self._processing.popleft()
                self._apply(chunk, processed)
                self._worker_room.set()
            if self._submitting_done:
                return
            self._collect_wake.clear()
            await self._collect_wake.wait()

    async def _processed(self, chunk: _Chunk) -> Processed:
        if chunk.future is not None:
            try:
                # A worker that stops answering (stopped, wedged) must not stall the flow for
                # ever: past the timeout it is replaced and its chunks are redone here.
                async with asyncio.timeout(self.worker_timeout):
                    processed = await asyncio.shield(chunk.future)
            except (WorkerFailed, TimeoutError) as exc:
                if chunk.worker is self._worker:
                    if isinstance(exc, TimeoutError):
                        exc = WorkerFailed(
                            f"the processor worker did not answer within {self.worker_timeout:g} s"
                        )
                    await self._worker_failed(exc)
            else:
                for level, name, message in processed.logs:
                    logging.getLogger(name).log(level, "%s", message)
                return processed
        # no worker, or it died holding this chunk: the records still have their input
        chain = self.chain
        before = (chain.skipped, chain.errors, chain.unmatched)
        results = chain.process_many([r.data for r in chunk.records])
        return Processed(
            results,
            chain.skipped - before[0],
            chain.errors - before[1],
            chain.unmatched - before[2],
        )

    async def _worker_failed(self, exc: WorkerFailed) -> None:
        self._worker_failures += 1
        self.metrics.processor_worker_failures += 1
        worker, self._worker = self._worker, None
        restart = self._worker_failures < WORKER_RESTARTS
        log.error(
            "%s: %s; the %d chunk(s) it held are processed in this process, nothing is lost; %s",
            self.config.flow_id,
            exc,
            sum(1 for c in self._processing if c.worker is worker),
            "starting a new worker"
            if restart
            else f"it failed {self._worker_failures} times: processing stays in this process",
        )
        if worker is not None:
            await worker.aclose()
        if restart:
            await self._start_worker()

    def _apply(self, chunk: _Chunk, processed: Processed) -> None:
        """A processed chunk: data in place, skipped records acknowledged, the rest queued."""
        records, results = chunk.records, processed.results
        if len(results) != len(records):
            raise WorkerFailed(f"{len(results)} results for {len(records)} records")
        limit = self.sink.max_record_bytes
        m = self.metrics
        out: list[Record]
        if None not in results and max(map(len, cast(list[bytes], results))) <= limit:
            for record, data in zip(records, cast(list[bytes], results), strict=True):
                record.data = data
            out = records
        else:
            terminator = self.config.truncated_record_terminator.encode()
            out = []
            for record, result in zip(records, results, strict=True):
                if result is None:  # skipped: acknowledged at once, as FileAcks.skip_to does
                    record.data = b""
                    record.acked = True
                    continue
                data = result
                if len(data) > limit:
                    data = data[: limit - len(terminator)] + terminator
                    m.records_truncated += 1
                record.data = data
                out.append(record)
            if len(out) < len(records):
                chunk.acks.advance()
        m.records_skipped += processed.skipped
        m.processing_errors += processed.errors
        m.records_processed += len(out)
        size = sum(map(len, [r.data for r in out]))
        self._charged += size - chunk.raw_size - RECORD_OVERHEAD * (len(records) - len(out))
        self._room.set()
        if not out:
            return
        m.in_flight_bytes += size
        m.in_flight_records += len(out)
        self.batcher.add(out, size)
        if self.batcher.full():
            self._wake_sender.set()

    # --- sender -----------------------------------------------------------------------------------

    async def _sender(self) -> None:
        while True:
            # Cleared before the conditions are read, never after an await: a wake-up set while
            # we persist (the reader finishing, a batch filling) then ends the wait below at once
            # instead of being lost for a CHECKPOINT_INTERVAL.
            self._wake_sender.clear()
            now = self.clock()
            batcher = self.batcher
            if batcher and (batcher.ready(now) or self._reading_done or self._room_needed()):
                if self.sink.transactional:
                    batch = batcher.take(GROUP_COMMIT_RECORDS, GROUP_COMMIT_BYTES)
                else:
                    # A sink that overlaps its calls (Kinesis lanes) takes every ready batch
                    # up to its own limits; the calls inside stay within the batch limits.
                    batch = batcher.take(self._send_records, self._send_bytes)
                await self._deliver(batch)
                await self._persist(force=False)  # at most once a second, also under a backlog
                continue
            if self._reading_done and not batcher:
                await self._persist(force=True)
                return
            await self._persist(force=False)
            deadline = batcher.deadline()
            timeout = CHECKPOINT_INTERVAL if deadline is None else max(0.0, deadline - now)
            await _wait(self._wake_sender, min(timeout, CHECKPOINT_INTERVAL))

    def _count_sink_counters(self) -> None:
        # Only for a sink not given the flow's metrics (one that is counts them itself): one
        # writer per counter, and by increments, so a counter carried over a reload only grows.
        keys = getattr(self.sink, "keys", None)
        if keys is not None:
            self.metrics.partition_key_fallbacks += keys.fallbacks - self._key_fallbacks_seen
            self._key_fallbacks_seen = keys.fallbacks
        cut = getattr(self.sink, "records_cut", 0)
        if cut != self._records_cut_seen:
            self.metrics.records_truncated += cut - self._records_cut_seen
            log.warning(
                "%s: %d record(s) with a long partition key were over the 1 MiB limit; cut to "
                "fit, ending with the truncation terminator",
                self.config.flow_id,
                cut - self._records_cut_seen,
            )
            self._records_cut_seen = cut

    def _room_needed(self) -> bool:
        return self._charged >= self.config.max_in_flight_bytes

    async def _deliver(self, batch: list[Record]) -> None:
        cfg = self.config
        backoff = Backoff(cfg.retry_initial_backoff_millis, cfg.retry_max_backoff_millis)
        pending = batch
        m = self.metrics
        while pending:
            if self.sink.transactional:
                result = await self._send_transactional(pending)
            else:
                result = await self._send_plain(pending)
            if not self._sink_counts_calls:
                self._count_sink_counters()
            delivered = result.delivered
            sent_bytes = sum(map(len, [r.data for r in delivered]))
            if not self._sink_counts_calls:
                self._count_calls(pending, result, sent_bytes)
            if delivered:
                m.in_flight_bytes -= sent_bytes
                self._charged -= sent_bytes + RECORD_OVERHEAD * len(delivered)
                m.in_flight_records -= len(delivered)
                self._room.set()
            if not result.retry:
                if m.status == "failing":
                    log.info("%s: delivering again", cfg.flow_id)
                m.status = "running"
                m.consecutive_errors = 0
                return
            pending = result.retry
            m.retries += 1
            m.consecutive_errors += 1
            await self._back_off(backoff, result)

    def _count_calls(self, pending: list[Record], result: SendResult, sent_bytes: int) -> None:
        """Record the send as calls: a group commit counts one call per batch it carries.

        The store commits every ready batch at once, but the operator configured (and the
        metrics describe) batches of ``maxBufferSizeRecords``: each one counts as a send, all
        delivered or all failed with the transaction.
        """
        m = self.metrics
        size = self.batcher.max_records
        if not self.sink.transactional or len(pending) <= size:
            m.send_call(
                attempted=len(pending),
                sent=len(result.delivered),
                sent_bytes=sent_bytes,
                failed=len(result.retry),
                service_error=result.error is not None,
            )
            return
        delivered = bool(result.delivered)
        for i in range(0, len(pending), size):
            part = pending[i : i + size]
            m.send_call(
                attempted=len(part),
                sent=len(part) if delivered else 0,
                sent_bytes=sum(map(len, [r.data for r in part])) if delivered else 0,
                failed=0 if delivered else len(part),
                service_error=result.error is not None,
            )

    async def _back_off(self, backoff: Backoff, result: SendResult) -> None:
        error = result.error
        fatal = error is not None and not getattr(error, "retryable", True)
        delay = backoff.max_delay() if fatal else backoff.next_delay()
        m = self.metrics
        m.last_error = str(error) if error is not None else f"{len(result.retry)} records failed"
        now = self.clock()
        if fatal:
            m.status = "failing"
        if fatal or backoff.failures >= 5:
            m.status = "failing"
            if now - self._last_loud >= 60:
                self._last_loud = now
                log.error(
                    "%s: cannot deliver to %s: %s; retrying every %.1fs, data stays on disk",
                    self.config.flow_id,
                    self.config.destination,
                    m.last_error,
                    delay,
                )
        await asyncio.sleep(delay)

    async def _send_transactional(self, batch: list[Record]) -> SendResult:
        for record in batch:
            record.acked = True
        touched = cast(dict[FileAcks, None], dict.fromkeys([r.source for r in batch]))
        for acks in self._dirty_acks():
            touched[acks] = None
        for acks in list(touched):
            for dependent in acks.dependents:
                touched[dependent] = None
        rows = [acks.row(preview=True) for acks in touched]
        result = await self.sink.send(batch, rows)
        if result.retry or len(result.delivered) != len(batch):
            for record in batch:
                record.acked = False
            return SendResult(retry=list(batch), error=result.error)
        for acks in touched:
            acks.advance()
            acks.dirty = False
            self._note_checkpoint(acks)
        self._last_save = self.clock()
        return result

    async def _send_plain(self, batch: list[Record]) -> SendResult:
        result = await self.sink.send(batch, ())
        for record in result.delivered:
            source = record.source
            if source is not None:
                source.ack(record)
        return result

    def _dirty_acks(self) -> list[FileAcks]:
        if self.files is not None and self.files.reported:
            # losses reported at start: stored as such, so the next start does not repeat them
            self._acks_seen.update(self.files.reported)
            self.files.reported.clear()
        dirty = [a for a in self._acks_seen if a.dirty]
        if self.files is not None:
            dirty += [
                t.acks
                for t in self.files.files.values()
                if t.acks.dirty and t.acks not in self._acks_seen
            ]
        # forget trackers of closed files once nothing of theirs is in flight
        open_acks = {t.acks for t in self.files.files.values()} if self.files is not None else set()
        self._acks_seen = {a for a in self._acks_seen if a in open_acks or a.pending or a.dirty}
        return dirty

    def _note_checkpoint(self, acks: FileAcks) -> None:
        fm = self.metrics.files.get(str(acks.file_id))
        if fm is not None:
            fm.checkpoint_advanced(acks.checkpoint)

    async def _persist(self, *, force: bool) -> None:
        """Write dirty checkpoints: at most once a second, and at the end."""
        now = self.clock()
        if not force and now - self._last_save < CHECKPOINT_INTERVAL:
            return
        dirty = self._dirty_acks()
        if not dirty:
            return
        rows = [a.row() for a in dirty]
        try:
            if self.sink.transactional:
                result = await self.sink.send([], rows)
                if result.error is not None:
                    raise result.error
            elif self.checkpoint_db is not None:
                await asyncio.to_thread(self.checkpoint_db.save, rows)
        except Exception as exc:
            log.error("%s: cannot save checkpoints: %s (will retry)", self.config.flow_id, exc)
            return
        for acks in dirty:
            acks.dirty = False
            self._note_checkpoint(acks)
        self._last_save = now

    def request_rescan(self) -> None:
        self._rescan_requested = True
        self._wake_reader.set()


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass


async def _wait_any(a: asyncio.Event, b: asyncio.Event, timeout: float) -> None:
    if a.is_set() or b.is_set():
        return
    tasks = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
