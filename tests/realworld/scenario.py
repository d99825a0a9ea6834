"""One rotation mode end to end: a real web server, real requests, the real logrotate, the real agent.

The agent ships ``access.log*`` through LOGTOJSON COMBINEDAPACHELOG into a local stream while the
driver sends requests and logrotate rotates; some runs SIGKILL the agent right after a rotation and
start it again. The ground truth is what the server left on disk at the end (every access log,
rotated and compressed ones decompressed): each of those lines must be delivered exactly once, and
each delivered record's fields must equal the line's independent parse and the request sent. A
request in no file on disk was lost by logrotate itself (copytruncate's copy-then-truncate window):
counted and listed apart, never hidden. Short lengths run in ``make test``, long ones in
``make soak``; both print :data:`HEADER` rows.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.peers.webservers import START
from tests.realworld.rotation import MODES, Logrotate, lines_on_disk, plain_rotated
from tests.realworld.traffic import (
    Driver,
    Sent,
    Unparsable,
    field_mismatches,
    line_id,
    parse_combined,
    window_mismatches,
)
from tests.support.agent import kill_agent, start_agent, stop_agent, wait_for
from tests.support.config import NO_CLOUDWATCH, local_flow_config
from tests.support.streams import stored_lines

STREAM = "web"
HEADER = (
    "| server | rotation mode | requests sent | lines on disk | delivered | lost | duplicated "
    "| lost in logrotate's window (of requests in no file) | field mismatches | rotations | SIGKILLs | seconds |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


@dataclass
class RealTally:
    """What one run sent, what the server left on disk, and what the agent delivered."""

    server: str
    mode: str
    sent: int = 0
    on_disk: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    window: int = 0  # sent, answered, in no file and not delivered: lost in logrotate's window
    window_sent: int = 0  # sent and in no file (the agent may have read some before the truncate)
    mismatches: int = 0
    rotations: int = 0
    kills: int = 0
    seconds: float = 0.0
    unparsable_on_disk: int = 0
    driver_errors: list[str] = field(default_factory=list)
    window_lines: list[str] = field(default_factory=list)
    lost_lines: list[str] = field(default_factory=list)
    duplicate_ids: list[int] = field(default_factory=list)
    mismatch_samples: list[str] = field(default_factory=list)

    def row(self) -> str:
        return (
            f"| {self.server} | {self.mode} | {self.sent} | {self.on_disk} | {self.delivered} | "
            f"{self.lost} | {self.duplicated} | {self.window} of {self.window_sent} | {self.mismatches} | "
            f"{self.rotations} | {self.kills} | {self.seconds:.0f} |"
        )

    def report(self) -> str:
        """The row and every exceptional line, for the test output."""
        out = [self.row()]
        if self.window_sent:
            out.append(
                f"  {self.window_sent} requests in no log file (logrotate's copytruncate window): "
                f"{self.window_sent - self.window} delivered (read before the truncate), "
                f"{self.window} lost:"
            )
            out += [f"    {w}" for w in self.window_lines]
        out += [f"  lost: {line}" for line in self.lost_lines[:20]]
        if self.duplicate_ids:
            out.append(f"  duplicated ids (first 20): {self.duplicate_ids[:20]}")
        out += [f"  mismatch: {m}" for m in self.mismatch_samples[:20]]
        out += [f"  driver error: {e}" for e in self.driver_errors[:20]]
        return "\n".join(out)


RESULTS: list[RealTally] = []  # every run in this process, for the summary table


def agent_config(tmp: Path, logs: Path) -> Path:
    return local_flow_config(
        tmp,
        logs / "access.log*",
        STREAM,
        NO_CLOUDWATCH,
        maxBufferAgeMillis=1000,
        maxTimeBetweenFileTrackerRefreshMillis=200,
        dataProcessingOptions=[{"optionName": "LOGTOJSON", "logFormat": "COMBINEDAPACHELOG"}],
    )


def holds_open(pid: int, path: Path) -> bool:
    """Whether the process has ``path`` open (it tails it)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        links = [os.readlink(fd) for fd in fds.iterdir()]
    except OSError:  # an fd closed while we looked: look again
        return False
    return str(path) in links


