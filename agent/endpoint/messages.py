"""What an HTTP/1.1 or HTTP/2 connection hands the API and gets back: a request, a response.

Their own module so the HTTP/1.1 server (which hands a connection over to HTTP/2) and the HTTP/2
connection (which builds requests) share them without importing each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ","
    body: bytes


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: AsyncIterator[bytes] | None = None  # a body of unknown length, sent as it comes


Handler = Callable[[Request], Awaitable[Response]]
