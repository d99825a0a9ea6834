"""CSVTOJSON's fast paths give byte for byte the output of the plain implementation (csv_oracle.py).

The processor splits plainly quoted lines with ``str.split``, inlines decoding and builds the
object by a dict display generated from the names; these tests feed it and the oracle the same
records (malformed quoting, doubled quotes, embedded CR/LF, empty and missing fields, trailing
delimiters, invalid UTF-8, every kind of delimiter, any field names) and require the same bytes
out, and lines of 200,000 quoted pieces to take linear time.
"""

from __future__ import annotations

import time

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.processors import Processor
from agent.processors.csvjson import CsvToJson, csv_to_json, resolve_delimiter
from tests.processors.csv_oracle import OracleCsvToJson

# Configured delimiters: one character of each kind, escapes, literal strings and regexes.
DELIMITERS = [
    ",",
    "|",
    ";",
    ".",
    " ",
    "a",
    "é",
    "\t",
    "\\t",
    "\\|",
    "\\n",
    "\n",
    "\r",
    '"',
    "::",
    ", ",
    '","',
    "\\s+",
    "[,;]",
    '[,"]',
]

# Pieces that make the splitting decisions: quotes (single, doubled, tripled), delimiter
# characters of all the above, line ends inside a record, and ordinary text.
TOKENS = ['"', '""', '"""', ",", "|", ";", ".", ":", " ", "\t", "\r", "\n", "\r\n", "a", "bc", "é"]
ENDINGS = [b"", b"\n", b"\r\n", b"\r", b"\r\r\n", b"\n\n"]

NAME_CHARS = st.characters(exclude_categories=[])  # surrogates too (JSON may carry "\\ud800")
texts = st.lists(st.sampled_from(TOKENS), max_size=24).map("".join)


@st.composite
def csv_lines(draw: st.DrawFn, delimiter: str) -> str:
    """Well-formed delimited lines (the fast path's inputs), sometimes with one character changed."""
    fields = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["plain", "quoted", "quoted", "empty"]))
        body = draw(
            st.lists(st.sampled_from(["x", " ", "\n", "\r", ",", "|", "\t", delimiter]), max_size=5)
        )
        if kind == "plain":
            fields.append("".join(c for c in body if c != delimiter and c != '"'))
        elif kind == "quoted":
            if draw(st.booleans()):
                body.insert(draw(st.integers(0, len(body))), '""')
            fields.append('"' + "".join(body) + '"')
        else:
            fields.append("")
    line = delimiter.join(fields)
    if line and draw(st.integers(0, 3)) == 0:  # break it: a character changed, added or lost
        at = draw(st.integers(0, len(line) - 1))
        char = draw(st.sampled_from(['"', delimiter, "x", ""]))
        line = line[:at] + char + line[at + draw(st.integers(0, 1)) :]
    return line


def pair(delimiter: str, width: int | list[str], pretty: bool) -> tuple[Processor, OracleCsvToJson]:
    """The processor as a flow builds it from its options, and the oracle for the same options."""
    names = [f"c{i}" for i in range(width)] if isinstance(width, int) else width
    options = {
        "optionName": "CSVTOJSON",
        "customFieldNames": names,
        "delimiter": delimiter,
        "jsonFormat": "PRETTYPRINT" if pretty else "COMPACT",
    }
    oracle = OracleCsvToJson(
        tuple(names),
        resolve_delimiter(delimiter, "delimiter"),
        orjson.OPT_INDENT_2 if pretty else 0,
    )
    return csv_to_json(options, "p"), oracle


class TestSameAsOracle:
    @settings(max_examples=600)
    @given(
        st.sampled_from(DELIMITERS),
        st.lists(st.one_of(texts, st.binary(max_size=6)), max_size=4),
        st.sampled_from(ENDINGS),
        st.integers(1, 12),
        st.booleans(),
    )
    @example(",", ['"a,b"', "x"], b"\n", 3, False)
    @example(",", ['"a"b,c'], b"\r\n", 2, False)
    @example(",", ['"a,"', b"\xff\xfe", "b,"], b"\r", 4, True)
    def test_any_record(
        self, delimiter: str, chunks: list[str | bytes], ending: bytes, width: int, pretty: bool
    ) -> None:
        """Arbitrary text and bytes (invalid UTF-8 too), any line ending: the same JSON bytes."""
        data = b"".join(c.encode() if isinstance(c, str) else c for c in chunks) + ending
        fast, oracle = pair(delimiter, width, pretty)
        assert fast(data) == oracle(data)

    @settings(max_examples=600)
    @given(st.data(), st.sampled_from(DELIMITERS), st.sampled_from(ENDINGS), st.integers(1, 10))
    def test_delimited_lines(
        self, data: st.DataObject, delimiter: str, ending: bytes, width: int
    ) -> None:
        """Quoted, doubled-quote, empty and unquoted fields, intact or broken: the same JSON."""
        resolved = resolve_delimiter(delimiter, "delimiter")
        joiner = resolved if isinstance(resolved, str) else ","
        line = data.draw(csv_lines(joiner))
        fast, oracle = pair(delimiter, width, False)
        record = line.encode() + ending
        assert fast(record) == oracle(record)

    @settings(max_examples=200)
    @given(
        st.lists(st.text(NAME_CHARS), min_size=1, max_size=40, unique=True), texts, st.booleans()
    )
    def test_any_field_names(self, names: list[str], text: str, pretty: bool) -> None:
        """Field names with quotes, backslashes, braces or surrogates: the same object, in order."""
        fast, oracle = pair(",", names, pretty)
        record = text.encode() + b"\n"
        try:
            expected = oracle(record)
        except orjson.JSONEncodeError:  # a lone surrogate in a name: the chain sends it raw
            with pytest.raises(orjson.JSONEncodeError):
                fast(record)
        else:
            assert fast(record) == expected

    @settings(max_examples=1500)
    @given(st.sampled_from([",", "|", "\t", ";", "\n", "a"]), st.data())
    def test_split_one_character(self, delimiter: str, data: st.DataObject) -> None:
        """The str.split paths for one-character delimiters split as the oracle's regexes do."""
        text = data.draw(st.one_of(texts, csv_lines(delimiter)))
        resolved = resolve_delimiter(delimiter, "delimiter")
        fast = CsvToJson(("a",), resolved, 0)
        assert fast.split(text) == OracleCsvToJson(("a",), resolved, 0).split(text)


N = 200_000  # pieces: a step that is linear per piece (a list insert) would take seconds
HOSTILE = [
    b'"a""b",' * N,
    b'"a""b""c",x,' * (N // 2),
    b'""' * N,
    b'"' + b'"",' * N,
    b'"' + b'a""' * N + b'"',
    b'"a",' * N,
    b'"a,b",' * N,
    b'x,"' * N,
]


@pytest.mark.parametrize("line", HOSTILE, ids=lambda b: repr(b[:12]))
def test_many_quotes_take_linear_time(line: bytes) -> None:
    """A line of 200,000 quoted fields or doubled quotes: well under a second (linear time)."""
    fast, oracle = pair(",", 3, False)
    started = time.perf_counter()
    out = fast(line + b"\n")
    assert time.perf_counter() - started < 1.0
    assert out == oracle(line + b"\n")