def delivered_records(tmp: Path) -> list[dict[str, Any]]:
    try:
        raw = stored_lines(tmp / "streams", STREAM)
    except Exception:  # the store is being created or written by the agent right now
        return []
    return [json.loads(r) for r in raw]


def delivered_ids(tmp: Path) -> Counter[int | None]:
    return Counter(line_id(r.get("request") or "") for r in delivered_records(tmp))


def ids_in(lines: list[bytes]) -> set[int | None]:
    return {line_id(line.decode("utf-8", "replace")) for line in lines}


def run_mode(
    tmp: Path,
    kind: str,
    mode_name: str,
    *,
    requests: int,
    rate: float,
    rotations: int,
    kills: int,
    seed: int = 11,
) -> RealTally:
    """One run; the tally is also appended to :data:`RESULTS`."""
    mode = MODES[mode_name]
    rng = random.Random(seed)
    began = time.monotonic()
    tally = RealTally(kind, mode_name)
    server = START[kind]()
    try:
        rotate = Logrotate(server, mode)
        config = agent_config(tmp, server.logs)
        log = tmp / "agent.log"
        proc = start_agent(config, log=log)
        try:
            driver = Driver(server.port, requests, rate, seed).start()
            # The agent tails access.log before traffic and rotations start: a generation moved
            # out of the pattern (olddir) before the agent first looked cannot be read by anyone.
            wait_for(
                lambda: holds_open(proc.pid, server.access_log),
                60,
                what="the agent to open access.log",
                log=log,
                interval=0.02,
            )
            driver.go()
            t0 = time.monotonic()
            duration = requests / rate
            # maxsize: logrotate runs often and rotates only when the file is past its size
            ticks = rotations if mode.force else rotations * 4
            kill_after = set(rng.sample(range(ticks), kills))
            last_second = 0
            for i in range(ticks):
                due = t0 + (i + 1) * duration / (ticks + 1)
                time.sleep(max(0.0, due - time.monotonic()))  # pacing the rotations in the run
                _before_rotation(rotate, tmp, last_second, _poll(requests, 0.1))
                rotate.run()
                # the second the run ended in: its rotation happened in it or before, so the next
                # one (dateext names copies by the second) waits for a later one
                last_second = int(time.time())
                if i in kill_after:
                    time.sleep(rng.uniform(0, 0.3))  # placing the kill somewhere in the reopen
                    kill_agent(proc)
                    tally.kills += 1
                    proc = start_agent(config, log=log)
            driver.join(duration + 60)
            on_disk = lines_on_disk(server, rotate)
            want = ids_in(on_disk)
            if not wait_delivered(tmp, want, interval=_poll(requests, 0.2)):
                tally.lost_lines.append(f"(delivery stalled; agent log {log})")
            # A few tracker refreshes for anything delivered twice to show up (it is counted, not
            # awaited); the stop below flushes whatever the agent has read by then.
            time.sleep(0.6)
        finally:
            assert stop_agent(proc) == 0, log.read_text()[-3000:]
        tally.rotations = len(rotate.rotated_files())
        _tally(tally, kind, driver.sent, on_disk, delivered_records(tmp))
        tally.driver_errors = driver.errors
    finally:
        server.stop()
    tally.seconds = time.monotonic() - began
    server.remove()
    RESULTS.append(tally)
    return tally


def wait_delivered(tmp: Path, want: set[int | None], interval: float, stall: float = 5.0) -> bool:
    """Until every id in ``want`` is delivered, or nothing new arrived for ``stall`` seconds (a
    line the agent skipped never arrives: the tally counts it lost, without a long timeout)."""
    seen, changed = -1, time.monotonic()
    while True:
        have = delivered_ids(tmp)
        if want <= set(have):
            return True
        now = time.monotonic()
        if sum(have.values()) != seen:
            seen, changed = sum(have.values()), now
        elif now - changed > stall:
            return False
        time.sleep(interval)


