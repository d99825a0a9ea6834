"""Shared pieces of the benchmarks: generated logs, timing a child process, medians."""

from __future__ import annotations

import os
import random
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.support, for the benches that import this module first


def apache_line(i: int, rng: random.Random) -> bytes:
    """A combined-log line of about 200 bytes with a unique request id."""
    return (
        f"198.51.100.{rng.randint(1, 254)} - - [22/Nov/2026:10:{i // 60 % 60:02d}:{i % 60:02d} +0000] "
        f'"GET /shop/items/{rng.randint(1, 99999)}?ref=campaign-{rng.randint(1, 999)}&rid={i:09d} HTTP/1.1" '
        f'{rng.choice((200, 200, 200, 304, 404))} {rng.randint(200, 90000)} "https://example.com/page/{rng.randint(1, 999)}" '
        f'"Mozilla/5.0 (X11; Linux x86_64) bench/{rng.randint(1, 99)}"\n'
    ).encode()


def csv_line(i: int, rng: random.Random) -> bytes:
    """A CSV access record of about 150 bytes, one quoted field with a comma inside."""
    return (
        f"2026-11-22T10:{i // 60 % 60:02d}:{i % 60:02d}Z,web-{rng.randint(1, 40):02d},"
        f"198.51.100.{rng.randint(1, 254)},GET,/shop/items/{rng.randint(1, 99999)},"
        f"{rng.choice((200, 200, 200, 304, 404))},{rng.randint(200, 90000)},"
        f'{rng.random():.4f},"Mozilla/5.0 (X11; Linux x86_64), bench/{rng.randint(1, 99)}",{i:09d}\n'
    ).encode()


def syslog_line(i: int, rng: random.Random) -> bytes:
    """An RFC 3164 syslog line of about 120 bytes."""
    return (
        f"Nov 22 10:{i // 60 % 60:02d}:{i % 60:02d} web-{rng.randint(1, 40):02d} "
        f"sshd[{rng.randint(100, 65000)}]: Accepted publickey for deploy from "
        f"203.0.113.{rng.randint(1, 254)} port {rng.randint(1024, 65535)} ssh2 seq={i:09d}\n"
    ).encode()


LINE_MAKERS = {"apache": apache_line, "csv": csv_line, "syslog": syslog_line}


def make_log(path: Path, lines: int, seed: int = 1, kind: str = "apache") -> Path:
    """Generate (once; reused while its line count matches) a log of ``lines`` lines of ``kind``."""
    if (
        path.exists()
        and path.with_suffix(".lines").exists()
        and path.with_suffix(".lines").read_text() == str(lines)
    ):
        return path
    rng = random.Random(seed)
    make_line = LINE_MAKERS[kind]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        chunk = []
        for i in range(lines):
            chunk.append(make_line(i, rng))
            if len(chunk) == 10000:
                fh.write(b"".join(chunk))
                chunk = []
        fh.write(b"".join(chunk))
    path.with_suffix(".lines").write_text(str(lines))
    return path


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float
    returncode: int


def timed(
    cmd: list[str], env: dict[str, str] | None = None, stdout: int | None = subprocess.DEVNULL
) -> Run:
    """Run a command to completion; wall seconds, its CPU seconds and peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=stdout, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})}
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode)


def agent_once(config: Path) -> Run:
    return timed([sys.executable, "-m", "agent", "run", "--once", "-c", str(config)])


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


_ = resource  # keep the import for platforms where wait4 needs it documented
