"""R6: damaged state — checkpoint and store databases truncated, garbage, locked, on a full disk.

The agent says so loudly, keeps or restores the last good state, never silently restarts from the
beginning or the end, and never writes into a damaged store (it refuses to start instead).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.checkpoints import BACKUP_INTERVAL, CheckpointDB, DamagedCheckpoints
from agent.errors import StoreError
from agent.records import Checkpoint, FileId
from tests.peers.helpers import new_stream
from tests.peers.servers import Peer
from tests.reliability.tally import Tally, record
from tests.support import config as configs
from tests.support.agent import run_agent, start_agent, stop_agent, wait_for
from tests.support.logs import append, numbered
from tests.support.streams import kinesis_lines, stored_lines, stored_so_far


def cp(flow: str, ino: int, offset: int) -> Checkpoint:
    return Checkpoint(flow, FileId(1, ino, 10, b"h" * 16), f"/l/{ino}.log", offset)


def garbage(path: Path, size: int = 8192) -> None:
    path.write_bytes(os.urandom(size))


def truncate_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def saved_db(tmp_path: Path, *offsets: int) -> Path:
    """A checkpoint database closed cleanly after saving ``offsets`` (so its backup exists)."""
    path = tmp_path / "cp.db"
    db = CheckpointDB(path)
    for i, off in enumerate(offsets):
        db.save([cp("f", 100 + i, off)])
    db.close()
    return path


class TestCheckpointDatabase:
    @pytest.mark.parametrize(
        "damage",
        [garbage, truncate_half, lambda p: os.truncate(p, 0), lambda p: p.unlink()],
        ids=["garbage", "truncated-half", "truncated-empty", "deleted"],
    )
    def test_damage_restores_the_last_good_copy_loudly(
        self, tmp_path: Path, damage: object, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A damaged file is moved aside and the backup restored, with an error in the log."""
        path = saved_db(tmp_path, 10, 20, 30)
        for suffix in ("-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        size = path.stat().st_size
        if size < 8192:
            pytest.fail(f"checkpoint db unexpectedly small: {size}")
        damage(path)  # type: ignore[operator]
        with caplog.at_level(logging.ERROR):
            db = CheckpointDB(path)
        try:
            assert sorted(c.offset for c in db.load("f")) == [10, 20, 30]
        finally:
            db.close()
        kept = [p for p in tmp_path.iterdir() if p.name.startswith("cp.db.damaged-")]
        assert kept or "missing" in caplog.text, "the damaged file must be kept for inspection"
        assert "restored the last good copy" in caplog.text

    def test_damage_without_a_backup_refuses_to_guess(self, tmp_path: Path) -> None:
        """No good copy: refuse (naming the file and the choice), and leave the file untouched."""
        path = tmp_path / "cp.db"
        garbage(path)
        before = path.read_bytes()
        with pytest.raises(DamagedCheckpoints, match=r"damaged.*Not starting"):
            CheckpointDB(path)
        assert path.read_bytes() == before

    def test_damaged_backup_is_not_trusted(self, tmp_path: Path) -> None:
        """Both the file and its backup damaged: refuse rather than start from nothing."""
        path = saved_db(tmp_path, 5)
        garbage(path)
        garbage(path.with_name("cp.db.bak"))
        with pytest.raises(DamagedCheckpoints, match="backup"):
            CheckpointDB(path)

    def test_backup_at_open_close_and_at_most_every_interval(self, tmp_path: Path) -> None:
        """The backup follows the saves, but at most once per BACKUP_INTERVAL (plus open and close)."""
        now = [0.0]
        path = tmp_path / "cp.db"
        db = CheckpointDB(path, clock=lambda: now[0])
        backup = tmp_path / "cp.db.bak"
        assert backup.exists()

        def backed_up() -> list[int]:
            probe = CheckpointDB(tmp_path / "probe.db")
            probe.close()
            shutil.copyfile(backup, tmp_path / "probe.db")
            for s in ("-wal", "-shm"):
                Path(str(tmp_path / "probe.db") + s).unlink(missing_ok=True)
            p = CheckpointDB(tmp_path / "probe.db")
            try:
                return [c.offset for c in p.load("f")]
            finally:
                p.close()

        db.save([cp("f", 1, 10)])
        assert backed_up() == []  # saved right after the open's backup: not copied yet
        now[0] = BACKUP_INTERVAL + 1
        db.save([cp("f", 1, 20)])
        assert backed_up() == [20]
        db.save([cp("f", 1, 30)])
        assert backed_up() == [20]
        db.close()
        assert backed_up() == [30]

    def test_locked_by_another_process_fails_saves_loudly_then_recovers(
        self, tmp_path: Path
    ) -> None:
        """Another process holding the write lock: saves fail with an error (never silently), the
        committed state stays, and saving works again once the lock is gone."""
        path = tmp_path / "cp.db"
        db = CheckpointDB(path, timeout=0.3)
        db.save([cp("f", 1, 10)])
        with (
            hold_lock(path, "BEGIN EXCLUSIVE"),
            pytest.raises(StoreError, match=r"cannot save checkpoints.*locked"),
        ):
            db.save([cp("f", 1, 20)])
        db.save([cp("f", 1, 30)])
        assert [c.offset for c in db.load("f")] == [30]
        db.close()


@contextlib.contextmanager
def hold_lock(path: Path, statement: str, seconds: float = 60) -> Iterator[subprocess.Popen[str]]:
    """Another process that opens ``path`` and holds ``statement``'s lock until released."""
    code = (
        "import sqlite3, sys, time\n"
        f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        f"db.execute({statement!r})\n"
        "print('locked', flush=True)\n"
        f"time.sleep({seconds})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


# --- the real process ---------------------------------------------------------------------------


def local_config(tmp_path: Path, store: Path, **flow: object) -> Path:
    (tmp_path / "logs").mkdir(exist_ok=True)
    return configs.local_config(
        tmp_path,
        configs.from_start(
            tmp_path / "logs" / "*.log", localStream="s", maxBufferAgeMillis=1000, **flow
        ),
        store=store,
        **configs.NO_CLOUDWATCH,
    )


def run_once(config: Path) -> subprocess.CompletedProcess[str]:
    """``run --once``, its exit code for the test to judge."""
    return run_agent("run", "--once", "-c", str(config), timeout=60)


@pytest.mark.slow
class TestDamagedStore:
    @pytest.mark.parametrize(
        "damage",
        [garbage, truncate_half, lambda p: os.truncate(p, 0)],
        ids=["garbage", "truncated-half", "truncated-empty"],
    )
    def test_damaged_store_refuses_to_start_and_is_left_alone(
        self, tmp_path: Path, damage: object
    ) -> None:
        """A damaged streams.db: exit 1 with one clear line; the file is not touched, nothing re-read."""
        store = tmp_path / "streams"
        config = local_config(tmp_path, store)
        written = append(tmp_path / "logs" / "a.log", numbered("a", 0, 3000, 60))
        assert run_once(config).returncode == 0
        assert stored_lines(store, "s") == written
        db = store / "streams.db"
        for s in ("-wal", "-shm"):
            Path(str(db) + s).unlink(missing_ok=True)
        damage(db)  # type: ignore[operator]
        before = db.read_bytes()
        append(tmp_path / "logs" / "a.log", numbered("a", 3000, 10))
        done = run_once(config)
        assert done.returncode == 1, done.stderr[-2000:]
        assert "stream store" in done.stderr and "is damaged" in done.stderr
        assert "Traceback" not in done.stderr
        assert db.read_bytes() == before

    def test_store_locked_by_another_process_waits_then_ships_exactly_once(
        self, tmp_path: Path
    ) -> None:
        """A reader/writer holding the store's write lock for a while delays the agent; no loss."""
        store = tmp_path / "streams"
        config = local_config(tmp_path, store)
        first = append(tmp_path / "logs" / "a.log", numbered("a", 0, 100))
        assert run_once(config).returncode == 0
        more = append(tmp_path / "logs" / "a.log", numbered("a", 100, 2000))
        with hold_lock(store / "streams.db", "BEGIN IMMEDIATE", seconds=3) as holder:
            started = time.monotonic()
            done = run_once(config)
            holder.wait()
        assert done.returncode == 0, done.stderr[-2000:]
        assert time.monotonic() - started >= 2.5
        assert stored_lines(store, "s") == first + more


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)])
    if done.returncode != 0:
        pytest.fail("cannot mount a tmpfs (the suite runs as root)", pytrace=False)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Fill the filesystem to the last byte."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for block in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * block)
    finally:
        os.close(fd)
    return filler