def _poll(requests: int, short: float) -> float:
    """Reading the store back costs in proportion to what it holds: poll long runs less often."""
    return short if requests <= 5_000 else 1.0


def _before_rotation(rotate: Logrotate, tmp: Path, last_second: int, interval: float) -> None:
    """What a mode needs before logrotate runs (``last_second``: when the last run ended)."""
    if rotate.mode.compress:
        # access.log.1 is compressed now: what the agent has not read of it is gone from its view
        # (issue 11 §3 makes that loud), so the run waits until the agent has read it, as a day
        # between rotations would.
        wait_delivered(tmp, ids_in(_read(plain_rotated(rotate))), interval)
    if rotate.mode.one_per_second:
        wait_for(lambda: int(time.time()) > last_second, 2, interval=0.02)


def _read(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().splitlines(keepends=True)
    except FileNotFoundError:
        return []


def _tally(
    tally: RealTally,
    kind: str,
    sent: list[Sent],
    on_disk: list[bytes],
    records: list[dict[str, Any]],
) -> None:
    by_seq = {s.seq: s for s in sent}
    logged: dict[int | None, list[dict[str, str | None]]] = {}
    for raw in on_disk:
        text = raw.decode("utf-8", "replace")
        try:
            fields = parse_combined(text)
        except Unparsable:
            tally.unparsable_on_disk += 1
            tally.lost_lines.append(f"unparsable on disk: {text!r}")
            continue
        logged.setdefault(line_id(fields["request"] or ""), []).append(fields)
    have = Counter(line_id(r.get("request") or "") for r in records)
    tally.sent = len(sent)
    tally.on_disk = len(on_disk)
    tally.delivered = len(records)
    for seq, lines in logged.items():
        got = have.get(seq, 0)
        if got < len(lines):
            tally.lost += len(lines) - got
            tally.lost_lines.append(f"R{seq}: {lines[0]['request']}")
        elif got > len(lines):
            tally.duplicated += got - len(lines)
            tally.duplicate_ids.append(-1 if seq is None else seq)
    for seq, got in have.items():
        if seq in logged:
            continue
        # In no file but sent: a line of logrotate's copytruncate window that the agent read
        # before the truncate. Once is right (the agent saved it); more is a duplicate. A record
        # that no request explains at all is a duplicate too.
        extra = got - 1 if seq in by_seq else got
        if extra:
            tally.duplicated += extra
            tally.duplicate_ids.append(-1 if seq is None else seq)
    for s in sent:
        if s.seq not in logged:
            tally.window_sent += 1
            if have.get(s.seq, 0) == 0:
                tally.window += 1
                line = s.request_line.decode("utf-8", "replace")
                tally.window_lines.append(f"R{s.seq}: {line}")
    for record in records:
        seq = line_id(record.get("request") or "")
        if seq in logged:
            problems = field_mismatches(
                kind, by_seq.get(seq) if seq is not None else None, logged[seq][0], record
            )
        elif seq is not None and seq in by_seq:
            problems = window_mismatches(kind, by_seq[seq], record)
        else:
            continue
        if problems:
            tally.mismatches += 1
            tally.mismatch_samples.append(f"R{seq}: " + "; ".join(problems))


def failures(tally: RealTally) -> list[str]:
    """What makes a run fail: anything lost, duplicated or different, a request in no log file
    outside copytruncate, a driver error."""
    out = []
    if tally.lost or tally.duplicated or tally.mismatches or tally.unparsable_on_disk:
        out.append(
            f"lost {tally.lost}, duplicated {tally.duplicated}, mismatches {tally.mismatches}, "
            f"unparsable {tally.unparsable_on_disk}"
        )
    if tally.window_sent and tally.mode != "copytruncate":
        out.append(f"{tally.window_sent} requests in no log file outside copytruncate")
    if tally.on_disk + tally.window_sent != tally.sent:
        out.append(f"{tally.sent} sent != {tally.on_disk} on disk + {tally.window_sent} in no file")
    if tally.driver_errors:
        out.append(f"{len(tally.driver_errors)} driver errors")
    return out
