"""A flow's processor chain in a child process, so processing runs beside the reader on another core.

The processors cost about as much CPU as the rest of the pipeline together, and the pipeline shares
one GIL: in a second process they run in parallel with reading, batching and the store. The parent
sends whole chunks (the records of one read) and gets the results back in the order it sent them:

    request   <II count, nbytes>  count x u32 record lengths  the records, joined
    response  <III count, nbytes, meta>  count x i64 output lengths (-1: skipped)  outputs  meta

``meta`` is JSON: the chain's counters for the chunk and the log lines the worker wrote, which the
parent logs as its own (the worker has no log configuration of its own). The first request is the
chain's options as JSON. The worker ignores SIGINT and SIGTERM (a Ctrl+C or systemd's stop reaches
the whole process group; the parent decides when to stop) and exits when its stdin closes, also
when the parent dies (quietly, when its answers then meet a closed pipe). If it dies, the parent still has every record it sent and processes them
itself: nothing is lost or duplicated (see agent/pipeline/processing.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import struct
import sys
from array import array
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from typing import Any, BinaryIO

from agent.errors import AgentError

log = logging.getLogger(__name__)

_REQUEST = struct.Struct("<II")
_RESPONSE = struct.Struct("<III")
_READ_LIMIT = 8 * 1024 * 1024
STOP_TIMEOUT = 5.0
PIPE_BYTES = 4 * 1024 * 1024


class WorkerFailed(AgentError):
    """The processor worker died or answered nonsense; its pending chunks are to be redone."""


@dataclass(slots=True)
class Processed:
    """One chunk's results, in the order of its records, and the chain's counters for it."""

    results: list[bytes | None]
    skipped: int = 0
    errors: int = 0
    unmatched: int = 0
    logs: list[tuple[int, str, str]] = field(default_factory=list)


def encode_request(datas: Sequence[bytes]) -> bytes:
    payload = b"".join(datas)
    return _REQUEST.pack(len(datas), len(payload)) + array("I", map(len, datas)).tobytes() + payload


def split(payload: bytes, lengths: Sequence[int]) -> list[bytes]:
    ends = list(accumulate(lengths, initial=0))
    return [payload[a:b] for a, b in pairwise(ends)]


def decode_results(count: int, body: bytes) -> tuple[list[bytes | None], int]:
    """The outputs of a response body (after the header); returns them and the meta's offset."""
    lengths = array("q")
    lengths.frombytes(body[: 8 * count])
    payload = body[8 * count :]
    if min(lengths, default=0) >= 0:
        results: list[bytes | None] = list(split(payload, lengths))
        return results, 8 * count + sum(lengths)
    results = []
    pos = 0
    for n in lengths:
        if n < 0:
            results.append(None)
        else:
            results.append(payload[pos : pos + n])
            pos += n
    return results, 8 * count + pos


def _grow_pipe(pipe: Any) -> None:
    with contextlib.suppress(OSError, AttributeError, ValueError):
        with open("/proc/sys/fs/pipe-max-size") as limit:
            size = int(limit.read())
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, min(size, PIPE_BYTES))


