"""CSVTOJSON's str.split path for one-character delimiters against its regex path."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.processors.csvjson import CsvToJson, _split_quoted_literal


class TestSplitQuotedLiteral:
    @given(st.text(alphabet='a,"|\t x', max_size=30), st.sampled_from([",", "|", "\t"]))
    def test_same_fields_as_the_regex_path(self, text: str, delimiter: str) -> None:
        """Quoted fields, doubled quotes and unclosed quotes split as the regex path splits them."""
        regex_path = CsvToJson(("a",), delimiter, 0)._split_quoted(text)
        assert _split_quoted_literal(text, delimiter) == regex_path
