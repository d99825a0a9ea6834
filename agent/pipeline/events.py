"""Waits on asyncio events with a deadline: the pipeline's parts wake each other, never poll fast."""

from __future__ import annotations

import asyncio


async def wait(event: asyncio.Event, timeout: float | None) -> None:
    """Until ``event`` is set or ``timeout`` seconds pass (None: no deadline)."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass


async def wait_any(a: asyncio.Event, b: asyncio.Event, timeout: float) -> None:
    """Until either event is set or ``timeout`` seconds pass."""
    if a.is_set() or b.is_set():
        return
    tasks = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
