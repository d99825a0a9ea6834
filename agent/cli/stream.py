"""``kinesis-agent stream list | describe | read``: look into the embedded stream store.

``agent.cli.main`` calls :func:`register` and then ``args.func(args)``; ``python -m
agent.cli.stream stream ...`` runs the same commands on their own. Every command opens its own
read-only connection, so it can run while the agent writes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from agent.cli.options import PROG, config_or_path, report
from agent.config import DEFAULT_CONFIG, load_config
from agent.errors import ConfigError, StoreError
from agent.printable import printable

# The store (and orjson) load when a stream command runs, not when the CLI registers it: `run`
# of a Kinesis flow needs neither.
if TYPE_CHECKING:
    from agent.store.model import Position, StoredRecord
    from agent.store.reader import StreamCursor
    from agent.store.store import StreamStore

WRITE_CHUNK = 512  # records per write to stdout


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``stream`` with its subcommands to the CLI's subparsers; returns the ``stream`` parser."""
    where = argparse.ArgumentParser(add_help=False)
    config_or_path(
        where,
        "--store",
        "the store directory itself",
        f"read localStore.directory from this agent.json (default {DEFAULT_CONFIG})",
        metavar="DIR",
        config_default=None,
    )

    stream: argparse.ArgumentParser = subparsers.add_parser(
        "stream",
        help="list, describe and read the streams of the embedded store",
        description="Look into the embedded stream store (safe while the agent runs).",
    )
    sub = stream.add_subparsers(dest="stream_command", metavar="COMMAND", required=True)

    list_ = sub.add_parser("list", parents=[where], help="the names of the streams, one a line")
    list_.set_defaults(func=cmd_list)

    describe = sub.add_parser(
        "describe", parents=[where], help="shards, hash ranges, retention and record counts"
    )
    describe.add_argument("name", metavar="NAME")
    describe.add_argument("--format", choices=("text", "json"), default="text")
    describe.set_defaults(func=cmd_describe)

    read = sub.add_parser(
        "read",
        parents=[where],
        help="print a stream's records",
        description="Print records in sequence order per shard, shards in id order; with "
        "--follow, print records as they arrive (all shards interleaved) until Ctrl+C.",
    )
    read.add_argument("name", metavar="NAME")
    read.add_argument(
        "--from",
        dest="start",
        metavar="WHERE",
        help="trim_horizon (the default), latest (the default with --follow), a sequence "
        "number (start at it), or an ISO 8601 time such as 2024-05-01T12:00:00Z "
        "(no offset means local time)",
    )
    read.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    read.add_argument(
        "--format",
        choices=("raw", "json"),
        default="raw",
        help="raw: the record bytes as stored; json: one object per line with shard_id, "
        "sequence_number, partition_key, arrival_timestamp and data (or data_base64)",
    )
    read.add_argument(
        "--shard", metavar="SHARD", help="only this shard (shardId-000000000001 or 1)"
    )
    read.add_argument("--limit", type=_non_negative, metavar="N", help="stop after N records")
    read.set_defaults(func=cmd_read)
    return stream


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, not {text!r}")
    return value


def parse_start(text: str | None, *, follow: bool) -> Position:
    """``--from``: trim_horizon, latest, a sequence number, or an ISO 8601 time."""
    from agent.store.model import LATEST, TRIM_HORIZON, Position

    if text is None:
        return LATEST if follow else TRIM_HORIZON
    word = text.strip().lower()
    if word in ("trim_horizon", "trim-horizon", "oldest"):
        return TRIM_HORIZON
    if word in ("latest", "now"):
        return LATEST
    if word.isdigit():
        return Position.at_sequence_number(word)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--from {text!r}: expected trim_horizon, latest, a sequence number "
            "or an ISO 8601 time (2024-05-01T12:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time, as `date` prints it
    return Position.at_timestamp(when.timestamp())


# --- commands -------------------------------------------------------------------------------------


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """One clear line on stderr instead of a traceback; 78 for a bad config, else 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (ConfigError, StoreError, ValueError) as exc:
            return report(exc)
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            _silence_stdout()
            return 0  # the reader went away (| head)

    run.__name__ = command.__name__
    run.__doc__ = command.__doc__
    return run


def _silence_stdout() -> None:
    # Python flushes stdout at exit; once the pipe is gone that would fail again, loudly.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def open_store(args: argparse.Namespace) -> StreamStore:
    """The store of ``--store DIR``, or of the config's ``localStore.directory``, read-only."""
    from agent.store.store import StreamStore

    directory = args.store
    if directory is None:
        directory = load_config(args.config).local_store_directory
    return StreamStore.open(directory, create=False, read_only=True)


@_guarded
def cmd_list(args: argparse.Namespace) -> int:
    """Print the stream names, one a line."""
    with open_store(args) as store:
        for name in store.list_streams():
            print(name)
    return 0