@pytest.mark.slow
def test_full_disk_stops_acknowledging_and_resumes(tmp_path: Path) -> None:
    """The store on a full filesystem: nothing is acknowledged (no checkpoint moves past unstored
    lines), the agent keeps retrying loudly, and once space returns every line lands exactly once."""
    with small_tmpfs(tmp_path / "disk", "6m") as disk:
        store = disk / "streams"
        config = local_config(
            tmp_path, store, retryInitialBackoffMillis=50, retryMaxBackoffMillis=300
        )
        log = tmp_path / "agent.log"
        path = tmp_path / "logs" / "a.log"
        written = append(path, numbered("a", 0, 2000, 40))
        proc = start_agent(config, log=log)
        try:
            wait_for(lambda: (store / "streams.db").exists() and _count(store) == 2000, 30, log=log)
            filler = fill(disk)
            written += append(path, numbered("a", 2000, 30_000, 100))
            wait_for(lambda: "cannot write" in log.read_text(), 30, log=log)
            time.sleep(1)
            assert proc.poll() is None, "the agent died on a full disk"
            stuck = _count(store)
            assert stuck < len(written)
            filler.unlink()
            wait_for(lambda: _count(store) >= len(written), 60, log=log)
            time.sleep(1)
        finally:
            assert stop_agent(proc) == 0
        got = stored_lines(store, "s")
        record(Tally.of("R6 full disk (store on 6 MiB tmpfs)", written, got))
        assert got == written
        check = subprocess.run(
            ["sqlite3", str(store / "streams.db"), "PRAGMA integrity_check"],
            capture_output=True,
            text=True,
        )
        if check.returncode == 0:
            assert check.stdout.strip() == "ok"


