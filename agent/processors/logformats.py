"""The log formats LOGTOJSON knows, as regular expressions written from each format's own definition.

* Apache access logs: mod_log_config's Common Log Format ``%h %l %u %t "%r" %>s %b`` and the
  Combined format, which adds ``"%{Referer}i" "%{User-agent}i"``. ``%t`` is
  ``[day/month/year:hour:minute:second zone]``. Since httpd 2.0.46 a ``"`` inside ``%r``/``%i`` is
  written as ``\\"``, so a quoted field is "anything but an unescaped quote" (and may be empty).
* Apache error log: the 2.4 default ``ErrorLogFormat``
  ``[%{u}t] [%-m:%l] [pid %P:tid %T] %7F: %E: [client\\ %a] %M`` and the 2.2 layout
  ``[%t] [%l] [client %a] %M``; module, thread, client and the ``%F``/``%E`` prefixes are optional.
* RFC 3164 syslog lines as files hold them: ``[<PRI>]Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG``.
* The same with an RFC 3339 timestamp (rsyslog's file format), ``2026-11-22T00:19:10.123+01:00``;
  under that name RFC 5424 lines are understood too, adding ``msgid`` and ``structureddata``.

Every format's output field names and order are those of the AWS agent, so its users' queries keep
working. ``(?:-|(…))`` captures nothing for an Apache ``-``, which gives JSON null at no cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DASH_OR_TOKEN = r"(?:-|(\S+))"
_DASH_OR_NUMBER = r"(?:-|(-?\d+))"
# The unrolled form of (?:[^"\\]|\\.)* : no alternation per character. It still costs twice the
# time of [^"]*, so lines without a backslash use the simpler form, which accepts exactly the same
# lines when there is no backslash.
_DASH_OR_QUOTED = r'"(?:-|([^"\\]*+(?:\\.[^"\\]*+)*+))"'
_DASH_OR_QUOTED_FAST = r'"(?:-|([^"]*+))"'
_CLF_TIME = r"\[(\d{1,2}/[A-Za-z]{3,9}/\d{4}:\d{2}:\d{2}:\d{2}(?:[.,:]\d+)? [+-]\d{4})\]"


def _common(quoted: str) -> str:
    return (
        rf"{_DASH_OR_TOKEN} {_DASH_OR_TOKEN} {_DASH_OR_TOKEN} {_CLF_TIME} "
        rf"{quoted} {_DASH_OR_NUMBER} {_DASH_OR_NUMBER}"
    )


def _combined(quoted: str) -> str:
    return rf"{_common(quoted)} {quoted} {quoted}"


# Later LogFormat directives often append fields (%D, %{Host}i, …); those are allowed and ignored.
# The line ending is matched here too, outside every group, which saves cutting it off first.
_EXTRA = r"(?:[ \t].*)?\r?\n?"

_ERROR = (
    r"\[([A-Za-z]{3} [A-Za-z]{3} {1,2}\d{1,2} \d{2}:\d{2}:\d{2}(?:\.\d+)? \d{4})\] "
    r"\[(?:([^\s:\[\]]+):)?([a-z]+\d?)\] "
    r"(?:\[pid (\d+)(?::tid (\d+))?\] )?"
    # %7F (source file, debug levels) and %E (APR status) come before [client …].
    r"(?:((?:[^\s\[\]]+\(\d+\): )?(?:\(-?\d+\)[^\[\]]*?: )?)\[client (\[[^\]]*\](?::\d+)?|[^\]]+)\] )?"
    r"(.*)"
)

_PRI = r"(?:<\d{1,3}>)?"
_SYSLOG_REST = (
    r" (?:<[^>\s]*> ?)?(\S+) "  # an optional "<facility.level> " some daemons print, the host
    r"(?:([^\s\[\]:]+)(?:\[([^\]]*)\])?: ?)?"  # TAG[PID]: — absent on some lines (-- MARK --)
    r"(.*)"
)
_RFC3164_TIME = r"([A-Za-z]{3} {1,2}\d{1,2} \d{2}:\d{2}:\d{2})"
_RFC3339_TIME = r"(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2}))"

# RFC 5424: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]; "-" is nil.
_SD_VALUE = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_SD_ELEMENT = rf"\[[^ =\]\"]+(?: [^ =\]\"]+={_SD_VALUE})*\]"
RFC5424 = (
    r"<\d{1,3}>[1-9]\d{0,2} "
    r"(-|\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[Zz]|[+-]\d{2}:\d{2})) "
    r"(\S+) (\S+) (\S+) (\S+) "
    rf"(-|(?:{_SD_ELEMENT})+)"
    r"(?: (.*))?"
)
RFC5424_EXTRA_FIELDS = ("msgid", "structureddata")

APACHE_ACCESS_FIELDS = ("host", "ident", "authuser", "datetime", "request", "response", "bytes")
APACHE_ERROR_FIELDS = (
    "timestamp",
    "module",
    "severity",
    "processid",
    "threadid",
    "client",
    "message",
)
SYSLOG_FIELDS = ("timestamp", "hostname", "program", "processid", "message")


@dataclass(frozen=True, slots=True)
class LogFormat:
    """A named format: its pattern, its output fields, and whether ``-`` means null (Apache)."""

    name: str
    source: str
    fields: tuple[str, ...]
    apache: bool
    fast_source: str | None = None  # equivalent, faster, for lines without an escaped quote
    eol_in_pattern: bool = False  # the pattern itself accepts the trailing \r\n

    def compile(self, names: tuple[str, ...] | None = None) -> re.Pattern[str]:
        return compile_named(self.source, names)

    def compile_fast(self, names: tuple[str, ...] | None = None) -> re.Pattern[str] | None:
        return None if self.fast_source is None else compile_named(self.fast_source, names)


_CAPTURING_GROUP = re.compile(r"(?<!\\)\((?!\?)")


def compile_named(source: str, names: tuple[str, ...] | None) -> re.Pattern[str]:
    """Compile a built-in pattern; with names, its groups are named so ``groupdict()`` is the record.

    ``groupdict()`` builds the dict in C, measurably faster than zipping ``groups()`` with names.
    """
    if names is not None:
        it = iter(names)
        source = _CAPTURING_GROUP.sub(lambda _: f"(?P<{next(it)}>", source)
    return re.compile(source, re.DOTALL)


def can_name_groups(names: tuple[str, ...]) -> bool:
    """Names usable as regex group names (identifiers, and not our own reserved spelling)."""
    return all(n.isidentifier() and n.isascii() for n in names) and len(set(names)) == len(names)


def builtin_formats() -> dict[str, LogFormat]:
    """The formats by ``logFormat`` name (built on demand: nothing happens at import time)."""
    return {
        "COMMONAPACHELOG": LogFormat(
            "COMMONAPACHELOG",
            _common(_DASH_OR_QUOTED) + _EXTRA,
            APACHE_ACCESS_FIELDS,
            True,
            _common(_DASH_OR_QUOTED_FAST) + _EXTRA,
            eol_in_pattern=True,
        ),
        "COMBINEDAPACHELOG": LogFormat(
            "COMBINEDAPACHELOG",
            _combined(_DASH_OR_QUOTED) + _EXTRA,
            (*APACHE_ACCESS_FIELDS, "referer", "agent"),
            True,
            _combined(_DASH_OR_QUOTED_FAST) + _EXTRA,
            eol_in_pattern=True,
        ),
        "APACHEERRORLOG": LogFormat("APACHEERRORLOG", _ERROR, APACHE_ERROR_FIELDS, True),
        "SYSLOG": LogFormat("SYSLOG", _PRI + _RFC3164_TIME + _SYSLOG_REST, SYSLOG_FIELDS, False),
        "RFC3339SYSLOG": LogFormat(
            "RFC3339SYSLOG", _PRI + _RFC3339_TIME + _SYSLOG_REST, SYSLOG_FIELDS, False
        ),
    }


def error_log_values(groups: tuple[str | None, ...]) -> list[str | None]:
    """Apache error-log groups → the seven AWS fields.

    The ``%F``/``%E`` text before ``[client …]`` stays in the message, where it was. The client is
    the text Apache wrote, port included (``192.0.2.7:51234`` on 2.4), as the AWS agent keeps it:
    queries written against its output find the same value here.
    """
    timestamp, module, severity, pid, tid, prefix, client, message = groups
    if prefix:
        message = prefix + (message or "")
    values = [timestamp, module, severity, pid, tid, client, message]
    return [None if v == "-" else v for v in values]


def rfc5424_values(groups: tuple[str | None, ...]) -> list[str | None]:
    """RFC 5424 groups → timestamp, hostname, program, processid, message, msgid, structureddata.

    The nil value ``-`` becomes null; the BOM that marks a UTF-8 MSG is dropped.
    """
    timestamp, hostname, app, procid, msgid, sd, message = groups
    if message is not None and message.startswith("\ufeff"):
        message = message[1:]
    values = [timestamp, hostname, app, procid, message, msgid, sd]
    return (
        [None if v == "-" else v for v in values[:4]]
        + [message]
        + [None if v == "-" else v for v in values[5:]]
    )


def translate_java_regex(source: str) -> str:
    """The common Java spellings that Python's ``re`` writes differently: ``(?<name>…)``."""
    return re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", source)
