"""The Kinesis endpoint as a component: a store connection, the API, and its HTTP listener.

Used by the agent (``localStore.listen``) and by ``kinesis-agent serve``. The endpoint opens its
own connection to the store, so the agent's writer never waits on a consumer's reads (WAL readers
do not block the writer), and runs the operations on a few threads of its own so a slow SQLite
call never stalls the event loop the agent's flows share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from agent.config.listen import parse_endpoint_listen
from agent.endpoint import fanout
from agent.endpoint.api import CONTENT_TYPE, Api
from agent.endpoint.http import HttpServer
from agent.endpoint.iterators import IteratorCodec, load_key
from agent.endpoint.limits import ShardLimits
from agent.endpoint.messages import Request, Response
from agent.endpoint.sigv4 import KeyPair
from agent.errors import StoreError
from agent.store.sqlite import WAL_SIZE_LIMIT
from agent.store.store import StreamStore

log = logging.getLogger(__name__)

WORKERS = 4
CHECKPOINT_INTERVAL = 0.5  # seconds between the endpoint's WAL checkpoints while it changes
# A WAL past this gets a TRUNCATE checkpoint: under writes without pause the passive ones copy
# everything but the WAL never starts over (1.7 GB of WAL after 6 s of 500-record puts).
WAL_TRUNCATE_BYTES = WAL_SIZE_LIMIT
# How long that checkpoint waits for a writer or reader in progress (it holds new writers off
# meanwhile); busy, it is tried again at the next interval.
CHECKPOINT_BUSY_TIMEOUT = 1.0


class KinesisEndpoint:
    """Serves the store in ``directory`` as Kinesis on ``listen`` until closed."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        listen: str,
        *,
        keys: KeyPair | None = None,
        limits: ShardLimits | None = None,
        retention_hours: int = 24,
        max_connections: int = 256,
    ) -> None:
        self.directory = Path(directory)
        self.host, port = parse_endpoint_listen(listen)
        self._keys = keys
        self._limits = limits
        self._retention_hours = retention_hours
        self._store: StreamStore | None = None
        self._checkpointer: StreamStore | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.api: Api | None = None
        self.http = HttpServer(self._handle, self.host, port, max_connections=max_connections)

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        store = await loop.run_in_executor(None, lambda: StreamStore.open(self.directory))
        checkpointer: StreamStore | None = None
        try:
            codec = IteratorCodec(load_key(self.directory))
            self.api = Api(
                store,
                codec,
                keys=self._keys,
                limits=self._limits,
                retention_hours=self._retention_hours,
            )
            self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="kinesis-endpoint")
            # The WAL is checkpointed beside the calls, on a connection of its own, rather than
            # inside whichever PutRecords commit crosses SQLite's mark (that call took 15-20 ms)
            checkpointer = await loop.run_in_executor(
                None,
                lambda: StreamStore.open(
                    self.directory, create=False, busy_timeout=CHECKPOINT_BUSY_TIMEOUT
                ),
            )
            store.defer_checkpoints()
            await self.http.start()
        except BaseException:
            if checkpointer is not None:
                checkpointer.close()
            store.close()
            raise
        self._store = store
        self._checkpointer = checkpointer
        self._checkpoints = asyncio.create_task(self._checkpoint_loop(checkpointer))
        log.info(
            "Kinesis endpoint for %s at %s (aws kinesis list-streams --endpoint-url %s)%s",
            self.directory,
            self.url,
            self.url,
            "; signatures checked" if self._keys else "",
        )

    async def aclose(self) -> None:
        """Stop listening, finish the calls in progress, close the store; twice is fine."""
        await self.http.aclose()
        task, self._checkpoints = self._checkpoints, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.close()
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)
        store, self._store = self._store, None
        if store is not None:
            store.close()

    async def _checkpoint_loop(self, checkpointer: StreamStore) -> None:
        """Checkpoint the WAL every CHECKPOINT_INTERVAL while it changes (PASSIVE: the writers,
        ours and the agent's, go on meanwhile). The commits stay as durable as before: a commit
        is in the WAL when it returns; a checkpoint only moves pages into the database file."""
        loop = asyncio.get_running_loop()
        wal = Path(f"{checkpointer.path}-wal")
        seen: tuple[int, int] | None = None
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            try:
                stat = wal.stat()
            except OSError:
                continue
            if (stat.st_size, stat.st_mtime_ns) == seen:
                continue
            try:
                truncate = stat.st_size > WAL_TRUNCATE_BYTES
                await loop.run_in_executor(
                    None, partial(checkpointer.checkpoint, truncate=truncate)
                )
            except StoreError as exc:
                log.warning("Kinesis endpoint: WAL checkpoint failed (next try soon): %s", exc)
                continue
            with contextlib.suppress(OSError):
                stat = wal.stat()
            seen = (stat.st_size, stat.st_mtime_ns)

    async def __aenter__(self) -> KinesisEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _handle(self, request: Request) -> Response:
        api, executor = self.api, self._executor
        if request.method == "GET" and request.target in ("/", "/ping"):
            return Response(200, b"kinesis-agent Kinesis endpoint\n")
        if api is None or executor is None:
            return Response(503, b"")
        answer = await asyncio.get_running_loop().run_in_executor(
            executor, api.handle, request.method, request.target, request.headers, request.body
        )
        if answer.subscription is not None:
            loop = asyncio.get_running_loop()

            def run(call: Callable[[], object]) -> asyncio.Future[object]:
                return loop.run_in_executor(executor, call)

            return Response(
                200,
                b"",
                [("Content-Type", "application/vnd.amazon.eventstream")],
                stream=fanout.events(api, run, answer.subscription),
            )
        headers = [("Content-Type", CONTENT_TYPE)]
        if answer.error is not None:
            headers.append(("x-amzn-ErrorType", answer.error))
        return Response(answer.status, answer.body, headers)


async def serve_forever(endpoint: KinesisEndpoint, stop: asyncio.Event) -> None:
    """Run ``endpoint`` until ``stop`` is set (the standalone ``serve`` command)."""
    async with endpoint:
        print(
            f"kinesis-agent: serving {endpoint.directory} as Kinesis at {endpoint.url}\n"
            f"  aws kinesis list-streams --endpoint-url {endpoint.url}",
            flush=True,
        )
        await stop.wait()