def _count(store: Path) -> int:
    return len(stored_so_far(store, "s"))


# --- the checkpoint database under a real AWS flow --------------------------------------------


@pytest.mark.slow
class TestCheckpointsUnderAKinesisFlow:
    def _config(self, tmp_path: Path, kinesalite: Peer, stream: str) -> Path:
        (tmp_path / "logs").mkdir(exist_ok=True)
        return configs.aws_config(
            tmp_path,
            configs.from_start(
                tmp_path / "logs" / "*.log", kinesisStream=stream, maxBufferAgeMillis=1000
            ),
            checkpoints=tmp_path / "state" / "cp.db",
            **{"kinesis.endpoint": kinesalite.endpoint},
        )

    def test_garbage_checkpoints_restored_nothing_reshipped(
        self, tmp_path: Path, kinesalite: Peer
    ) -> None:
        """Ship, damage the checkpoint file, ship more: the backup (taken at clean exit) is
        restored, the log says so, and only the new lines are sent — none twice, none skipped."""
        stream = new_stream(kinesalite.endpoint)
        config = self._config(tmp_path, kinesalite, stream)
        written = append(tmp_path / "logs" / "a.log", numbered("a", 0, 2000))
        assert run_once(config).returncode == 0
        db = tmp_path / "state" / "cp.db"
        garbage(db)
        written += append(tmp_path / "logs" / "a.log", numbered("a", 2000, 500))
        done = run_once(config)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "restored the last good copy" in done.stderr
        got = kinesis_lines(kinesalite.endpoint, stream)
        record(Tally.of("R6 checkpoint db garbage (Kinesis)", written, got))
        assert sorted(got) == sorted(written)

    def test_no_backup_refuses_instead_of_reshipping(
        self, tmp_path: Path, kinesalite: Peer
    ) -> None:
        """Damaged and no backup: exit 1 naming the file; nothing is shipped again."""
        stream = new_stream(kinesalite.endpoint)
        config = self._config(tmp_path, kinesalite, stream)
        append(tmp_path / "logs" / "a.log", numbered("a", 0, 500))
        assert run_once(config).returncode == 0
        db = tmp_path / "state" / "cp.db"
        garbage(db)
        (tmp_path / "state" / "cp.db.bak").unlink()
        done = run_once(config)
        assert done.returncode == 1
        assert str(db) in done.stderr and "Not starting" in done.stderr
        assert len(kinesis_lines(kinesalite.endpoint, stream)) == 500


@pytest.mark.slow
def test_reload_adding_a_flow_over_damaged_checkpoints_keeps_the_others(tmp_path: Path) -> None:
    """SIGHUP adds the first AWS flow while checkpointFile is garbage: that flow is refused
    loudly; the running flows keep shipping, exactly once."""
    store = tmp_path / "streams"
    config = local_config(tmp_path, store)
    doc = json.loads(config.read_text())
    doc["kinesis.endpoint"] = "http://127.0.0.1:9"
    config.write_text(json.dumps(doc))
    garbage(tmp_path / "cp.db")
    log = tmp_path / "agent.log"
    written = append(tmp_path / "logs" / "a.log", numbered("a", 0, 200))
    proc = start_agent(config, log=log)
    try:
        wait_for(lambda: _count(store) == 200, 30, log=log)
        doc["flows"].append(
            {"filePattern": str(tmp_path / "other" / "*.log"), "kinesisStream": "k"}
        )
        config.write_text(json.dumps(doc))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "cannot start flow" in log.read_text(), 30, log=log)
        written += append(tmp_path / "logs" / "a.log", numbered("a", 200, 200))
        wait_for(lambda: _count(store) == 400, 30, log=log)
        assert proc.poll() is None
    finally:
        assert stop_agent(proc) == 0
    assert stored_lines(store, "s") == written
