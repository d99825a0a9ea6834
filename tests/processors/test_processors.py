"""The processor chain and the processors that need no parsing: SINGLELINE, ADDBRACKETS,
CSVTOJSON, ADDMETADATA; plus option checking shared by all."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from agent.errors import ConfigError
from agent.processors import PROCESSORS, Chain, PassRaw, build_chain, factory
from agent.processors._base import RateLimitedWarning
from agent.processors.metadata import add_metadata, utc_millis_timestamp


def one(option: Mapping[str, Any], line: bytes) -> bytes | None:
    return build_chain([dict(option)])(line)


class TestChain:
    def test_runs_in_order(self) -> None:
        """Options apply in the order written; each sees the previous output."""
        chain = build_chain(
            [
                {"optionName": "SINGLELINE"},
                {"optionName": "ADDMETADATA", "metadata": {"k": "v"}},
            ]
        )
        assert chain(b"  a\n  b\n") == b'{"metadata":{"k":"v"},"data":"ab"}\n'

    def test_empty_chain_is_falsy(self) -> None:
        """A flow without dataProcessingOptions can skip the chain entirely."""
        assert not build_chain([])

    def test_exception_sends_raw_and_counts(self, caplog: pytest.LogCaptureFixture) -> None:
        """A processor that raises: the raw record goes out, counted, one warning per minute."""

        def boom(data: bytes) -> bytes:
            raise ValueError("nope")

        chain = Chain([boom], names=["flows[0].dataProcessingOptions[0] (X)"])
        with caplog.at_level(logging.WARNING):
            for _ in range(5):
                assert chain(b"x\n") == b"x\n"
        assert chain.errors == 5 and chain.skipped == 0
        warnings = [r.message for r in caplog.records]
        assert len(warnings) == 1
        assert "flows[0].dataProcessingOptions[0] (X) failed (ValueError: nope)" in warnings[0]

    def test_pass_raw_sends_the_chain_input(self) -> None:
        """PassRaw from a later processor sends the record as read, not the partial result."""

        def refuse(data: bytes) -> bytes:
            raise PassRaw("not for me")

        chain = Chain([lambda d: b"changed\n", refuse])
        assert chain(b"orig\n") == b"orig\n"
        assert chain.errors == 1 and chain.unmatched == 0

    def test_skip_counts(self) -> None:
        """None from any processor skips the record and counts it once."""
        chain = Chain([lambda d: None, lambda d: b"never\n"])
        assert chain(b"x\n") is None
        assert chain.skipped == 1

    def test_every_documented_option_is_registered(self) -> None:
        """All AWS optionNames but the Java-only USINGPLUGGIN are available."""
        assert set(PROCESSORS) == {
            "SINGLELINE",
            "CSVTOJSON",
            "LOGTOJSON",
            "ADDMETADATA",
            "ADDEC2METADATA",
            "ADDBRACKETS",
        }
        # each family is imported when a chain uses it: every name must reach its factory
        assert all(callable(factory(name)) for name in PROCESSORS)

    @pytest.mark.parametrize(
        ("options", "path", "words"),
        [
            ([{}], "f.dataProcessingOptions[0].optionName", "required"),
            ([{"optionName": "logtojson"}], "f.dataProcessingOptions[0].optionName", "case"),
            ([{"optionName": "USINGPLUGGIN"}], "f.dataProcessingOptions[0].optionName", "Java"),
            (
                [{"optionName": "ADDBRACKETS"}, {"optionName": "ADDBRACKETS", "x": 1}],
                "f.dataProcessingOptions[1].x",
                "unknown key",
            ),
        ],
    )
    def test_bad_chain_names_the_path(
        self, options: list[dict[str, Any]], path: str, words: str
    ) -> None:
        """Errors name the JSON path of the offending option."""
        with pytest.raises(ConfigError) as info:
            build_chain(options, path="f.dataProcessingOptions")
        assert info.value.path == path
        assert words in str(info.value)


class TestRateLimitedWarning:
    def test_one_per_interval_with_suppressed_count(self, caplog: pytest.LogCaptureFixture) -> None:
        """The second warning of an interval is held back; the next one says how many were."""
        now = [0.0]
        warn = RateLimitedWarning(logging.getLogger("t"), interval=60, clock=lambda: now[0])
        with caplog.at_level(logging.WARNING):
            warn("a %s", 1)
            warn("a %s", 2)
            warn("a %s", 3)
            now[0] = 61
            warn("a %s", 4)
        assert [r.getMessage() for r in caplog.records] == [
            "a 1",
            "a 4 (2 similar warnings suppressed in the last 60 s)",
        ]


class TestSingleLine:
    def test_trims_and_joins(self) -> None:
        """Lines are trimmed and joined; one newline at the end."""
        assert one({"optionName": "SINGLELINE"}, b"  a \n\tb\n") == b"ab\n"

    def test_no_trim_escape(self) -> None:
        """NO_TRIM keeps spaces; ESCAPE_NEW_LINE joins with a backslash-n."""
        opt = {"optionName": "SINGLELINE", "parseOptions": ["NO_TRIM", "ESCAPE_NEW_LINE"]}
        assert one(opt, b" a\n b \n") == b" a\\n b \n"


class TestAddBrackets:
    def test_wraps(self) -> None:
        """The line is wrapped in braces and still ends with one newline."""
        assert one({"optionName": "ADDBRACKETS"}, b'"a":1\r\n') == b'{"a":1}\n'


class TestCsvToJson:
    NAMES = ("a", "b", "c")

    def csv(self, line: bytes, **options: Any) -> Any:
        out = one(
            {"optionName": "CSVTOJSON", "customFieldNames": list(self.NAMES), **options}, line
        )
        assert out is not None and out.endswith(b"\n")
        return orjson.loads(out)

    def test_basic(self) -> None:
        """Comma by default; keys in customFieldNames order; values are strings, untrimmed."""
        out = self.csv(b"1, 2,3\n")
        assert out == {"a": "1", "b": " 2", "c": "3"} and list(out) == ["a", "b", "c"]

    def test_missing_columns_null_extra_dropped(self) -> None:
        """Missing trailing columns are null; extra columns are dropped (as AWS)."""
        assert self.csv(b"1\n") == {"a": "1", "b": None, "c": None}
        assert self.csv(b"1,2,3,4,5\n") == {"a": "1", "b": "2", "c": "3"}

    def test_empty_fields_are_empty_strings(self) -> None:
        """Empty fields, inner or trailing, are "" (present but empty)."""
        assert self.csv(b"1,,\n") == {"a": "1", "b": "", "c": ""}

    @pytest.mark.parametrize(
        ("delimiter", "line"),
        [
            ("\\t", b"1\t2|x\t3\n"),
            ("\t", b"1\t2|x\t3\n"),
            ("|", b"1|2\t3|3\n"),
            ("\\|", b"1|2.x|3\n"),
            (";", b"1;2;3\n"),
            (".", b"1.2.3\n"),
            ("::", b"1::2::3\n"),
            ("\\s+", b"1   2 \t3\n"),
            ("[,;]", b"1;2,3\n"),
        ],
    )
    def test_delimiters_mean_what_their_authors_meant(self, delimiter: str, line: bytes) -> None:
        """ "\\\\t" is a tab, "|" and "." are literal, real regexes still work."""
        out = self.csv(line, delimiter=delimiter)
        assert out["a"] == "1" and out["c"] == "3"

    def test_rfc4180_quotes(self) -> None:
        """Quoted fields may hold the delimiter, doubled quotes and newlines."""
        out = self.csv(b'"x,y","say ""hi""","multi\nline"\n')
        assert out == {"a": "x,y", "b": 'say "hi"', "c": "multi\nline"}

    def test_quote_inside_unquoted_field_is_literal(self) -> None:
        """A quote in the middle of a field is just a character (lenient, never an error)."""
        assert self.csv(b'5"10,b,"c\n') == {"a": '5"10', "b": "b", "c": '"c'}

    def test_quotes_with_regex_delimiter(self) -> None:
        """Quoting works with a regex delimiter too."""
        assert self.csv(b'"a b"  c d\n', delimiter="\\s+") == {"a": "a b", "b": "c", "c": "d"}

    @pytest.mark.parametrize(
        ("option", "path", "words"),
        [
            ({"customFieldNames": None}, "p[0].customFieldNames", "required"),
            ({"customFieldNames": []}, "p[0].customFieldNames", "non-empty"),
            ({"customFieldNames": ["a"], "delimiter": ""}, "p[0].delimiter", "empty"),
            ({"customFieldNames": ["a"], "delimiter": "a|"}, "p[0].delimiter", "empty string"),
            ({"customFieldNames": ["a"], "delimiter": "(["}, "p[0].delimiter", "regular"),
            ({"customFieldNames": ["a"], "delimiter": 5}, "p[0].delimiter", "string"),
        ],
    )
    def test_bad_options(self, option: dict[str, Any], path: str, words: str) -> None:
        """Bad CSVTOJSON options name their path."""
        option = {k: v for k, v in option.items() if v is not None}
        with pytest.raises(ConfigError) as info:
            build_chain([{"optionName": "CSVTOJSON", **option}], path="p")
        assert info.value.path == path and words in str(info.value)


