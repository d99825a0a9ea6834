"""An in-process Kinesis endpoint on its own event-loop thread, for tests that reach inside it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.endpoint.limits import ShardLimits
from agent.endpoint.server import KinesisEndpoint
from agent.endpoint.sigv4 import KeyPair


@contextmanager
def endpoint_thread(
    store: Path, *, keys: KeyPair | None = None, limits: ShardLimits | None = None
) -> Iterator[KinesisEndpoint]:
    """A started KinesisEndpoint on 127.0.0.1 (any port), closed on exit."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        endpoint = KinesisEndpoint(store, "127.0.0.1:0", keys=keys, limits=limits)
        stop = asyncio.Event()
        try:
            await endpoint.start()
            box.update(endpoint=endpoint, loop=asyncio.get_running_loop(), stop=stop)
        except BaseException as exc:
            box["error"] = exc
            raise
        finally:
            ready.set()
        try:
            await stop.wait()
        finally:
            await endpoint.aclose()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in box:
        raise box["error"]
    try:
        yield box["endpoint"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)
