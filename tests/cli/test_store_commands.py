"""``kinesis-agent stream list | describe | read``, through register() and one real process."""

from __future__ import annotations

import argparse
import base64
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from agent.cli.stream import register
from agent.store import StreamStore
from tests.support.clock import FakeClock

ROOT = Path(__file__).resolve().parents[2]


def cli(*argv: str) -> int:
    """Parse and run like agent.cli.main does: register(), then args.func(args)."""
    parser = argparse.ArgumentParser(prog="kinesis-agent")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp())


@pytest.fixture
def store_dir(tmp_path: Path, clock: FakeClock) -> Path:
    directory = tmp_path / "streams"
    with StreamStore.open(directory, clock=clock) as store:
        store.ensure_stream("app", 2, 24)
        store.ensure_stream("empty", 1, 24)
        store.put_records("app", [(f"k{i}", b"line %d\n" % i) for i in range(6)])
        clock.now += 3600
        store.put_records("app", [("bin", b"\xff\xfe raw\n"), ("k0", b"later\n")])
    return directory


class TestList:
    def test_lists_stream_names(self, store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """list prints one stream name a line, sorted."""
        assert cli("stream", "list", "--store", str(store_dir)) == 0
        assert capsys.readouterr().out == "app\nempty\n"

    def test_store_from_the_config(
        self, store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """-c CONFIG finds the store through localStore.directory."""
        config = tmp_path / "agent.json"
        config.write_text(
            json.dumps(
                {
                    "localStore.directory": str(store_dir),
                    "flows": [{"filePattern": "/x/*.log", "localStream": "app"}],
                }
            )
        )
        assert cli("stream", "list", "-c", str(config)) == 0
        assert capsys.readouterr().out == "app\nempty\n"

    def test_missing_store_is_one_line_and_exit_1(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A directory without a store: one line on stderr naming it, exit 1."""
        assert cli("stream", "list", "--store", str(tmp_path / "nothing")) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no stream store" in err and "nothing" in err

    def test_bad_config_exits_78(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A config that does not load is a configuration error (exit 78)."""
        bad = tmp_path / "agent.json"
        bad.write_text('{"flows": [{"filePattern": "/x", "localStream": "a", "bogus": 1}]}')
        assert cli("stream", "list", "-c", str(bad)) == 78
        assert "bogus" in capsys.readouterr().err


class TestDescribe:
    def test_text(self, store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """describe shows shards with hash ranges and counts, and the retention."""
        assert cli("stream", "describe", "app", "--store", str(store_dir)) == 0
        out = capsys.readouterr().out
        assert "shards     2" in out and "retention  24 h" in out and "records    8" in out
        assert "shardId-000000000000  hash keys 0..170141183460469231731687303715884105727" in out
        assert "shardId-000000000001" in out

    def test_json(self, store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """describe --format json gives the same facts, hash keys as decimal strings."""
        assert cli("stream", "describe", "app", "--store", str(store_dir), "--format", "json") == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["stream"] == "app" and doc["records"] == 8
        assert [s["shard_id"] for s in doc["shards"]] == [
            "shardId-000000000000",
            "shardId-000000000001",
        ]
        assert doc["shards"][1]["ending_hash_key"] == str(2**128 - 1)
        assert sum(s["records"] for s in doc["shards"]) == 8

    def test_missing_stream(self, store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An unknown stream: one line on stderr, exit 1."""
        assert cli("stream", "describe", "nope", "--store", str(store_dir)) == 1
        assert capsys.readouterr().err == f"kinesis-agent: no stream named 'nope' in {store_dir}\n"


class TestRead:
    def expected(self, store_dir: Path) -> list[bytes]:
        with StreamStore.open(store_dir, create=False, read_only=True) as store:
            return [r.data for r in store.read("app")]

    def test_raw_writes_the_bytes_as_stored(
        self, store_dir: Path, capsysbinary: pytest.CaptureFixture[bytes]
    ) -> None:
        """raw output is the records' bytes, shard by shard, with no newline added."""
        assert cli("stream", "read", "app", "--store", str(store_dir)) == 0
        out = capsysbinary.readouterr().out
        assert out == b"".join(self.expected(store_dir))
        assert out.count(b"\n") == 8

    def test_json_lines(self, store_dir: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
        """json prints one object per record; bytes that are not UTF-8 come as data_base64."""
        assert cli("stream", "read", "app", "--store", str(store_dir), "--format", "json") == 0
        docs = [orjson.loads(line) for line in capsysbinary.readouterr().out.splitlines()]
        assert len(docs) == 8
        for doc in docs:
            assert set(doc) - {"data", "data_base64"} == {
                "stream",
                "shard_id",
                "sequence_number",
                "partition_key",
                "arrival_timestamp",
            }
            assert isinstance(doc["sequence_number"], str) and len(doc["sequence_number"]) == 56
            assert isinstance(doc["arrival_timestamp"], float)
        binary = next(d for d in docs if d["partition_key"] == "bin")
        assert "data" not in binary
        assert base64.b64decode(binary["data_base64"]) == b"\xff\xfe raw\n"
        text = next(d for d in docs if d["partition_key"] == "k1")
        assert text["data"] == "line 1\n" and "data_base64" not in text
        shards = [d["shard_id"] for d in docs]
        assert shards == sorted(shards)
        for shard in set(shards):
            seqs = [int(d["sequence_number"]) for d in docs if d["shard_id"] == shard]
            assert seqs == sorted(seqs)

    def test_from_latest_sequence_and_time(
        self, store_dir: Path, clock: FakeClock, capsysbinary: pytest.CaptureFixture[bytes]
    ) -> None:
        """--from takes latest, a sequence number, and an ISO time (UTC or with an offset)."""
        base = ["stream", "read", "app", "--store", str(store_dir)]
        assert cli(*base, "--from", "latest") == 0
        assert capsysbinary.readouterr().out == b""
        later = "2024-05-01T12:30:00Z"
        assert cli(*base, "--from", later) == 0
        assert sorted(capsysbinary.readouterr().out.splitlines()) == [b"later", b"\xff\xfe raw"]
        assert cli(*base, "--from", "2024-05-01T14:00:00+02:00") == 0  # 12:00 UTC: all of it
        assert capsysbinary.readouterr().out.count(b"\n") == 8
        assert cli(*base, "--format", "json", "--shard", "1") == 0
        docs = [orjson.loads(x) for x in capsysbinary.readouterr().out.splitlines()]
        assert cli(*base, "--shard", "1", "--from", docs[1]["sequence_number"]) == 0
        assert capsysbinary.readouterr().out == b"".join(
            d["data"].encode() if "data" in d else base64.b64decode(d["data_base64"])
            for d in docs[1:]
        )

    def test_limit_and_bad_arguments(
        self, store_dir: Path, capsysbinary: pytest.CaptureFixture[bytes]
    ) -> None:
        """--limit stops after N; a bad --from or --shard is one line on stderr and exit 1."""
        base = ["stream", "read", "app", "--store", str(store_dir)]
        assert cli(*base, "--limit", "3") == 0
        assert capsysbinary.readouterr().out == b"".join(self.expected(store_dir)[:3])
        assert cli(*base, "--from", "yesterday-ish") == 1
        assert b"--from 'yesterday-ish'" in capsysbinary.readouterr().err
        assert cli(*base, "--shard", "shardId-000000000009") == 1
        assert b"no shard" in capsysbinary.readouterr().err

    def test_follow_with_a_limit_returns(
        self, store_dir: Path, capsysbinary: pytest.CaptureFixture[bytes]
    ) -> None:
        """--follow from trim_horizon prints in write order across shards; --limit ends it."""
        argv = ["stream", "read", "app", "--store", str(store_dir), "--follow"]
        assert cli(*argv, "--from", "trim_horizon", "--limit", "8") == 0
        lines = capsysbinary.readouterr().out.splitlines()
        assert lines[:6] == [b"line %d" % i for i in range(6)]  # write order, not shard order
        assert lines[6:] == [b"\xff\xfe raw", b"later"]


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_follow_prints_as_records_arrive_and_ctrl_c_exits_0(
    store_dir: Path, stop_signal: signal.Signals
) -> None:
    """A real `stream read --follow` prints new records as they come and exits 0 on SIGINT
    (Ctrl+C) or SIGTERM, wherever in its poll loop the signal lands."""
    argv = ["stream", "read", "app", "--store", str(store_dir), "--follow", "--format", "json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli.stream", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        with StreamStore.open(store_dir) as store:
            time.sleep(0.5)  # let it start at LATEST before writing
            for i in range(3):
                store.put_records("app", [(f"n{i}", b"new %d\n" % i)])
                line = proc.stdout.readline()
                assert orjson.loads(line)["data"] == f"new {i}\n"
            for i in range(3, 300):  # signal it while it is busy printing, too
                store.put_records("app", [(f"n{i}", b"new %d\n" % i)])
        proc.send_signal(stop_signal)
        _out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert b"Traceback" not in err and err == b""


def test_raw_records_reach_a_terminal_as_escapes_a_pipe_as_they_are(tmp_path: Path) -> None:
    """Anyone who writes a log chooses its records: on a terminal ``ESC[2J`` is shown, not obeyed
    (as status, top and check do); piped, the bytes are exact."""
    import os
    import pty

    directory = tmp_path / "streams"
    with StreamStore.open(directory) as store:
        store.ensure_stream("app", 1, 24)
        store.put_records("app", [("k", b"a\x1b[2Jb\x1b]0;owned\x07\r\xe2\x80\xae\ttab\n")])
    argv = [sys.executable, "-m", "agent.cli.stream", "stream", "read", "app"]
    argv += ["--store", str(directory), "--from", "trim_horizon"]
    piped = subprocess.run(argv, capture_output=True, timeout=60, cwd=ROOT)
    assert piped.stdout == b"a\x1b[2Jb\x1b]0;owned\x07\r\xe2\x80\xae\ttab\n"
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, cwd=ROOT)
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            shown += chunk
        assert proc.wait(timeout=60) == 0
        assert proc.stderr is not None
        with proc.stderr:
            assert proc.stderr.read() == b""
    finally:
        os.close(master)
    assert b"\x1b" not in shown and b"\x07" not in shown and "\u202e".encode() not in shown
    assert shown.replace(b"\r\n", b"\n") == b"a\\x1b[2Jb\\x1b]0;owned\\x07\\r\\u202e\ttab\n"
