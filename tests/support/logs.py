"""The logs the agent tails in tests: unique numbered lines, appended, or written and rotated live.

Every line a test writes is unique (``<name> <seq>``), so what arrives can be compared with what
was written as a multiset: a line lost or sent twice shows.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent.records import Record


def numbered(
    name: str, start: int, count: int, width: int | Callable[[int], int] = 0
) -> list[bytes]:
    """``count`` lines ``<name> <seq>`` (seq from ``start``, 8 digits), each padded with a space
    and ``width`` x's (or ``width(seq)`` of them) if that is more than none."""
    pad = width if callable(width) else (lambda _: width)
    return [
        f"{name} {i:08d}{' ' + 'x' * pad(i) if pad(i) else ''}\n".encode()
        for i in range(start, start + count)
    ]


def logs_dir(tmp: Path) -> Path:
    """``tmp/logs`` (made if missing), where the usual configs look (tests.support.config)."""
    path = tmp / "logs"
    path.mkdir(exist_ok=True)
    return path


def line_records(count: int, name: str = "line", start: int = 0) -> list[Record]:
    """:func:`numbered` lines as the Records a reader makes of them, back to back from offset 0
    (for sinks and flows fed without a file)."""
    out: list[Record] = []
    offset = 0
    for line in numbered(name, start, count):
        out.append(Record(line, None, offset, offset + len(line)))
        offset += len(line)
    return out


def append(path: Path, lines: list[bytes]) -> list[bytes]:
    """Append ``lines`` to ``path`` in one write; returns them."""
    with open(path, "ab") as fh:
        fh.write(b"".join(lines))
    return lines


def write_log(path: Path, lines: int, width: int = 20) -> int:
    """``lines`` lines of ``width`` bytes each (newline included); returns the byte count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        for i in range(lines):
            fh.write(f"line {i:08d} ".ljust(width - 1, "x").encode() + b"\n")
    return lines * width


class Writers:
    """Numbered lines into several files; rename rotations (in and out of the pattern) and
    copytruncate, at random. ``written`` is every line, in order per file name."""

    def __init__(
        self,
        logs: Path,
        names: list[str],
        seed: int,
        *,
        rate_sleep: float = 0.004,
        rotate_out: Path | None = None,
        copytruncate: bool = True,
        rotate_chance: float = 0.02,
    ) -> None:
        self.rotate_chance = rotate_chance
        self.logs = logs
        self.names = names
        self.rng = random.Random(seed)
        self.rate_sleep = rate_sleep
        self.rotate_out = rotate_out
        self.copytruncate = copytruncate
        self.written: dict[str, list[bytes]] = {n: [] for n in names}
        self.rotations = 0
        self.copytruncates = 0
        self.rotated_out = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self) -> Writers:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def all(self) -> list[bytes]:
        return [line for lines in self.written.values() for line in lines]

    def prime(self) -> None:
        """One line in each file before the agent starts, so it knows every file's first
        generation (a file rotated out of the pattern before it was ever seen cannot be read)."""
        for name in self.names:
            line = f"{name} {0:08d} first\n".encode()
            with open(self.logs / f"{name}.log", "ab") as fh:
                fh.write(line)
            self.written[name].append(line)

    def run(self) -> None:
        seq = dict.fromkeys(self.names, 0)
        while not self.stop.is_set():
            name = self.rng.choice(self.names)
            live = self.logs / f"{name}.log"
            batch = []
            for _ in range(self.rng.randint(1, 40)):
                seq[name] += 1
                batch.append(f"{name} {seq[name]:08d} {'x' * self.rng.randint(0, 120)}\n".encode())
            with open(live, "ab") as fh:
                fh.write(b"".join(batch))
            self.written[name] += batch
            roll = self.rng.random()
            if roll < self.rotate_chance:
                self.rotations += 1
                if self.rotate_out is not None and self.rng.random() < 0.5:
                    self.rotated_out += 1  # out of the pattern: drained through the open fd
                    os.rename(live, self.rotate_out / f"{name}.{self.rotations}")
                else:
                    os.rename(live, self.logs / f"{name}.log.{self.rotations}")
            elif roll < self.rotate_chance * 1.5 and self.copytruncate:
                self.copytruncates += 1
                self.rotations += 1
                shutil.copyfile(live, self.logs / f"{name}.log.{self.rotations}")
                os.truncate(live, 0)
            time.sleep(self.rng.uniform(0, self.rate_sleep))
