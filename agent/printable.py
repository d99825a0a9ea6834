"""Text from file names and records made harmless for a terminal before any command prints it.

Anyone who can create a file in a watched directory chooses its name, and anyone who can write
a log chooses its records. Printed raw, ``ESC[2J`` clears the operator's screen, an OSC sequence
retitles the window or writes the clipboard, a carriage return or a bidi override hides what
follows; handed to rich as markup, ``[/]`` raises MarkupError. So ``status``, ``top`` and
``check`` pass every such string through ``printable`` (control characters become visible
escapes: ``\\x1b``, ``\\r``, ``\\u202e``) and hand rich ``Text`` objects, which are never parsed
as markup.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

# C0 (newline and tab optional), DEL, C1, and the Unicode line/paragraph separators and bidi
# embeddings, overrides and isolates that reorder what the terminal shows
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_UNSAFE_WITH_LAYOUT = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char == "\n":
        return "\\n"
    if char == "\t":
        return "\\t"
    if char == "\r":
        return "\\r"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_layout: bool = False) -> str:
    """``text`` with every control character shown as an escape.

    ``keep_layout`` keeps newlines and tabs (a multi-line record); names keep none.
    """
    return (_UNSAFE if keep_layout else _UNSAFE_WITH_LAYOUT).sub(_escape, text)


def plain(text: str, style: str = "") -> Text:
    """A rich ``Text`` of ``text`` as it is: no markup parsed, no control character left."""
    # rich is for the terminal views (status, top); the daemon's logs use printable() alone
    from rich.text import Text

    return Text(printable(text), style=style)
