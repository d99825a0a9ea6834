"""Partition keys (RANDOM, DETERMINISTIC, FIELD); where a key lands is :mod:`agent.hashspace`."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable

MAX_KEY_CHARS = 256
RANDOM_KEY_CHARS = 12  # the keys random_keys() hands out: 6 random bytes in hex
DETERMINISTIC_KEY_CHARS = 32  # an MD5 in hex


class PartitionKeys:
    """Makes a record's partition key as the flow asks; counts FIELD fallbacks to RANDOM."""

    __slots__ = ("fallbacks", "key_for", "option")

    def __init__(self, option: str = "RANDOM", field: str | None = None) -> None:
        self.option = option
        self.fallbacks = 0
        self.key_for: Callable[[bytes], str]
        if option == "RANDOM":
            self.key_for = _random_key
        elif option == "DETERMINISTIC":
            self.key_for = _deterministic_key
        elif option == "FIELD":
            assert field is not None
            self.key_for = self._field_key(field)
        else:
            raise ValueError(f"unknown partitionKeyOption {option!r}")

    @property
    def key_bytes_known_before(self) -> int:
        """The key's length as far as it is known before the record is keyed: exact for RANDOM
        (the sinks take pool keys) and DETERMINISTIC, the 1-byte minimum for FIELD. A record
        is cut to fit beside it; a longer FIELD key makes the sink cut further."""
        return {"RANDOM": RANDOM_KEY_CHARS, "DETERMINISTIC": DETERMINISTIC_KEY_CHARS}.get(
            self.option, 1
        )

    def _field_key(self, field: str) -> Callable[[bytes], str]:
        import orjson  # FIELD keys only: orjson (~3 ms with uuid and platform) is no start-up cost

        def key_for(data: bytes) -> str:
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                doc = None
            value = doc.get(field) if isinstance(doc, dict) else None
            if value is None or isinstance(value, (dict, list)):
                self.fallbacks += 1
                return _random_key(data)
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            return text[:MAX_KEY_CHARS] or _random_key(data)

        return key_for


KEY_POOL_SIZE = 1 << 14
_key_pool: list[str] = []


def random_keys(count: int) -> list[str]:
    """``count`` RANDOM keys: consecutive keys of a pool of 16,384 random keys, from a random place.

    A RANDOM key only has to spread records evenly over the shards once MD5 places them, and
    every key of the pool is random, so consecutive ones do that. A fixed pool lets the store
    remember where each key lands instead of hashing every record's key, and taking a slice
    (not a random pick per record) keeps it cheap: ~5 ns a key against ~500 ns for the AWS
    agent's form (a random double as a string), which then had to be hashed.
    """
    pool = _key_pool
    if not pool:
        n = RANDOM_KEY_CHARS
        digits = os.urandom(n // 2 * KEY_POOL_SIZE).hex()
        pool += [digits[i : i + n] for i in range(0, n * KEY_POOL_SIZE, n)]
    start = int.from_bytes(os.urandom(4), "big") % KEY_POOL_SIZE
    keys = pool[start : start + count]
    while len(keys) < count:
        keys += pool[: count - len(keys)]
    return keys


def _random_key(data: bytes) -> str:
    # The AWS agent's form: a random double in [0, 1e6) as a string.
    return repr(random.random() * 1e6)


def _deterministic_key(data: bytes) -> str:
    # MD5 of the record's own bytes (the AWS agent hashed its whole read buffer: bug B1).
    return hashlib.md5(data).hexdigest()