class ChainWorker:
    """The parent's end: ``submit`` a chunk, await its future; futures resolve in submit order."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self._waiting: deque[tuple[int, asyncio.Future[Processed]]] = deque()
        self._failure: WorkerFailed | None = None
        self._reader = asyncio.ensure_future(self._read_responses())

    @classmethod
    async def start(cls, options: Sequence[Mapping[str, Any]], name: str) -> ChainWorker:
        # orjson (~3 ms with uuid and platform, which it imports) loads where a worker starts,
        # not where pipeline/processing.py imports this module: a flow without processors never
        # needs it.
        import orjson

        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent.processors.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=_READ_LIMIT,
        )
        assert proc.stdin is not None and proc.stdout is not None
        # A chunk in one write, an answer in one read: with 64 KiB pipes the worker waited for
        # the parent's event loop to come round a dozen times per chunk.
        for pipe in (proc.stdin.transport, proc.stdout._transport):  # type: ignore[attr-defined]
            _grow_pipe(pipe.get_extra_info("pipe"))
        config = orjson.dumps({"options": list(options), "path": name})
        proc.stdin.write(_REQUEST.pack(0, len(config)) + config)
        return cls(proc, name)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def submit(self, datas: Sequence[bytes]) -> asyncio.Future[Processed]:
        """Queue a chunk for processing (the pipe's buffer takes it; the caller bounds how many)."""
        future: asyncio.Future[Processed] = asyncio.get_running_loop().create_future()
        if self._failure is not None:
            future.set_exception(self._failure)
            return future
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(encode_request(datas))
        except (ConnectionError, RuntimeError) as exc:
            future.set_exception(WorkerFailed(f"{self.name}: cannot write to the worker: {exc}"))
            return future
        self._waiting.append((len(datas), future))
        return future

    async def _read_responses(self) -> None:
        import orjson  # see start

        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                header = await stdout.readexactly(_RESPONSE.size)
                count, nbytes, meta_len = _RESPONSE.unpack(header)
                body = await stdout.readexactly(8 * count + nbytes + meta_len)
                if not self._waiting or self._waiting[0][0] != count:
                    raise WorkerFailed(f"{self.name}: the worker answered a chunk it was not sent")
                _, future = self._waiting.popleft()
                results, at = decode_results(count, body)
                meta = orjson.loads(body[at:])
                processed = Processed(
                    results,
                    meta["skipped"],
                    meta["errors"],
                    meta["unmatched"],
                    [(int(lv), str(n), str(m)) for lv, n, m in meta["logs"]],
                )
                if not future.done():
                    future.set_result(processed)
        except asyncio.CancelledError:
            self._fail(WorkerFailed(f"{self.name}: the worker was stopped"))
            raise
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, KeyError) as exc:
            self._fail(WorkerFailed(f"{self.name}: {await self._exit_reason(exc)}"))
        except WorkerFailed as exc:
            self._fail(exc)
        except Exception as exc:  # whatever it was, nobody may wait for an answer forever
            self._fail(WorkerFailed(f"{self.name}: {await self._exit_reason(exc)}"))

    async def _exit_reason(self, exc: BaseException) -> str:
        if isinstance(exc, asyncio.IncompleteReadError):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.proc.wait()
            code = self.proc.returncode
            if code is not None and code < 0:
                return f"the processor worker (pid {self.pid}) was killed by signal {-code}"
            return f"the processor worker (pid {self.pid}) exited with code {code}"
        return f"bad answer from the processor worker (pid {self.pid}): {exc!r}"

    def _fail(self, failure: WorkerFailed) -> None:
        self._failure = failure
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(failure)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    async def aclose(self) -> None:
        """Close its stdin (it exits when done), wait a little, then kill it; twice is fine."""
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await self.proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        # a worker that exits cleanly leaves nothing waiting; one that did not fails its waiters
        if self._waiting:
            self._fail(WorkerFailed(f"{self.name}: the worker was stopped"))


# --- the child ------------------------------------------------------------------------------------


class _Captured(logging.Handler):
    """Collects the worker's log lines; they travel back with the chunk that caused them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[int, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.name, record.getMessage()))


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    if len(data) < n:
        return None
    return data


def serve(stdin: BinaryIO, stdout: BinaryIO) -> int:
    """The worker's loop: build the chain from the first request, then answer chunks until EOF."""
    import orjson

    from agent.processors import build_chain  # the child imports what it needs only

    captured = _Captured()
    root = logging.getLogger()
    root.handlers[:] = [captured]
    root.setLevel(logging.INFO)
    header = _read_exactly(stdin, _REQUEST.size)
    if header is None:
        return 0
    _, nbytes = _REQUEST.unpack(header)
    config = orjson.loads(_read_exactly(stdin, nbytes) or b"{}")
    chain = build_chain(config["options"], path=config.get("path", "dataProcessingOptions"))
    while True:
        header = _read_exactly(stdin, _REQUEST.size)
        if header is None:
            return 0
        count, nbytes = _REQUEST.unpack(header)
        lengths = array("I")
        lengths.frombytes(_read_exactly(stdin, 4 * count) or b"")
        payload = _read_exactly(stdin, nbytes)
        if payload is None or len(lengths) != count:
            return 0
        before = (chain.skipped, chain.errors, chain.unmatched)
        results = chain.process_many(split(payload, lengths))
        outputs = [r for r in results if r is not None]
        out_lengths = array("q", [-1 if r is None else len(r) for r in results])
        meta = orjson.dumps(
            {
                "skipped": chain.skipped - before[0],
                "errors": chain.errors - before[1],
                "unmatched": chain.unmatched - before[2],
                "logs": captured.lines,
            }
        )
        captured.lines = []
        body = b"".join(outputs)
        stdout.write(_RESPONSE.pack(count, len(body), len(meta)))
        stdout.write(out_lengths.tobytes())
        stdout.write(body)
        stdout.write(meta)
        stdout.flush()


def main() -> int:
    # The parent decides when we stop (it closes our stdin); signals to the group are its business.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        return serve(sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:
        # The parent is gone (kill -9, the OOM killer) and nobody reads our answers; the next
        # agent re-reads those records from the files. Leave quietly: stdout now points at
        # /dev/null, so the interpreter's last flush at exit has nothing to complain about.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
