"""checkpointTimeToLiveDays on the embedded store's checkpoints: at start and while running."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from agent.config import load_config
from agent.records import Checkpoint, FileId
from agent.service.daemon import Agent
from agent.sqlitedb import UPSERT_CHECKPOINT, checkpoint_rows
from agent.store.store import StreamStore
from tests.support.streams import stored_lines

DAY = 86400.0


def _config(tmp: Path) -> Path:
    doc = {
        "checkpointFile": str(tmp / "state" / "checkpoints.db"),
        "localStore.directory": str(tmp / "state" / "streams"),
        "checkpointTimeToLiveDays": 1,
        "flows": [
            {
                "filePattern": str(tmp / "logs" / "*.log"),
                "localStream": "s",
                "initialPosition": "START_OF_FILE",
                "maxBufferAgeMillis": 1000,
            }
        ],
    }
    path = tmp / "agent.json"
    path.write_text(json.dumps(doc))
    return path


def _put_row(db_path: Path, flow: str, file: FileId, path: str, age_days: float) -> None:
    with sqlite3.connect(db_path) as db:
        db.executemany(
            UPSERT_CHECKPOINT,
            checkpoint_rows([Checkpoint(flow, file, path, 10)], time.time() - age_days * DAY),
        )


def _paths(db_path: Path) -> set[str]:
    with sqlite3.connect(db_path) as db:
        return {p for (p,) in db.execute("SELECT path FROM file_checkpoints")}


async def _until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_ttl_applies_at_start_and_periodically(tmp_path: Path) -> None:
    """Rows of files that are gone and older than the TTL go at start and while running; a
    file still being tailed, or still at its path, keeps its row however old it is."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "app.log").write_bytes(b"a line\n")
    kept = tmp_path / "elsewhere.txt"  # not matched by the flow, but still there
    kept.write_bytes(b"x\n")
    st = os.stat(kept)
    config = load_config(_config(tmp_path))
    flow_id = config.flows[0].flow_id
    store_dir = tmp_path / "state" / "streams"
    StreamStore.open(store_dir).close()
    db_path = store_dir / "streams.db"
    gone = FileId(1, 1, 7, b"g" * 16)
    _put_row(db_path, flow_id, gone, str(tmp_path / "logs" / "gone-1.log"), age_days=2)
    _put_row(db_path, flow_id, FileId(st.st_dev, st.st_ino, 2, b"k" * 16), str(kept), 2)
    _put_row(db_path, "local:other:/x/*.log", gone, "/nonexistent/old.log", age_days=0.5)

    async def scenario() -> None:
        agent = Agent(config)
        agent.checkpoint_expiry_period = 0.1
        task = asyncio.create_task(agent.run())
        app = str(tmp_path / "logs" / "app.log")
        try:
            await _until(lambda: app in _paths(db_path), "app.log to be shipped")
            # at start: the gone file's old row went; the young one and the file still there stay
            assert _paths(db_path) == {app, str(kept), "/nonexistent/old.log"}
            # a day later, while running: the gone row is old now; app.log (tailed, idle) is too
            with sqlite3.connect(db_path) as db:
                db.execute("UPDATE file_checkpoints SET updated = updated - ?", (DAY,))
            await _until(lambda: "/nonexistent/old.log" not in _paths(db_path), "expiry")
            assert _paths(db_path) == {app, str(kept)}
        finally:
            agent.stop.set()
            await asyncio.wait_for(task, 30)

    asyncio.run(scenario())


def test_a_rotated_idle_file_keeps_its_row_across_a_restart(tmp_path: Path) -> None:
    """app.log read, renamed to app.log.1 (a new app.log beside it), idle past the TTL, then a
    restart: the row must name app.log.1, or the start's expiry takes the new app.log for it,
    forgets the row and ships app.log.1 again from its start."""
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    app.write_bytes(b"old line\n")
    doc = json.loads(_config(tmp_path).read_text())
    doc["flows"][0]["filePattern"] = str(logs / "app.log*")
    (tmp_path / "agent.json").write_text(json.dumps(doc))
    config = load_config(tmp_path / "agent.json")
    store_dir = tmp_path / "state" / "streams"
    db_path = store_dir / "streams.db"

    def shipped() -> list[bytes]:
        return stored_lines(store_dir, "s")

    async def first_run() -> None:
        agent = Agent(config)
        task = asyncio.create_task(agent.run())
        try:
            await _until(lambda: shipped() == [b"old line\n"], "app.log to be shipped")
            app.rename(logs / "app.log.1")
            app.write_bytes(b"new line\n")
            await _until(lambda: shipped() == [b"old line\n", b"new line\n"], "the new app.log")
        finally:
            agent.stop.set()
            await asyncio.wait_for(task, 30)

    async def second_run() -> None:
        agent = Agent(config)
        task = asyncio.create_task(agent.run())
        try:
            await _until(lambda: str(app) in _paths(db_path), "the restarted agent's checkpoints")
            with (logs / "app.log").open("ab") as fh:
                fh.write(b"after restart\n")
            await _until(lambda: shipped()[-1:] == [b"after restart\n"], "the appended line")
        finally:
            agent.stop.set()
            await asyncio.wait_for(task, 30)

    asyncio.run(first_run())
    with sqlite3.connect(db_path) as db:  # idle past the TTL (1 day) since the rotation
        db.execute("UPDATE file_checkpoints SET updated = updated - ?", (2 * DAY,))
    asyncio.run(second_run())
    assert shipped() == [b"old line\n", b"new line\n", b"after restart\n"]
