"""CSVTOJSON as it was before its fast paths, kept as the oracle the fast paths are tested against.

A frozen copy of ``agent/processors/csvjson.py`` at 794d794 (the splitting and the record
building; delimiter resolution is shared and not copied). Do not optimise it: its worth is that
it is the plain reading of the semantics (a quoted field is a quoted field only when its closing
quote ends the field; otherwise the text up to the next delimiter is the field, quotes and all).
"""

from __future__ import annotations

import re

import orjson

from agent.processors._base import decode, strip_eol


class OracleCsvToJson:
    """The record → JSON object of CSVTOJSON, by regex only (slow, obviously right)."""

    def __init__(self, names: tuple[str, ...], delimiter: str | re.Pattern[str], opts: int) -> None:
        self._names = names
        self._width = len(names)
        self._opts = opts
        self._literal = delimiter if isinstance(delimiter, str) else None
        self._delim_re = (
            re.compile(re.escape(delimiter)) if isinstance(delimiter, str) else delimiter
        )
        self._quoted = re.compile(
            rf'"((?:[^"]|"")*)"(?=(?:{self._delim_re.pattern})|\Z)', re.DOTALL
        )

    def split(self, text: str) -> list[str]:
        if '"' not in text:
            if self._literal is not None:
                return text.split(self._literal)
            return self._delim_re.split(text)
        fields: list[str] = []
        pos, end = 0, len(text)
        while True:
            quoted = self._quoted.match(text, pos)
            if quoted is not None:
                fields.append(quoted.group(1).replace('""', '"'))
                pos = quoted.end()
                delim = self._delim_re.match(text, pos)
            else:
                delim = self._delim_re.search(text, pos)
                fields.append(text[pos : delim.start() if delim else end])
            if delim is None:
                return fields
            pos = delim.end()

    def __call__(self, data: bytes) -> bytes:
        fields: list[str | None] = list(self.split(strip_eol(decode(data))))
        if len(fields) < self._width:
            fields.extend([None] * (self._width - len(fields)))
        return orjson.dumps(dict(zip(self._names, fields, strict=False)), option=self._opts) + b"\n"
