"""Hypothesis: no processor fails on arbitrary bytes, and nothing is lost silently.

A processor may only return bytes ending in one newline, return None (skip), or raise PassRaw
(its deliberate "send this raw"). Framing + chain: every framed record is delivered processed,
skipped and counted, or sent raw and counted.
"""

from __future__ import annotations

import re
import socket
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.processors import PassRaw, build_chain
from agent.tailing.framing import Framer


def _closed_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


JSON_OUTPUT = {"CSVTOJSON", "LOGTOJSON", "ADDMETADATA"}
OPTIONS: list[dict[str, Any]] = [
    {"optionName": "SINGLELINE"},
    {"optionName": "SINGLELINE", "parseOptions": ["NO_TRIM", "ESCAPE_NEW_LINE"]},
    {"optionName": "ADDBRACKETS"},
    {"optionName": "CSVTOJSON", "customFieldNames": ["a", "b", "c"]},
    {"optionName": "CSVTOJSON", "customFieldNames": ["a", "b"], "delimiter": "\\t"},
    {"optionName": "CSVTOJSON", "customFieldNames": ["a", "b"], "delimiter": "\\s+"},
    {"optionName": "ADDMETADATA", "metadata": {"k": [1, "v"]}, "timestamp": True},
    *(
        {"optionName": "LOGTOJSON", "logFormat": fmt}
        for fmt in (
            "COMMONAPACHELOG",
            "COMBINEDAPACHELOG",
            "APACHEERRORLOG",
            "SYSLOG",
            "RFC3339SYSLOG",
        )
    ),
    {"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "onMismatch": "RAW"},
    {
        "optionName": "LOGTOJSON",
        "logFormat": "COMMONAPACHELOG",
        "matchPattern": r"(\S+) (.*)",
        "customFieldNames": ["first", "rest"],
    },
]

# Text that looks like the formats, so the fuzzer reaches past the first character.
FRAGMENTS = [
    b"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] ",
    b'"GET / HTTP/1.0" 200 2326 ',
    b'"-" "Mozilla/5.0"',
    b"[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 1:tid 2] [client ::1:5] ",
    b"<34>Oct 11 22:14:15 host su[1]: ",
    b'<34>1 2003-10-11T22:14:15.003Z h a - ID47 [x@1 a="\\""] ',
    b"2026-11-22T00:19:10Z host app: ",
    b'"a,""b"",c",',
    b"\\",
    b'"',
    b"\r\n",
    b"\n",
    b"\t",
    b"-",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\x00",
]
record_bytes = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=40)), max_size=12
).map(b"".join)


@pytest.fixture(scope="module")
def chains_by_option() -> list[tuple[dict[str, Any], Any]]:
    ec2 = {"optionName": "ADDEC2METADATA", "endpoint": _closed_endpoint(), "describeTags": False}
    return [(o, build_chain([o])) for o in [*OPTIONS, ec2]]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=record_bytes)
def test_no_processor_fails(
    data: bytes, chains_by_option: list[tuple[dict[str, Any], Any]]
) -> None:
    """Each processor returns one newline-terminated output or None, or asks for raw."""
    for option, chain in chains_by_option:
        (process,) = chain.processors
        try:
            out = process(data)
        except PassRaw:
            continue
        if out is None:
            assert option["optionName"] == "LOGTOJSON"
            continue
        assert out.endswith(b"\n"), option
        if option["optionName"] in JSON_OUTPUT:
            assert isinstance(orjson.loads(out), dict)
            assert out.count(b"\n") == 1  # COMPACT: one line, whatever the input held
        elif option["optionName"] != "ADDEC2METADATA":  # off EC2 it passes records unchanged
            assert not out.endswith(b"\n\n"), option


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chunks=st.lists(record_bytes, max_size=8),
    picks=st.lists(st.integers(0, len(OPTIONS) - 1), min_size=1, max_size=3),
    multiline=st.booleans(),
)
def test_framing_and_chain_lose_nothing_silently(
    chunks: list[bytes], picks: list[int], multiline: bool
) -> None:
    """Every framed record is delivered processed, skipped and counted, or sent raw and counted."""
    chain = build_chain([OPTIONS[i] for i in picks])
    framer = Framer(max_record_bytes=4096, multiline=re.compile(rb"\d|<|\[") if multiline else None)
    framed = []
    offset = 0
    for chunk in chunks:
        framed += framer.feed(chunk, offset)
        offset += len(chunk)
    framed += framer.flush()

    delivered = raw = 0
    for data, _start, _end in framed:
        errors_before = chain.errors
        out = chain(data)
        if out is None:
            continue
        delivered += 1
        if chain.errors > errors_before:
            assert out == data
            raw += 1
    assert delivered + chain.skipped == len(framed)
    assert raw == chain.errors


ERROR_HEAD = b"[Sun Nov 22 00:00:00 2026] [core:error] [pid 1] "
ACCESS_HEAD = b'::1 - - [22/Nov/2026:00:19:10 +0000] "'


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 200_000,
        b'"' * 200_000,
        b"a " * 100_000,
        b'\\"' * 100_000,
        b"\\" * 200_000,
        ERROR_HEAD + b"(13)x: " * 30_000,
        ERROR_HEAD + b"a(1): (2)" * 20_000,
        ACCESS_HEAD + b'\\"x' * 60_000,
        ACCESS_HEAD + b'GET / HTTP/1.1" 200 1 ' + b'"a' * 60_000,
        b"<1>Oct 11 22:14:15 h " + b"a[" * 60_000,
        b"<1>1 2003-10-11T22:14:15Z h a - - " + b'[x a="' * 30_000,
        b'"a,' * 60_000,
        b'"' + b'a,"' * 60_000,
        b'"' + b'"",' * 60_000,
    ],
    ids=lambda b: repr(b[:12]),
)
def test_long_hostile_lines_stay_fast(line: bytes) -> None:
    """Lines built to provoke regex backtracking still take linear time (no ReDoS)."""
    import time

    for option in OPTIONS:
        chain = build_chain([option])
        started = time.perf_counter()
        chain(line + b"\n")
        assert time.perf_counter() - started < 1.0, option
