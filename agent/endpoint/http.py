"""A small asyncio HTTP/1.1 server: keep-alive, bounded headers and bodies, deadlines, a connection cap.

Enough HTTP for SDK clients (botocore/urllib3, the AWS CLI, the JavaScript SDK's node:http):
``Content-Length`` bodies, ``Expect: 100-continue``, persistent connections. A request's
headers must arrive within ``header_timeout`` of its first byte and its body within
``body_timeout``; an idle persistent connection is closed after ``idle_timeout``. Beyond
``max_connections`` a new connection gets a 503 and is closed, so a flood cannot exhaust the
process's descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from agent.endpoint import http2
from agent.endpoint.messages import Handler, Request

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
ONE_WRITE_BYTES = 256 * 1024  # bodies up to this are copied behind the head, sent as one write
REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpServer:
    """Serves ``handler`` on ``host:port`` (port 0: any free port, read ``port`` after start)."""

    def __init__(
        self,
        handler: Handler,
        host: str,
        port: int,
        *,
        max_connections: int = 256,
        max_body: int = 16 * 1024 * 1024,
        header_timeout: float = 10.0,
        body_timeout: float = 60.0,
        idle_timeout: float = 300.0,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.max_body = max_body
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.refused = 0  # connections answered 503 because of max_connections
        self._next_warning = 0.0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, limit=MAX_HEADER_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening and close every connection; twice is fine."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.max_connections:
            self.refused += 1
            now = time.monotonic()
            if now >= self._next_warning:
                self._next_warning = now + 60.0
                log.warning(
                    "Kinesis endpoint: %d connections open (the limit); refused %d so far",
                    self.max_connections,
                    self.refused,
                )
            writer.write(_head(503, [("Connection", "close")], 0))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # aclose(): the connection ends here; re-raising would make asyncio's stream
            # callback log the cancellation as an error
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            async with asyncio.timeout(self.idle_timeout):
                first = await reader.read(1)
            if not first:
                return
            try:
                read = await self._read_request(first, reader, writer)
            except BadRequest as exc:
                body = str(exc).encode()
                writer.write(_head(exc.status, [("Connection", "close")], len(body)) + body)
                await writer.drain()
                return
            if read is None:  # the HTTP/2 preface
                if http2.available():
                    await http2.serve_h2(
                        reader,
                        writer,
                        self.handler,
                        idle_timeout=self.idle_timeout,
                        max_body=self.max_body,
                    )
                return
            request, keep_alive = read
            response = await self.handler(request)
            headers = [*response.headers, ("Connection", "keep-alive" if keep_alive else "close")]
            if response.stream is not None:
                headers.append(("Transfer-Encoding", "chunked"))
                writer.write(_head(response.status, headers, None))
                async for chunk in response.stream:
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            elif len(response.body) <= ONE_WRITE_BYTES:
                # head and body in one segment: one send, and a client that reads the head
                # first is not left waiting for a second segment
                writer.write(_head(response.status, headers, len(response.body)) + response.body)
            else:
                writer.write(_head(response.status, headers, len(response.body)))
                writer.write(response.body)
            await writer.drain()
            if not keep_alive:
                return

    async def _read_request(
        self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Request, bool] | None:
        """The next request and whether the connection stays open; None for HTTP/2."""
        try:
            async with asyncio.timeout(self.header_timeout):
                head = first + await reader.readuntil(b"\r\n\r\n")
                if head == http2.PREFACE[:18]:
                    if await reader.readexactly(6) != http2.PREFACE[18:]:
                        raise BadRequest(400, "malformed HTTP/2 preface")
                    return None
        except TimeoutError:
            raise BadRequest(408, "request headers took too long") from None
        except asyncio.LimitOverrunError:
            raise BadRequest(400, "request headers too large") from None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest(400, "malformed request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise BadRequest(400, "malformed header line")
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        if "transfer-encoding" in headers:
            raise BadRequest(411, "chunked request bodies are not supported; send Content-Length")
        length_text = headers.get("content-length", "0")
        # isdigit() alone passes '²' (Latin-1), which int() refuses
        if not (length_text.isascii() and length_text.isdigit()):
            raise BadRequest(400, "malformed Content-Length")
        if len(length_text) > 18 or int(length_text) > self.max_body:
            raise BadRequest(413, f"request body over {self.max_body} bytes")
        length = int(length_text)
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await reader.readexactly(length) if length else b""
        except TimeoutError:
            raise BadRequest(408, "request body took too long") from None
        connection = headers.get("connection", "").lower()
        keep_alive = (
            "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        )
        return Request(method, target, headers, body), keep_alive


def _head(status: int, headers: list[tuple[str, str]], length: int | None) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines.append(f"x-amzn-RequestId: {uuid.uuid4()}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
