"""A fault-injecting HTTP proxy for the Kinesis JSON API, in front of kinesalite (127.0.0.1 only).

No emulator throttles, so this one does what real Kinesis does under load: it marks chosen
PutRecords entries ProvisionedThroughputExceededException (removing them from the request it
forwards, so the server never stores a rejected entry, and rebuilding the answer in the original
order with the right FailedRecordCount), answers 500/503, resets connections before forwarding,
stalls, and loses responses (forwards, then drops the connection, so the client cannot know).

The proxy runs its own event loop in a thread, so synchronous tests, boto3 clients and separate
agent processes can all talk to it. Faults apply to PutRecords only; every other call passes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import socket
import struct
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

PUT_RECORDS = "Kinesis_20131202.PutRecords"


@dataclass(frozen=True)
class Fault:
    """What to do with one PutRecords request.

    kind: "pass" | "delay" | "throttle" | "status" | "reset" | "stall" | "lost".
    delay: wait ``seconds``, then forward normally (a slow but healthy service).
    throttle: ``indices`` are the entries to reject (None: ``fraction`` of them, chosen at random).
    status: ``status`` is the HTTP status to answer (500 or 503) without forwarding.
    stall: wait ``seconds``, then close without forwarding.
    """

    kind: str = "pass"
    indices: frozenset[int] | None = None
    fraction: float = 0.5
    status: int = 500
    seconds: float = 1.0


PASS = Fault("pass")


def at_random(*faults: Fault, weights: list[int]) -> Callable[[random.Random], Fault]:
    """A chooser for :meth:`FaultProxy.choose_with`: each request meets one of ``faults`` (PASS
    among them, for the requests that go through), drawn by ``weights``."""
    return lambda rng: rng.choices(faults, weights=weights)[0]


# Throttling (30% of a call's entries), 500, 503 and resets: the weather of a loaded stream.
CHAOS = at_random(
    PASS,
    Fault("throttle", fraction=0.3),
    Fault("status", status=500),
    Fault("status", status=503),
    Fault("reset"),
    weights=[4, 4, 1, 1, 1],
)


@dataclass
class Event:
    """One PutRecords request as the proxy saw it."""

    fault: str
    received: list[bytes]  # every entry's data, in request order
    forwarded: list[bytes]  # entries the server stored (got through to kinesalite)
    rejected: list[bytes] = field(default_factory=list)  # entries answered as throttled


class FaultProxy:
    """Start with ``with FaultProxy(port) as proxy:``; point clients at ``proxy.endpoint``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", seed: int = 1) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.rng = random.Random(seed)
        self.script: deque[Fault] = deque()
        self.chooser: Callable[[random.Random], Fault] | None = None
        self.events: list[Event] = []
        self.requests = 0
        self.user_agents: list[tuple[str | None, str | None]] = []  # (X-Amz-Target, User-Agent)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        # The event loop holds tasks only weakly. A client that half-closes (or a SIGKILLed agent)
        # stops its connection being polled; while the proxy then waits on the upstream, nothing
        # else reaches the handler task, and a garbage collection would destroy it mid-request.
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0

    # --- control (any thread) -----------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def plan(self, *faults: Fault) -> None:
        """Queue faults for the next PutRecords requests, one each; afterwards ``chooser`` or pass."""
        with self._lock:
            self.script.extend(faults)

    def choose_with(self, chooser: Callable[[random.Random], Fault] | None) -> None:
        with self._lock:
            self.chooser = chooser

    def _next_fault(self) -> Fault:
        with self._lock:
            if self.script:
                return self.script.popleft()
            if self.chooser is not None:
                return self.chooser(self.rng)
            return PASS

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            # a connection accepted just before the close starts its task during the first round
            while tasks := asyncio.all_tasks(loop):
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    # --- HTTP ---------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        try:
            while True:
                request = await _read_message(reader)
                if request is None:
                    break
                start_line, headers, body = request
                target = _header(headers, "x-amz-target")
                with self._lock:
                    self.user_agents.append((target, _header(headers, "user-agent")))
                if target != PUT_RECORDS:
                    status, rheaders, rbody = await self._forward(start_line, headers, body)
                    await _write_response(writer, status, rheaders, rbody)
                    continue
                with self._lock:
                    self.requests += 1
                if not await self._put_records(writer, start_line, headers, body):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # proxy shutting down; ending normally keeps asyncio's stream callback quiet
            pass
        finally:
            writer.close()

    async def _put_records(
        self, writer: asyncio.StreamWriter, start_line: bytes, headers: list[bytes], body: bytes
    ) -> bool:
        """Apply the next fault; False when the connection was dropped."""
        fault = self._next_fault()
        doc = json.loads(body)
        entries = doc.get("Records", [])
        received = [base64.b64decode(e["Data"]) for e in entries]
        if fault.kind == "reset":
            self._log(Event("reset", received, []))
            _abort(writer)
            return False
        if fault.kind == "stall":
            self._log(Event("stall", received, []))
            await asyncio.sleep(fault.seconds)
            _abort(writer)
            return False
        if fault.kind == "status":
            self._log(Event(f"status {fault.status}", received, []))
            code = "InternalFailure" if fault.status == 500 else "ServiceUnavailableException"
            await _write_json(writer, fault.status, {"__type": code, "message": "injected"})
            return True
        if fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        rejected: set[int] = set()
        if fault.kind == "throttle":
            if fault.indices is not None:
                rejected = {i for i in fault.indices if i < len(entries)}
            else:
                rejected = {i for i in range(len(entries)) if self.rng.random() < fault.fraction}
        kept = [e for i, e in enumerate(entries) if i not in rejected]
        upstream: list[dict[str, object]] = []
        status = 200
        rheaders: list[bytes] = []
        rbody = b""
        if kept:
            doc["Records"] = kept
            status, rheaders, rbody = await self._forward(
                start_line, headers, json.dumps(doc).encode()
            )
            if status != 200:  # a real error from the server: hand it back untouched
                self._log(Event("server-error", received, []))
                await _write_response(writer, status, rheaders, rbody)
                return True
            upstream = json.loads(rbody)["Records"]
        forwarded = [received[i] for i in range(len(entries)) if i not in rejected]
        self._log(Event(fault.kind, received, forwarded, [received[i] for i in sorted(rejected)]))
        if fault.kind == "lost":
            _abort(writer)
            return False
        if not rejected:
            await _write_response(writer, status, rheaders, rbody)
            return True
        stream = doc.get("StreamName", "")
        answers: list[dict[str, object]] = []
        it = iter(upstream)
        failed = 0
        for i in range(len(entries)):
            if i in rejected:
                failed += 1
                answers.append(
                    {
                        "ErrorCode": "ProvisionedThroughputExceededException",
                        "ErrorMessage": f"Rate exceeded for shard in stream {stream} (injected).",
                    }
                )
            else:
                answer = next(it)
                if "ErrorCode" in answer:
                    failed += 1
                answers.append(answer)
        await _write_json(writer, 200, {"FailedRecordCount": failed, "Records": answers})
        return True

    def _log(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    async def _forward(
        self, start_line: bytes, headers: list[bytes], body: bytes
    ) -> tuple[int, list[bytes], bytes]:
        reader, writer = await asyncio.open_connection(*self.upstream)
        try:
            out = [start_line]
            for h in headers:
                name = h.split(b":", 1)[0].strip().lower()
                if name not in (b"content-length", b"connection", b"transfer-encoding"):
                    out.append(h)
            out.append(b"Content-Length: %d" % len(body))
            out.append(b"Connection: close")
            writer.write(b"\r\n".join(out) + b"\r\n\r\n" + body)
            await writer.drain()
            message = await _read_message(reader, response=True)
            if message is None:
                raise ConnectionError("upstream closed without answering")
            status_line, rheaders, rbody = message
            return int(status_line.split()[1]), rheaders, rbody
        finally:
            writer.close()


def _header(headers: list[bytes], name: str) -> str | None:
    want = name.encode().lower()
    for h in headers:
        key, _, value = h.partition(b":")
        if key.strip().lower() == want:
            return value.strip().decode("latin-1")
    return None


async def _read_message(
    reader: asyncio.StreamReader, response: bool = False
) -> tuple[bytes, list[bytes], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    lines = head[:-4].split(b"\r\n")
    start_line, headers = lines[0], lines[1:]
    length = _header(headers, "content-length")
    if length is not None:
        body = await reader.readexactly(int(length))
    elif _header(headers, "transfer-encoding") == "chunked":
        body = await _read_chunked(reader)
    elif response:
        body = await reader.read()  # Connection: close delimits the body
    else:
        body = b""
    return start_line, headers, body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _write_response(
    writer: asyncio.StreamWriter, status: int, headers: list[bytes], body: bytes
) -> None:
    out = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Status"))]
    for h in headers:
        name = h.split(b":", 1)[0].strip().lower()
        if name not in (b"content-length", b"connection", b"transfer-encoding"):
            out.append(h)
    out.append(b"Content-Length: %d" % len(body))
    writer.write(b"\r\n".join(out) + b"\r\n\r\n" + body)
    await writer.drain()


async def _write_json(writer: asyncio.StreamWriter, status: int, doc: object) -> None:
    headers = [
        b"Content-Type: application/x-amz-json-1.1",
        b"x-amzn-RequestId: " + str(uuid.uuid4()).encode(),
    ]
    await _write_response(writer, status, headers, json.dumps(doc).encode())


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed or overloaded front end does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
