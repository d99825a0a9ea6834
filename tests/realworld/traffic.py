"""Real HTTP requests, each one traceable, and what a web server must have logged for it.

The driver speaks HTTP/1.1 over plain sockets (IPv4 and IPv6 clients), so it sends exactly the bytes
it means: raw quotes, backslashes and UTF-8 in the target, empty and missing Referer/User-Agent,
methods with and without a body. Every target carries ``id=R<seq>``, which traces a logged line (and
a delivered record) back to the request.

:func:`parse_combined` reads a combined-format line with a hand-written scanner, independent of the
agent's regular expressions; :func:`expected_fields` says what the server must log for a request,
from the server's documented escaping (nginx: ``\\xHH`` for ``"``, ``\\``, controls and bytes
>= 0x7f; Apache's ap_escape_logitem: ``\\"``, ``\\\\``, ``\\t``…, ``\\xhh``).
"""

from __future__ import annotations

import base64
import random
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

ID = re.compile(r"[?&]id=R(\d+)")

METHODS = ["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
PATHS = ["/index.html", "/index.html", "/moved", "/ok", "/missing/page", "/missing/ü-ñ/日本"]
QUERIES: list[bytes] = [
    b"",
    b"&q=%22quoted%22",
    b'&q="raw"quotes"',
    b"&q='single'",
    b"&q=caf%C3%A9&x=%25%00%5C",
    "&q=café".encode(),
    b"&q=back\\slash\\",
    b"&empty=&q=a+b",
]
REFERERS: list[bytes | None] = [
    None,
    None,
    b"",
    b"http://example.test/page",
    b'http://example.test/a?b="c"',
    "https://例え.test/ü?q=\\x22".encode(),
]
AGENTS: list[bytes | None] = [
    None,
    b"",
    b"Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
    b"Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
    "Mözilla/5.0 “smart” 日本語".encode(),
    b'curl "quoted" \\ back\ttab',
]


@dataclass(frozen=True)
class Sent:
    """One request as sent, and the response as received."""

    seq: int
    family: int
    method: str
    target: bytes
    referer: bytes | None  # None: no header
    agent: bytes | None
    user: str | None  # Basic credentials sent
    status: int
    body_bytes: int
    started: float  # wall clock, for the logged time
    finished: float

    @property
    def host(self) -> str:
        return "::1" if self.family == socket.AF_INET6 else "127.0.0.1"

    @property
    def request_line(self) -> bytes:
        return self.method.encode() + b" " + self.target + b" HTTP/1.1"


def request_bytes(
    method: str, target: bytes, referer: bytes | None, agent: bytes | None, user: str | None
) -> bytes:
    head = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: localhost"]
    if referer is not None:
        head.append(b"Referer: " + referer)
    if agent is not None:
        head.append(b"User-Agent: " + agent)
    if user is not None:
        head.append(b"Authorization: Basic " + base64.b64encode(f"{user}:secret".encode()))
    body = b"field=value&other=%22x%22" if method in ("POST", "PUT", "PATCH") else b""
    if body:
        head += [
            b"Content-Type: application/x-www-form-urlencoded",
            b"Content-Length: %d" % len(body),
        ]
    head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def exchange(family: int, port: int, payload: bytes, head_only: bool) -> tuple[int, int]:
    """Send one request, read the whole response: (status, body length)."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect((host, port))
        s.sendall(payload)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    headers, _, body = response.partition(b"\r\n\r\n")
    status = int(headers.split(b" ", 2)[1])
    assert b"transfer-encoding: chunked" not in headers.lower(), headers
    return status, 0 if head_only else len(body)


class Driver:
    """Sends ``count`` requests at about ``rate`` per second from a thread; ``sent`` grows as
    responses arrive. Deterministic per seed (the mix, not the timing). After the first request it
    waits for :meth:`go`, so the run can make sure the agent tails the log before traffic flows."""

    def __init__(self, port: int, count: int, rate: float, seed: int) -> None:
        self.port = port
        self.count = count
        self.rate = rate
        self.rng = random.Random(seed)
        self.sent: list[Sent] = []
        self.errors: list[str] = []
        self.released = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def go(self) -> None:
        self.released.set()

    def start(self) -> Driver:
        self.thread.start()
        return self

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the request driver did not finish"

    def done(self) -> bool:
        return not self.thread.is_alive()

    def _run(self) -> None:
        began = time.monotonic()
        for seq in range(self.count):
            if seq == 1:
                self.released.wait(120)
                began = time.monotonic() - 1 / self.rate
            due = began + seq / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing: a bounded request rate, not a wait for an event
            try:
                self.sent.append(self._one(seq))
            except (OSError, ValueError, IndexError) as exc:
                self.errors.append(f"R{seq}: {exc!r}")

    def _one(self, seq: int) -> Sent:
        rng = self.rng
        family = rng.choice([socket.AF_INET, socket.AF_INET6])
        method = rng.choice(METHODS)
        target = f"{rng.choice(PATHS)}?id=R{seq:07d}".encode() + rng.choice(QUERIES)
        referer = rng.choice(REFERERS)
        agent = rng.choice(AGENTS)
        user = "alice" if rng.random() < 0.2 else None
        started = time.time()
        payload = request_bytes(method, target, referer, agent, user)
        status, length = exchange(family, self.port, payload, method == "HEAD")
        return Sent(
            seq, family, method, target, referer, agent, user, status, length, started, time.time()
        )


# --- what the server logs ------------------------------------------------------------------------


def nginx_escape(raw: bytes) -> str:
    return "".join(
        f"\\x{b:02X}" if b < 0x20 or b in (0x22, 0x5C) or b >= 0x7F else chr(b) for b in raw
    )


_APACHE_NAMED = {0x08: "\\b", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v"}


def apache_escape(raw: bytes) -> str:
    out = []
    for b in raw:
        if b in _APACHE_NAMED:
            out.append(_APACHE_NAMED[b])
        elif b in (0x22, 0x5C):
            out.append("\\" + chr(b))
        elif b < 0x20 or b >= 0x7F:
            out.append(f"\\x{b:02x}")
        else:
            out.append(chr(b))
    return "".join(out)


def expected_fields(kind: str, sent: Sent) -> dict[str, str | None]:
    """The fields (as LOGTOJSON names them; ``-`` is null) the server must log for a request;
    ``datetime`` is checked separately (the driver cannot know the server's second)."""
    escape = nginx_escape if kind == "nginx" else apache_escape

    def quoted(value: bytes | None) -> str | None:
        return None if value is None else escape(value)

    if kind == "nginx":
        authuser = sent.user  # nginx's $remote_user is the Basic user name, checked or not
        size: str | None = str(sent.body_bytes)
    else:
        authuser = None  # Apache's %u: only a user an auth module accepted
        size = str(sent.body_bytes) if sent.body_bytes else None  # %b: "-" for no body
    return {
        "host": sent.host,
        "ident": None,
        "authuser": authuser,
        "request": escape(sent.request_line),
        "response": str(sent.status),
        "bytes": size,
        "referer": quoted(sent.referer),
        "agent": quoted(sent.agent),
    }


# --- an independent reading of a combined-format line --------------------------------------------


class Unparsable(ValueError):
    """Not a combined-format line."""


def parse_combined(line: str) -> dict[str, str | None]:
    """host ident authuser [datetime] "request" status bytes "referer" "agent", scanned by hand;
    a quoted field ends at the first quote not preceded by a backslash escape. ``-`` is null."""
    pos = 0

    def token() -> str:
        nonlocal pos
        end = line.find(" ", pos)
        if end < 0:
            raise Unparsable(line)
        value, pos = line[pos:end], end + 1
        return value

    def bracketed() -> str:
        nonlocal pos
        if line[pos : pos + 1] != "[":
            raise Unparsable(line)
        end = line.index("]", pos)
        value, pos = line[pos + 1 : end], end + 2
        return value

    def quoted() -> str:
        nonlocal pos
        if line[pos : pos + 1] != '"':
            raise Unparsable(line)
        i = pos + 1
        while line[i] != '"':
            i += 2 if line[i] == "\\" else 1
        value, pos = line[pos + 1 : i], i + 2
        return value

    try:
        host, ident, user = token(), token(), token()
        when = bracketed()
        request = quoted()
        status, size = token(), token()
        referer = quoted()
        agent = quoted()
    except (IndexError, ValueError) as exc:
        raise Unparsable(line) from exc
    if pos < len(line.rstrip("\n")):
        raise Unparsable(line)
    fields = {
        "host": host,
        "ident": ident,
        "authuser": user,
        "datetime": when,
        "request": request,
        "response": status,
        "bytes": size,
        "referer": referer,
        "agent": agent,
    }
    return {k: None if v == "-" else v for k, v in fields.items()}


def line_id(text: str) -> int | None:
    m = ID.search(text)
    return int(m.group(1)) if m else None


def parse_clf_time(value: str) -> float:
    import datetime

    return datetime.datetime.strptime(value, "%d/%b/%Y:%H:%M:%S %z").timestamp()


def field_mismatches(
    kind: str, sent: Sent | None, logged: dict[str, str | None], record: dict[str, Any]
) -> list[str]:
    """Each way a delivered record differs from the logged line, or the line from the request."""
    out = [
        f"{k}: delivered {record.get(k)!r}, logged {v!r}"
        for k, v in logged.items()
        if record.get(k) != v
    ]
    out += [f"unexpected field {k!r}" for k in sorted(set(record) - set(logged))]
    if sent is not None:
        for k, v in expected_fields(kind, sent).items():
            if logged.get(k) != v:
                out.append(f"{k}: logged {logged.get(k)!r}, request implies {v!r}")
        when = parse_clf_time(logged["datetime"] or "")
        if not sent.started - 1.5 <= when <= sent.finished + 1.5:
            out.append(f"datetime {logged['datetime']} outside the request's time")
    return out


def window_mismatches(kind: str, sent: Sent, record: dict[str, Any]) -> list[str]:
    """A delivered record of a line no file kept (logrotate's window): checked against the request."""
    out = [
        f"{k}: delivered {record.get(k)!r}, request implies {v!r}"
        for k, v in expected_fields(kind, sent).items()
        if record.get(k) != v
    ]
    when = parse_clf_time(record.get("datetime") or "")
    if not sent.started - 1.5 <= when <= sent.finished + 1.5:
        out.append(f"datetime {record.get('datetime')} outside the request's time")
    return out
