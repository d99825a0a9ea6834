"""HTTP/2 over cleartext (prior knowledge) for the endpoint, through the ``h2`` protocol library.

Why: the AWS SDK for JavaScript v3's Kinesis client sends every call over HTTP/2 (its default
request handler is NodeHttp2Handler), so with an ``http://`` endpoint it opens the connection with
the HTTP/2 preface. ``h2`` is optional: without it such a connection is refused with one log line
that says what to install (HTTP/1.1 clients are unaffected).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.endpoint.messages import Handler

log = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
READ_SIZE = 256 * 1024
# Request bodies one connection may hold at once (received, not yet answered), in max_body units.
# Without it, streams multiplied HTTP/1.1's one body per connection: 100 streams x 16 MiB.
MAX_HELD_BODIES = 4
REFUSED_STREAM = 7  # RFC 9113: the request was not processed; a client may send it again
_warned = False


def available() -> bool:
    global _warned
    try:
        import h2.connection  # noqa: F401
    except ImportError:
        if not _warned:
            _warned = True
            log.error(
                "an HTTP/2 client (such as the AWS SDK for JavaScript v3) connected to the "
                "Kinesis endpoint, but the h2 package is not installed: pip install "
                "'kinesis-agent[http2]', or give the client an HTTP/1.1 handler"
            )
        return False
    return True


async def serve_h2(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    *,
    idle_timeout: float,
    max_body: int,
) -> None:
    """One HTTP/2 connection whose preface has been read, until the client goes away."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    from agent.endpoint.messages import Request

    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    )
    conn.initiate_connection()
    conn.receive_data(PREFACE)
    writer.write(conn.data_to_send())
    pending: dict[int, tuple[dict[str, str], bytearray]] = {}
    windows: dict[int, asyncio.Event] = {}
    tasks: set[asyncio.Task[None]] = set()
    held = [0]  # bytes of request bodies this connection holds

    async def respond(stream_id: int, headers: dict[str, str], body: bytes) -> None:
        authority = headers.get(":authority")  # kept: the JavaScript SDK signs it by that name
        if authority is not None:
            headers.setdefault("host", authority)
        request = Request(
            headers.pop(":method", "GET"), headers.pop(":path", "/"), headers, bytes(body)
        )
        response = await handler(request)
        out = [(":status", str(response.status))]
        if response.stream is None:
            out.append(("content-length", str(len(response.body))))
        out += [(k.lower(), v) for k, v in response.headers if k.lower() != "connection"]
        try:
            if response.stream is None:
                conn.send_headers(stream_id, out, end_stream=not response.body)
                await send(stream_id, response.body, end=True)
            else:
                conn.send_headers(stream_id, out)
                async for chunk in response.stream:
                    await send(stream_id, chunk, end=False)
                    await writer.drain()
                conn.end_stream(stream_id)
            writer.write(conn.data_to_send())
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        finally:
            windows.pop(stream_id, None)
            held[0] -= len(body)

    async def send(stream_id: int, body: bytes, *, end: bool) -> None:
        """DATA frames within the peer's flow-control window, waiting for it to open."""
        data = memoryview(body)
        while data:
            room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if room <= 0:
                writer.write(conn.data_to_send())
                event = windows.setdefault(stream_id, asyncio.Event())
                event.clear()
                async with asyncio.timeout(idle_timeout):
                    await event.wait()
                continue
            chunk, data = data[:room], data[room:]
            conn.send_data(stream_id, bytes(chunk), end_stream=end and not data)
        writer.write(conn.data_to_send())

    try:
        while True:
            async with asyncio.timeout(idle_timeout):
                data = await reader.read(READ_SIZE)
            if not data:
                return
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                writer.write(conn.data_to_send())
                return
            for event in events:
                _dispatch(event, conn, pending, windows, tasks, respond, max_body, held, h2.events)
            writer.write(conn.data_to_send())
            await writer.drain()
            if any(isinstance(e, h2.events.ConnectionTerminated) for e in events):
                return
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)


def _dispatch(
    event: Any,
    conn: Any,
    pending: dict[int, tuple[dict[str, str], bytearray]],
    windows: dict[int, asyncio.Event],
    tasks: set[asyncio.Task[None]],
    respond: Any,
    max_body: int,
    held: list[int],
    events: Any,
) -> None:
    if isinstance(event, events.RequestReceived):
        headers: dict[str, str] = {}
        for name, value in event.headers:
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        pending[event.stream_id] = (headers, bytearray())
    elif isinstance(event, events.DataReceived):
        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        entry = pending.get(event.stream_id)
        if entry is not None:
            entry[1].extend(event.data)
            held[0] += len(event.data)
            if len(entry[1]) > max_body:
                held[0] -= len(pending.pop(event.stream_id)[1])
                conn.reset_stream(event.stream_id, error_code=11)  # ENHANCE_YOUR_CALM
            elif held[0] > MAX_HELD_BODIES * max_body:
                held[0] -= len(pending.pop(event.stream_id)[1])
                conn.reset_stream(event.stream_id, error_code=REFUSED_STREAM)
    elif isinstance(event, events.StreamEnded):
        entry = pending.pop(event.stream_id, None)
        if entry is not None:
            task = asyncio.create_task(respond(event.stream_id, *entry))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    elif isinstance(event, events.WindowUpdated):
        targets = windows.values() if event.stream_id == 0 else [windows.get(event.stream_id)]
        for waiting in targets:
            if waiting is not None:
                waiting.set()
    elif isinstance(event, events.StreamReset):
        dropped = pending.pop(event.stream_id, None)
        if dropped is not None:
            held[0] -= len(dropped[1])
