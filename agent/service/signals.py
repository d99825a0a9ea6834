"""The daemon's process-level set-up: what its signals do, and the open-files limit it needs.

SIGTERM/SIGINT drain and stop, a second SIGINT exits at once, SIGHUP reloads the configuration
(:class:`agent.service.daemon.Agent` does each); apart from the agent so the lifecycle reads alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the agent installs these: a runtime import would be a cycle
    from agent.service.daemon import Agent

log = logging.getLogger(__name__)


def install_signal_handlers(agent: Agent, loop: asyncio.AbstractEventLoop) -> None:
    """SIGTERM/SIGINT: stop reading, drain, commit. A second SIGINT exits at once."""
    interrupts = 0

    def on_stop(signame: str) -> None:
        nonlocal interrupts
        if signame == "SIGINT":
            interrupts += 1
            if interrupts >= 2:
                log.warning("second SIGINT: exiting now (acknowledged data is already committed)")
                os._exit(130)
        if not agent.stop.is_set():
            log.info(
                "%s: stopping (draining for up to %d ms)",
                signame,
                agent.config.shutdown_timeout_millis,
            )
            agent.stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig.name)
    loop.add_signal_handler(signal.SIGHUP, agent.reload_requested.set)


def raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: the soft 1,024 is for select(), which we never use."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:  # pragma: no cover - a sandbox that forbids it
        log.warning("cannot raise the open-files limit: %s", exc)