class TestAddMetadata:
    def test_without_timestamp(self) -> None:
        """{"metadata", "data"}: metadata as configured, data the line without its newline."""
        out = one({"optionName": "ADDMETADATA", "metadata": {"env": "prod", "n": [1]}}, b"hi\r\n")
        assert out == b'{"metadata":{"env":"prod","n":[1]},"data":"hi"}\n'

    @pytest.mark.parametrize("flag", ["true", True, "TRUE"])
    def test_timestamp_string_or_boolean(self, flag: object) -> None:
        """timestamp may be "true" (AWS) or a JSON boolean (which crashes AWS)."""
        process = add_metadata(
            {"metadata": 1, "timestamp": flag}, "p", clock=lambda: 1_700_000_000.5
        )
        assert process(b"x\n") == b'{"ts":"2023-11-14T22:13:20.500Z","metadata":1,"data":"x"}\n'

    def test_pretty_print_same_content(self) -> None:
        """PRETTYPRINT has the same keys in the same order."""
        opts = {"metadata": {"a": 1}, "timestamp": "true", "jsonFormat": "PRETTYPRINT"}
        out = add_metadata(opts, "p", clock=lambda: 0.0)(b"x\n")
        assert out is not None and out.endswith(b"}\n") and b"\n  " in out
        assert list(orjson.loads(out)) == ["ts", "metadata", "data"]

    def test_invalid_utf8(self) -> None:
        """Invalid UTF-8 in the line is replaced, the JSON stays valid."""
        out = one({"optionName": "ADDMETADATA", "metadata": None}, b"a\xffb\n")
        assert out is not None and orjson.loads(out)["data"] == "a\ufffdb"

    def test_millis_format(self) -> None:
        """ts is UTC with three fraction digits and a Z."""
        assert utc_millis_timestamp(0.999) == "1970-01-01T00:00:00.999Z"

    @pytest.mark.parametrize(
        ("option", "path"),
        [({}, "p[0].metadata"), ({"metadata": 1, "timestamp": "yes"}, "p[0].timestamp")],
    )
    def test_bad_options(self, option: dict[str, Any], path: str) -> None:
        """metadata is required; timestamp must be a boolean or "true"/"false"."""
        with pytest.raises(ConfigError) as info:
            build_chain([{"optionName": "ADDMETADATA", **option}], path="p")
        assert info.value.path == path
