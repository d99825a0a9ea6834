"""A real agent over a huge run of continuation lines: memory stays bounded, the record is cut.

The reported case: a 300 MB file of continuation lines with ``maxInFlightBytes`` 1 MiB peaked at
1.16 GB. Here 64 MiB (quicker, same shape): the agent's high-water RSS, read from /proc while it
runs, must stay far below the file's size.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.agent import start_agent
from tests.support.config import from_start, local_config
from tests.support.streams import stored_lines

MIB = 1024 * 1024
FILE_BYTES = 64 * MIB
# the agent's own footprint (interpreter, boto, SQLite) plus a few records' worth of buffers
RSS_BUDGET = 100 * MIB  # measured: 44 MiB now, 300 MiB before the cap


def vm_hwm(pid: int) -> int | None:
    """The process's peak resident set so far (VmHWM), or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def test_a_huge_multiline_record_is_cut_and_memory_stays_bounded(tmp_path: Path) -> None:
    """64 MiB after one start line → one record of 1 MiB with its key, ending with the
    terminator; RSS bounded."""
    logs = tmp_path / "logs"
    logs.mkdir()
    line = b"    at com.example.Frame.method(Frame.java:42) continuation\n"
    with (logs / "app.log").open("wb") as fh:
        fh.write(b"2024-01-01 start of a very long record\n")
        block = line * (MIB // len(line))
        while fh.tell() < FILE_BYTES:
            fh.write(block)
        fh.write(b"2024-01-02 the next record\n")
    config = local_config(
        tmp_path,
        from_start(
            logs / "*.log",
            localStream="big",
            multiLineStartPattern="^\\d{4}-",
            truncatedRecordTerminator="<cut>\n",
            maxInFlightBytes=MIB,
        ),
        shards=None,
    )
    log = tmp_path / "agent.log"
    proc = start_agent(config, "--once", log=log)
    peak = 0
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        peak = max(peak, vm_hwm(proc.pid) or 0)
        time.sleep(0.02)  # sampling a high-water mark: no event to wait for
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    err = log.read_bytes()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert 0 < peak < RSS_BUDGET, f"peak RSS {peak / MIB:.0f} MiB"
    records = stored_lines(tmp_path / "streams", "big")
    assert len(records) == 2
    # cut to 1 MiB with its 12-character RANDOM partition key, as into Kinesis
    assert len(records[0]) + 12 == MIB and records[0].endswith(b"<cut>\n")
    assert records[0].startswith(b"2024-01-01 start of a very long record\n    at com.example")
    assert records[1] == b"2024-01-02 the next record\n"
    assert "records_truncated=1" in err.decode()
