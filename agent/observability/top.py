"""``kinesis-agent status`` and ``top``: the status snapshot drawn as tables with rich.

``status`` prints one snapshot; ``top`` redraws it every second (rich Live) until Ctrl+C or ``q``.
Rates come from the agent (its last ten seconds), so the first screen already shows them.
File names, destinations and errors reach the screen only through ``agent.printable``: a name
holding ``[/]`` or ``ESC[2J`` is shown, not obeyed.
"""

from __future__ import annotations

import contextlib
import select
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from agent.observability.status import StatusUnavailable
from agent.printable import plain, printable

STATUS_STYLE = {"running": "green", "failing": "bold red", "starting": "yellow", "stopped": "dim"}


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


def flows_table(snap: dict[str, Any]) -> Table:
    table = Table(title="flows", title_justify="left", expand=True)
    table.add_column("destination", ratio=3, overflow="fold")
    table.add_column("status")
    for name in ("parsed", "sent", "rec/s", "bytes/s", "errors", "retries", "in flight", "lag"):
        table.add_column(name, justify="right")
    for f in snap["flows"]:
        rates = f.get("rates", {})
        errors = f["record_send_errors"] + f["processing_errors"] + f["read_errors"]
        table.add_row(
            plain(f["destination"]),
            plain(f["status"], style=STATUS_STYLE.get(f["status"], "")),
            str(f["records_parsed"]),
            str(f["records_sent"]),
            f"{rates.get('records_sent_per_s', 0.0):.0f}",
            human_bytes(rates.get("bytes_sent_per_s", 0.0)),
            Text(str(errors), style="red" if errors else ""),
            str(f["retries"]),
            human_bytes(f["in_flight_bytes"]),
            f"{human_bytes(f['lag_bytes'])} {human_seconds(f['lag_seconds'])}",
        )
    return table


def files_table(snap: dict[str, Any]) -> Table:
    table = Table(title="files", title_justify="left", expand=True)
    table.add_column("file", ratio=3, overflow="fold")
    table.add_column("acknowledged", ratio=2)
    table.add_column("done", justify="right")
    table.add_column("size", justify="right")
    table.add_column("lag", justify="right")
    table.add_column("checkpoint age", justify="right")
    for f in snap["flows"]:
        for file in f["files"]:
            size = max(1, file["size"])
            done = min(1.0, file["checkpoint_offset"] / size) if file["size"] else 1.0
            name = plain(file["path"])
            if file["rotated"]:
                name.append(" (rotated)", style="dim")
            table.add_row(
                name,
                ProgressBar(total=size, completed=min(size, file["checkpoint_offset"])),
                f"{done:.0%}",
                human_bytes(file["size"]),
                f"{human_bytes(file['lag_bytes'])} {human_seconds(file['lag_seconds'])}",
                human_seconds(file["checkpoint_age_seconds"]),
            )
    return table


def capacity_lines(snap: dict[str, Any]) -> list[str]:
    from agent.observability.capacity import Capacity

    out = []
    for f in snap["flows"]:
        cap = f.get("capacity")
        if cap:
            fields = {k: v for k, v in cap.items() if k != "basis"}
            out.append(f"{f['destination']}: needs {Capacity(**fields).summary()}")
    return out


def _loop_lag(snap: dict[str, Any]) -> str:
    worst = snap.get("loop_lag_worst_seconds")
    if worst is None:  # an agent from before the loop measured itself
        return ""
    recent = snap.get("loop_lag_recent_seconds", 0.0)
    return f"  loop lag {recent * 1000:.0f} ms (worst {worst * 1000:.0f} ms)"


def render(snap: dict[str, Any]) -> RenderableType:
    errors = [f"{f['flow_id']}: {f['last_error']}" for f in snap["flows"] if f.get("last_error")]
    head = Text(
        f"kinesis-agent pid {snap['pid']}  up {human_seconds(snap['uptime_ms'] / 1000)}  "
        f"parsed {snap['records_parsed']} records ({human_bytes(snap['bytes_parsed'])})  "
        f"sent {snap['records_sent']} ({human_bytes(snap['bytes_sent'])})  "
        f"behind {human_bytes(snap['lag_bytes'])}" + _loop_lag(snap),
        style="bold",
    )
    parts: list[RenderableType] = [head, flows_table(snap), files_table(snap)]
    caps = [printable(line) for line in capacity_lines(snap)]
    if caps:
        parts.append(Text("capacity (busiest second of the last minute):\n  " + "\n  ".join(caps)))
    losses = lost_lines(snap)
    if losses:
        parts.append(Text("lost before they were read:\n  " + "\n  ".join(losses), style="red"))
    if errors:
        shown = "\n  ".join(printable(e) for e in errors)
        parts.append(Text("last errors:\n  " + shown, style="red"))
    return Group(*parts)


def lost_lines(snap: dict[str, Any]) -> list[str]:
    """Per flow: files truncated, replaced or gone before they were read to their end."""
    return [
        f"{f['destination']}: {f['unread_bytes_lost']} bytes unread in {f['files_lost']} file(s)"
        " (truncated, replaced or gone before they were read to their end; see the log)"
        for f in snap["flows"]
        if f.get("files_lost")
    ]


def print_status(snap: dict[str, Any], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or captured: no terminal width to respect
            console = Console(width=160)
    console.print(render(snap))


@contextlib.contextmanager
def _keys() -> Iterator[Callable[[float], str]]:
    """Read single keys from a terminal without echo; a no-op reader when stdin is not one."""
    if not sys.stdin.isatty():

        def wait(timeout: float) -> str:
            time.sleep(timeout)
            return ""

        yield wait
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def read(timeout: float) -> str:
        ready, _, _ = select.select([fd], [], [], timeout)
        return sys.stdin.read(1) if ready else ""

    try:
        yield read
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_top(fetch: Callable[[], dict[str, Any]], *, interval: float = 1.0) -> int:
    """Redraw until ``q`` or Ctrl+C; keep going (and say so) while the agent is unreachable."""
    console = Console()
    with _keys() as key, Live(console=console, screen=True, auto_refresh=False) as live:
        while True:
            try:
                view: RenderableType = render(fetch())
            except StatusUnavailable as exc:
                why = printable(str(exc))
                view = Text(f"{why}\nretrying every {interval:.0f}s (q to quit)", style="red")
            live.update(view, refresh=True)
            try:
                if key(interval).lower() == "q":
                    return 0
            except KeyboardInterrupt:
                return 0