@_guarded
def cmd_describe(args: argparse.Namespace) -> int:
    """Print a stream: shards with their hash ranges and record counts, retention."""
    import orjson

    with open_store(args) as store:
        info = store.describe(args.name)
        stats = store.shard_stats(args.name)
    if args.format == "json":
        doc = {
            "stream": info.name,
            "shard_count": info.shard_count,
            "retention_hours": info.retention_hours,
            "created": info.created,
            "records": sum(s.records for s in stats),
            "shards": [
                {
                    "shard_id": shard.shard_id,
                    "starting_hash_key": str(shard.starting_hash_key),
                    "ending_hash_key": str(shard.ending_hash_key),
                    "records": stat.records,
                    "bytes": stat.bytes,
                    "first_sequence_number": stat.first_sequence_number,
                    "last_sequence_number": stat.last_sequence_number,
                    "first_arrival_timestamp": stat.first_arrival,
                    "last_arrival_timestamp": stat.last_arrival,
                }
                for shard, stat in zip(info.shards, stats, strict=True)
            ],
        }
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    created = datetime.fromtimestamp(info.created).astimezone().isoformat(timespec="seconds")
    print(f"stream     {info.name}")
    print(f"shards     {info.shard_count}")
    print(f"retention  {info.retention_hours} h")
    print(f"created    {created}")
    print(f"records    {sum(s.records for s in stats)}")
    for shard, stat in zip(info.shards, stats, strict=True):
        print(
            f"{shard.shard_id}  hash keys {shard.starting_hash_key}..{shard.ending_hash_key}  "
            f"{stat.records} records, {stat.bytes} bytes"
        )
    return 0


@_guarded
def cmd_read(args: argparse.Namespace) -> int:
    """Print records from --from on; with --follow, keep printing as they arrive."""
    from agent.store.reader import StreamCursor

    position = parse_start(args.start, follow=args.follow)
    out = sys.stdout.buffer
    render = _raw if args.format == "raw" else _json_renderer()
    if render is _raw and out.isatty():
        render = _raw_for_terminal  # records come from whoever writes the logs
    with open_store(args) as store:
        if args.follow:
            cursor = StreamCursor(store, args.name, shard_id=args.shard, position=position)
            with _interrupt_flag() as stop:
                _follow(cursor, out, render, args.limit, stop)
            out.flush()
            return 0  # Ctrl+C is how a --follow ends
        else:
            records = store.read(
                args.name, shard_id=args.shard, position=position, limit=args.limit
            )
            _write(out, render, records)
    return 0


def _write(
    out: IO[bytes], render: Callable[[StoredRecord], bytes], records: Iterable[StoredRecord]
) -> None:
    # Large writes: a pipe fed 8 KiB at a time cost more system time than the whole read.
    chunk: list[bytes] = []
    for record in records:
        chunk.append(render(record))
        if len(chunk) == WRITE_CHUNK:
            out.write(b"".join(chunk))
            chunk.clear()
    out.write(b"".join(chunk))
    out.flush()


@contextlib.contextmanager
def _interrupt_flag() -> Iterator[threading.Event]:
    """Ctrl+C (or SIGTERM) sets a flag the follow loop checks between polls.

    A KeyboardInterrupt raised at an arbitrary bytecode can land between a lock's acquire and
    the ``with`` that releases it; closing the store then waited on that lock for ever (seen as
    a ``--follow`` that ignored Ctrl+C). A second Ctrl+C still interrupts at once.
    """
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        signal.signal(
            signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        )

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _follow(
    cursor: StreamCursor,
    out: IO[bytes],
    render: Callable[[StoredRecord], bytes],
    limit: int | None,
    stop: threading.Event,
) -> None:
    from agent.store.reader import FOLLOW_INTERVAL

    left = limit
    while (left is None or left > 0) and not stop.is_set():
        batch = cursor.poll()
        if left is not None:
            batch = batch[:left]
            left -= len(batch)
        if batch:
            _write(out, render, batch)
        else:
            stop.wait(FOLLOW_INTERVAL)


def _raw(record: StoredRecord) -> bytes:
    return record.data  # records carry their own "\n"


def _raw_for_terminal(record: StoredRecord) -> bytes:
    """The record with control characters as escapes (``\\x1b``): a terminal shows, never obeys."""
    text = record.data.decode("utf-8", "backslashreplace")
    return printable(text, keep_layout=True).encode()


def _json_renderer() -> Callable[[StoredRecord], bytes]:
    """``--format json``'s renderer, orjson imported once here rather than once per record."""
    import orjson

    def _json(record: StoredRecord) -> bytes:
        doc: dict[str, object] = {
            "stream": record.stream,
            "shard_id": record.shard_id,
            "sequence_number": record.sequence_number,
            "partition_key": record.partition_key,
            "arrival_timestamp": record.arrival_timestamp,
        }
        try:
            doc["data"] = record.data.decode("utf-8")
        except UnicodeDecodeError:
            doc["data_base64"] = base64.b64encode(record.data).decode("ascii")
        return orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)

    return _json


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``stream ...`` on its own: ``python -m agent.cli.stream stream read NAME``."""
    parser = argparse.ArgumentParser(prog=PROG)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
