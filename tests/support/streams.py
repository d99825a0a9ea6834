"""What arrived: the records of a stream read back, from the embedded store or from kinesalite."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from agent.store.store import StreamStore
from tests.peers.helpers import read_stream


def stored_lines(store_dir: Path, stream: str) -> list[bytes]:
    """Every record of the stream in commit (sequence) order (none while the store does not exist).

    Read-only, as the store's readers are meant to: a read-write connection that happens to be the
    last one open (the agent just SIGKILLed) checkpoints the WAL into streams.db when it closes, and
    an agent starting meanwhile took the half-written file for a truncated store and refused to run.
    """
    if not (store_dir / "streams.db").exists():
        return []
    with StreamStore.open(store_dir, create=False, read_only=True) as store:
        if stream not in store.list_streams():
            return []
        records = list(store.read(stream))
    records.sort(key=lambda r: int(r.sequence_number))
    return [r.data for r in records]


def stored_so_far(store_dir: Path, stream: str) -> list[bytes]:
    """:func:`stored_lines` while the agent may be creating or writing the store: a read that
    meets it half-made is "nothing yet" (for polling; the final read uses stored_lines)."""
    try:
        return stored_lines(store_dir, stream)
    except Exception:
        return []


def kinesis_lines(endpoint: str, stream: str) -> list[bytes]:
    """Every record of a Kinesis stream (kinesalite), shard after shard."""
    return [d for recs in read_stream(endpoint, stream).values() for _, d in recs]


def kinesis_counts(endpoint: str, stream: str) -> Counter[bytes]:
    """How often each record stands in a Kinesis stream."""
    return Counter(kinesis_lines(endpoint, stream))
