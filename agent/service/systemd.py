"""Talking to systemd: sd_notify messages (READY, STATUS, WATCHDOG, STOPPING) and journald logging.

Uses systemd-python when it is installed and falls back to the plain notify protocol (one datagram
of ``KEY=VALUE`` lines to ``$NOTIFY_SOCKET``) when it is not, so a laptop or a container without
libsystemd runs the agent unchanged. With no ``$NOTIFY_SOCKET`` every call is a cheap no-op.
A failed notification is logged, never raised: the daemon's work matters more than its report.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

from agent.printable import printable

log = logging.getLogger(__name__)

# sd_notify(3) sends one datagram; systemd reads at most this much of it (NOTIFY_BUFFER_MAX - 1).
_MAX_STATUS_CHARS = 1024
_SEND_TIMEOUT_SECONDS = 1.0

Sender = Callable[[str], bool]


def _libsystemd_sender() -> Sender | None:
    """systemd.daemon.notify when systemd-python is importable, else None.

    Imported by name: in a source tree the unit directory `systemd/` would shadow the binding
    for mypy (at run time an installed regular package wins over that namespace directory).
    """
    try:
        daemon = importlib.import_module("systemd.daemon")
    except ImportError:
        return None
    notify: Sender = daemon.notify
    return notify


def _socket_address(notify_socket: str) -> str | None:
    """The address to sendto: a path, or an abstract name for '@name' (leading NUL)."""
    if notify_socket.startswith("@"):
        return "\0" + notify_socket[1:]
    if notify_socket.startswith("/"):
        return notify_socket
    return None  # e.g. vsock:… (systemd ≥ 254 in VMs); not a place this agent runs


class _DatagramSender:
    """The notify protocol without libsystemd: one AF_UNIX datagram per message."""

    __slots__ = ("_address", "_sock")

    def __init__(self, address: str) -> None:
        self._address = address
        self._sock: socket.socket | None = None

    def __call__(self, message: str) -> bool:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # A stuck receiver must not freeze the event loop for long.
            self._sock.settimeout(_SEND_TIMEOUT_SECONDS)
        self._sock.sendto(message.encode(), self._address)
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Notifier:
    """Reports the daemon's state to systemd (sd_notify); every method is a no-op outside systemd.

    ``prefer_libsystemd=False`` forces the built-in datagram sender (tests, or a broken binding).
    The environment is read once, when the notifier is built.
    """

    __slots__ = ("_datagram", "_environ", "_send", "_warned")

    def __init__(
        self, environ: Mapping[str, str] | None = None, *, prefer_libsystemd: bool = True
    ) -> None:
        self._environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        self._warned = False
        self._datagram: _DatagramSender | None = None
        self._send: Sender | None = None
        address = _socket_address(self._environ.get("NOTIFY_SOCKET", ""))
        if address is None:
            if self._environ.get("NOTIFY_SOCKET"):
                log.warning(
                    "NOTIFY_SOCKET=%r is not a unix socket; systemd notifications are off",
                    self._environ["NOTIFY_SOCKET"],
                )
            return
        # libsystemd reads NOTIFY_SOCKET from the process environment itself, so it is used only
        # when that is the environment we were given.
        libsystemd = _libsystemd_sender() if prefer_libsystemd and environ is None else None
        if libsystemd is not None:
            self._send = libsystemd
        else:
            self._datagram = _DatagramSender(address)
            self._send = self._datagram

    @property
    def enabled(self) -> bool:
        """True when there is a systemd notify socket to talk to."""
        return self._send is not None

    def ready(self, status: str | None = None) -> None:
        """Startup is complete: every flow is running (Type=notify units become 'active' now)."""
        self._notify("READY=1", status)

    def status(self, text: str) -> None:
        """A one-line summary shown by `systemctl status` (flows, records/s, lag)."""
        self._notify(None, text)

    def watchdog(self) -> None:
        """The event loop is healthy; send at watchdog_interval() or systemd restarts us."""
        self._notify("WATCHDOG=1", None)

    def reloading(self, status: str | None = None) -> None:
        """A SIGHUP reload started; send ready() when it is done.

        MONOTONIC_USEC lets systemd ≥ 253 tie the message to the reload it asked for.
        """
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._notify(f"RELOADING=1\nMONOTONIC_USEC={now_usec}", status)

    def stopping(self, status: str | None = None) -> None:
        """Shutdown started: draining flows within shutdownTimeoutMillis."""
        self._notify("STOPPING=1", status)

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog() calls: half of WATCHDOG_USEC, None when no watchdog is asked.

        systemd sets WATCHDOG_PID too; when it names another process the watchdog is not ours
        (we inherited the environment from a parent).
        """
        try:
            usec = int(self._environ.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        if usec <= 0:
            return None
        pid = self._environ.get("WATCHDOG_PID")
        if pid is not None:
            try:
                if int(pid) != os.getpid():
                    return None
            except ValueError:
                return None
        return usec / 2 / 1_000_000

    def close(self) -> None:
        """Release the socket of the built-in sender; calling it twice is fine."""
        if self._datagram is not None:
            self._datagram.close()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _notify(self, state: str | None, status: str | None) -> None:
        if self._send is None:
            return
        lines = [] if state is None else [state]
        if status is not None:
            # One datagram of newline-separated assignments: a newline would end STATUS early.
            one_line = " ".join(status.split())[:_MAX_STATUS_CHARS]
            lines.append(f"STATUS={one_line}")
        try:
            self._send("\n".join(lines))
        except OSError as exc:
            # Once is enough: a watchdog ping every few seconds would flood the log.
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd (%s): %s", self._environ["NOTIFY_SOCKET"], exc)


# --- logging --------------------------------------------------------------------------------

_HANDLER_MARK = "_kinesis_agent_handler"
_STDERR_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_STDERR_DATEFMT = "%Y-%m-%dT%H:%M:%S"


class _PrintableFormatter(logging.Formatter):
    """Lines for stderr (often a terminal): file names come from whoever can write a watched
    directory, so control characters are shown as escapes (``\\x1b``), never sent to the
    terminal; newlines stay, multi-line messages and tracebacks keep their layout."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), keep_layout=True)


class _SyslogPrefixFormatter(_PrintableFormatter):
    """'<3>name: message' lines: journald reads the '<N>' prefix as the priority (sd-daemon.h)."""

    _PRIORITIES = (
        (logging.CRITICAL, 2),
        (logging.ERROR, 3),
        (logging.WARNING, 4),
        (logging.INFO, 6),
    )

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for lvl, p in self._PRIORITIES if record.levelno >= lvl), 7)
        text = super().format(record)
        # Each line would become its own journal entry; keep them all at the record's priority.
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def _stderr_is_journal(environ: Mapping[str, str], stream: TextIO) -> bool:
    """JOURNAL_STREAM names the journal's 'dev:inode'; it is ours only if stderr is still that."""
    value = environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def _journal_handler() -> logging.Handler | None:
    try:
        journal = importlib.import_module("systemd.journal")
    except ImportError:
        return None
    handler: logging.Handler = journal.JournalHandler(SYSLOG_IDENTIFIER="kinesis-agent")
    return handler


def configure_logging(
    level: int | str = logging.INFO,
    *,
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send the agent's logs to the journal under systemd, to stderr otherwise; returns the handler.

    Under systemd (INVOCATION_ID or a JOURNAL_STREAM that is our stderr) systemd-python's
    JournalHandler keeps structured fields; without it, stderr lines carry '<N>' priorities.
    Calling it again replaces the handler it installed before.
    """
    env = os.environ if environ is None else environ
    out = sys.stderr if stream is None else stream
    under_journal = _stderr_is_journal(env, out)
    under_systemd = under_journal or bool(env.get("INVOCATION_ID"))

    handler = _journal_handler() if under_systemd else None
    if handler is None:
        handler = logging.StreamHandler(out)
        if under_journal:
            # journald stamps time and unit itself
            handler.setFormatter(_SyslogPrefixFormatter("%(name)s: %(message)s"))
        else:
            handler.setFormatter(_PrintableFormatter(_STDERR_FORMAT, _STDERR_DATEFMT))
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
