"""Writes a flow's checkpoints, on its own task: at most once a second, and once more at the end.

Invariant (a checkpoint never passes a record in flight): what is written is ``FileAcks.row()``,
the end of a file's longest prefix of acknowledged records (agent/tailing/tailer.py), and a record
is registered there when it is read, before processing (processing.py); this module only chooses
*when*. Tests: tests/pipeline/test_retry.py (test_delivered_records_are_acknowledged_at_each_attempt:
behind a record being retried), tests/processors/test_processors_worker.py
(test_checkpoint_stays_behind_records_at_the_worker), tests/tailing/test_model.py
(test_crashes_into_the_store_match_the_model).

A transactional sink (the embedded store) is also where the checkpoints go: the sender commits
each batch with the checkpoints it makes true (``rows_for``, ``committed``), and this writer
commits through the same sink only checkpoints no batch carried (skipped records, header lines,
lost files). ``lock`` keeps the two from committing at once: rows are taken under it, so a
checkpoint written later is never older than one written before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import cast

from agent.checkpoints import CheckpointDB
from agent.config import FlowConfig
from agent.observability.metrics import FlowMetrics
from agent.pipeline.events import wait
from agent.records import Checkpoint, Span
from agent.sinks import Sink, TransactionalSink
from agent.tailing.tailer import FileAcks
from agent.tailing.tracker import FileSet

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL = 1.0


class Checkpointer:
    """The dirty checkpoints of one flow's files, and the task that writes them down."""

    def __init__(
        self,
        config: FlowConfig,
        sink: Sink,
        metrics: FlowMetrics,
        checkpoint_db: CheckpointDB | None,
        *,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.sink = sink
        self.metrics = metrics
        self.checkpoint_db = checkpoint_db
        self.clock = clock
        self.files: FileSet | None = None  # set by the flow once the files are opened
        self.seen: set[FileAcks] = set()  # every file the reader emitted records of
        self.last_save = 0.0
        self.lock = asyncio.Lock()
        self._finish = asyncio.Event()

    def load(self) -> list[Checkpoint]:
        """The flow's checkpoints (blocking): in the store with the records, or in the database."""
        if self.sink.transactional:
            return self.sink.load_checkpoints(self.config.flow_id)
        if self.checkpoint_db is not None:
            return self.checkpoint_db.load(self.config.flow_id)
        return []

    async def run(self) -> None:
        """Write dirty checkpoints at most once a second until ``finish()``; then once more."""
        while True:
            # a second after the last write (a transactional sender's commits are writes too)
            due = self.last_save + CHECKPOINT_INTERVAL - self.clock()
            await wait(self._finish, due if 0 < due <= CHECKPOINT_INTERVAL else CHECKPOINT_INTERVAL)
            if self._finish.is_set():
                await self.persist(force=True)
                return
            await self.persist(force=False)

    def finish(self) -> None:
        """Everything is delivered: write what is left and end ``run``."""
        self._finish.set()

    def save_on_exit(self) -> None:
        """Cancelled or done: what is acknowledged must be on disk before we go (plain sinks)."""
        if self.sink.transactional or self.checkpoint_db is None:
            return
        rows = [a.row() for a in self.dirty_acks()]
        try:
            self.checkpoint_db.save(rows)
        except Exception as exc:
            log.error("%s: cannot save checkpoints at exit: %s", self.config.flow_id, exc)

    def dirty_acks(self) -> list[FileAcks]:
        files = self.files
        if files is not None and files.reported:
            # losses reported at start: stored as such, so the next start does not repeat them
            self.seen.update(files.reported)
            files.reported.clear()
        dirty = [a for a in self.seen if a.dirty]
        if files is not None:
            dirty += [
                t.acks for t in files.files.values() if t.acks.dirty and t.acks not in self.seen
            ]
        # forget trackers of closed files once nothing of theirs is in flight
        open_acks = {t.acks for t in files.files.values()} if files is not None else set()
        # trimmed in place: the reader adds to this very set (a new one would leave it adding
        # to a set nobody reads, and a drained file's last checkpoint unwritten)
        self.seen.difference_update(
            [a for a in self.seen if not (a in open_acks or a.pending or a.dirty)]
        )
        return dirty

    def rows_for(self, batch: Sequence[Span]) -> tuple[list[FileAcks], list[Checkpoint]]:
        """The checkpoints a transactional commit of ``batch`` makes true once it is stored.

        Every file of the batch, every other dirty file, and the copies held down by them.
        """
        touched = cast(dict[FileAcks, None], dict.fromkeys([s.source for s in batch]))
        for acks in self.dirty_acks():
            touched[acks] = None
        for acks in list(touched):
            for dependent in acks.dependents:
                touched[dependent] = None
        committing = set(batch)
        return list(touched), [acks.row(preview=True, committing=committing) for acks in touched]

    def committed(self, touched: list[FileAcks], rows: list[Checkpoint]) -> None:
        """The rows of ``rows_for`` are durable with their batch (now marked acknowledged). A
        file acknowledged further meanwhile (a read whose records were all skipped) stays dirty:
        the checkpointer writes the rest."""
        for acks, row in zip(touched, rows, strict=True):
            acks.advance()
            acks.dirty = acks.row() != row
            self._note(acks)
        self.last_save = self.clock()

    def _note(self, acks: FileAcks) -> None:
        fm = self.metrics.files.get(str(acks.file_id))
        if fm is not None:
            fm.checkpoint_advanced(acks.checkpoint)

    async def persist(self, *, force: bool) -> None:
        """Write dirty checkpoints: at most once a second, and at the end."""
        async with self.lock:
            now = self.clock()
            if not force and now - self.last_save < CHECKPOINT_INTERVAL:
                return
            dirty = self.dirty_acks()
            if not dirty:
                return
            rows = [a.row() for a in dirty]
            try:
                if self.sink.transactional:
                    error = await cast(TransactionalSink, self.sink).commit([], rows)
                    if error is not None:
                        raise error
                elif self.checkpoint_db is not None:
                    await asyncio.to_thread(self.checkpoint_db.save, rows)
            except Exception as exc:
                log.error("%s: cannot save checkpoints: %s (will retry)", self.config.flow_id, exc)
                return
            for acks in dirty:
                acks.dirty = False
                self._note(acks)
            self.last_save = now
