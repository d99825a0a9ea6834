"""Golden tests for LOGTOJSON, with lines taken from each format's published definition.

Apache: the Common/Combined examples of the mod_log_config documentation and the error-log
examples of "Log Files" (2.2 and 2.4 layouts). Syslog: RFC 3164 §5.4 and RFC 5424 §6.5 examples,
RFC 3339 §5.8 timestamps. Expected outputs use the AWS agent's field names and order.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from agent.errors import ConfigError
from agent.processors import build_chain


def parse(fmt: str, line: bytes, **options: Any) -> dict[str, Any] | None:
    chain = build_chain([{"optionName": "LOGTOJSON", "logFormat": fmt, **options}])
    out = chain(line)
    if out is None:
        return None
    assert out.endswith(b"\n") and not out.endswith(b"\n\n")
    value = orjson.loads(out)
    assert isinstance(value, dict)
    return value


def fields_of(fmt: str, line: bytes, *names: str) -> tuple[Any, ...]:
    """The named fields of a line that must match."""
    out = parse(fmt, line)
    assert out is not None
    return tuple(out[name] for name in names)


APACHE_DOC_COMMON = (
    b'127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326'
)
APACHE_DOC_COMBINED = (
    APACHE_DOC_COMMON + b' "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"'
)
COMMON_FIELDS = {
    "host": "127.0.0.1",
    "ident": None,
    "authuser": "frank",
    "datetime": "10/Oct/2000:13:55:36 -0700",
    "request": "GET /apache_pb.gif HTTP/1.0",
    "response": "200",
    "bytes": "2326",
}


class TestCommonApacheLog:
    def test_documentation_example(self) -> None:
        """The mod_log_config example line gives the seven AWS fields, "-" as null, in order."""
        out = parse("COMMONAPACHELOG", APACHE_DOC_COMMON + b"\n")
        assert out == COMMON_FIELDS
        assert list(out) == list(COMMON_FIELDS)

    def test_combined_line_matches_common(self) -> None:
        """Extra fields after %b (a Combined line, %D …) are allowed and ignored, as in AWS."""
        assert parse("COMMONAPACHELOG", APACHE_DOC_COMBINED + b" 1234\n") == COMMON_FIELDS

    def test_dash_bytes_is_null(self) -> None:
        """%b writes "-" for no body: null, not the string "-"."""
        out = parse("COMMONAPACHELOG", APACHE_DOC_COMMON.replace(b" 2326", b" -") + b"\n")
        assert out is not None and out["bytes"] is None

    @pytest.mark.parametrize(
        "host", [b"2001:db8::1", b"::1", b"fe80::1%eth0", b"www.example.com", b"10.0.0.1"]
    )
    def test_any_client_address(self, host: bytes) -> None:
        """IPv6 clients and host names match (the AWS pattern accepts only names and IPv4)."""
        out = parse("COMMONAPACHELOG", APACHE_DOC_COMMON.replace(b"127.0.0.1", host) + b"\n")
        assert out is not None and out["host"] == host.decode()

    def test_missing_bytes_is_skipped(self) -> None:
        """A line cut before %b does not match: skipped, as AWS."""
        assert parse("COMMONAPACHELOG", APACHE_DOC_COMMON[: -len(b" 2326")] + b"\n") is None

    def test_crlf_line_ending(self) -> None:
        """A CRLF line (framing keeps the \\r) still matches, and the \\r is not in any field."""
        assert parse("COMMONAPACHELOG", APACHE_DOC_COMMON + b"\r\n") == COMMON_FIELDS

    def test_no_trailing_newline(self) -> None:
        """An unterminated last line parses the same and still ends with one newline."""
        assert parse("COMMONAPACHELOG", APACHE_DOC_COMMON) == COMMON_FIELDS

    def test_dash_request(self) -> None:
        """httpd 2.4 logs a request line it never received as "-" (408): null."""
        line = APACHE_DOC_COMMON.replace(b'"GET /apache_pb.gif HTTP/1.0" 200', b'"-" 408')
        out = parse("COMMONAPACHELOG", line + b"\n")
        assert out is not None and out["request"] is None and out["response"] == "408"


class TestCombinedApacheLog:
    def test_documentation_example(self) -> None:
        """The Combined example adds referer and agent after the common fields."""
        assert parse("COMBINEDAPACHELOG", APACHE_DOC_COMBINED + b"\n") == {
            **COMMON_FIELDS,
            "referer": "http://www.example.com/start.html",
            "agent": "Mozilla/4.08 [en] (Win98; I ;Nav)",
        }

    def test_empty_referer_and_agent_match(self) -> None:
        """``""`` for referer or agent matches as an empty string (AWS skips the line)."""
        line = APACHE_DOC_COMMON + b' "" ""\n'
        out = parse("COMBINEDAPACHELOG", line)
        assert out is not None and out["referer"] == "" and out["agent"] == ""

    def test_dash_referer_is_null(self) -> None:
        """A quoted "-" referer is null, as AWS."""
        out = parse("COMBINEDAPACHELOG", APACHE_DOC_COMMON + b' "-" "curl/8.5.0"\n')
        assert out is not None and out["referer"] is None and out["agent"] == "curl/8.5.0"

    def test_escaped_quotes(self) -> None:
        """httpd escapes " inside %r and %{…}i as \\"; the field runs to the unescaped quote."""
        line = (
            b'::1 - - [22/Nov/2026:00:19:10 +0000] "GET /a\\"b HTTP/1.1" 400 0 '
            b'"-" "say \\"hi\\" \\\\"\n'
        )
        assert fields_of("COMBINEDAPACHELOG", line, "request", "agent") == (
            'GET /a\\"b HTTP/1.1',
            'say \\"hi\\" \\\\',
        )

    def test_common_line_does_not_match(self) -> None:
        """Without referer and agent it is not a Combined line: skipped and counted."""
        chain = build_chain([{"optionName": "LOGTOJSON", "logFormat": "COMBINEDAPACHELOG"}])
        assert chain(APACHE_DOC_COMMON + b"\n") is None
        assert chain.skipped == 1

    def test_invalid_utf8_is_replaced(self) -> None:
        """Bytes that are not UTF-8 become U+FFFD; the output is valid JSON."""
        line = APACHE_DOC_COMBINED.replace(b"Win98", b"Win\xff98") + b"\n"
        out = parse("COMBINEDAPACHELOG", line)
        assert out is not None and out["agent"] == "Mozilla/4.08 [en] (Win\ufffd98; I ;Nav)"


# Whole lines whose every field is known: (logFormat, line, the AWS fields in the AWS order).
WHOLE_LINES = [
    # Apache 2.4 "Log Files" example: module, pid and tid, client
    pytest.param(
        "APACHEERRORLOG",
        b"[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416] "
        b"[client 72.15.99.187] File does not exist: /usr/local/apache2/htdocs/favicon.ico\n",
        {
            "timestamp": "Fri Sep 09 10:42:29.902022 2011",
            "module": "core",
            "severity": "error",
            "processid": "35708",
            "threadid": "4328636416",
            "client": "72.15.99.187",
            "message": "File does not exist: /usr/local/apache2/htdocs/favicon.ico",
        },
        id="apache-error-2.4-example",
    ),
    # Apache 2.2 layout: no module and no pid block, those are null
    pytest.param(
        "APACHEERRORLOG",
        b"[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] "
        b"client denied by server configuration: /export/home/live/ap/htdocs/test\n",
        {
            "timestamp": "Wed Oct 11 14:32:52 2000",
            "module": None,
            "severity": "error",
            "processid": None,
            "threadid": None,
            "client": "127.0.0.1",
            "message": "client denied by server configuration: /export/home/live/ap/htdocs/test",
        },
        id="apache-error-2.2-example",
    ),
    # RFC 3164 §5.4 example 1, with its PRI: the PRI is not a field
    pytest.param(
        "SYSLOG",
        b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8\n",
        {
            "timestamp": "Oct 11 22:14:15",
            "hostname": "mymachine",
            "program": "su",
            "processid": None,
            "message": "'su root' failed for lonvick on /dev/pts/8",
        },
        id="rfc3164-example",
    ),
    # the usual syslog file line: space-padded day, TAG[PID]: message
    pytest.param(
        "SYSLOG",
        b"Feb  5 17:32:18 web-1 sshd[4242]: Accepted publickey for deploy from 10.0.0.9\n",
        {
            "timestamp": "Feb  5 17:32:18",
            "hostname": "web-1",
            "program": "sshd",
            "processid": "4242",
            "message": "Accepted publickey for deploy from 10.0.0.9",
        },
        id="syslog-file-line-with-pid",
    ),
    # RFC 5424 §6.5 example 1: nil PROCID and SD are null, the BOM is dropped
    pytest.param(
        "RFC3339SYSLOG",
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        b"\xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8\n",
        {
            "timestamp": "2003-10-11T22:14:15.003Z",
            "hostname": "mymachine.example.com",
            "program": "su",
            "processid": None,
            "message": "'su root' failed for lonvick on /dev/pts/8",
            "msgid": "ID47",
            "structureddata": None,
        },
        id="rfc5424-example-with-bom",
    ),
]


@pytest.mark.parametrize(("fmt", "line", "expected"), WHOLE_LINES)
def test_whole_line(fmt: str, line: bytes, expected: dict[str, Any]) -> None:
    """Each field of a published (or everyday) line, with the AWS field names and order."""
    out = parse(fmt, line)
    assert out == expected
    assert list(out) == list(expected)


class TestApacheErrorLog:
    def test_24_without_client(self) -> None:
        """Server lines without [client …] match (AWS skips them): client is null."""
        line = (
            b"[Sun Nov 22 00:00:00.123456 2026] [mpm_event:notice] [pid 123:tid 456] "
            b"AH00489: Apache/2.4.57 (Unix) configured -- resuming normal operations\n"
        )
        assert fields_of("APACHEERRORLOG", line, "client", "module", "message") == (
            None,
            "mpm_event",
            "AH00489: Apache/2.4.57 (Unix) configured -- resuming normal operations",
        )

    @pytest.mark.parametrize(
        "client", [b"72.15.99.187:12345", b"::1:51234", b"2001:db8::7:443", b"[2001:db8::7]:443"]
    )
    def test_24_client_keeps_port(self, client: bytes) -> None:
        """2.4 logs the client's port; the field keeps it, as the AWS agent does."""
        line = (
            b"[Sun Nov 22 00:00:00 2026] [authz_core:error] [pid 9] [client "
            + client
            + b"] AH01630: client denied by server configuration: /srv/x\n"
        )
        out = parse("APACHEERRORLOG", line)
        assert out is not None and out["client"] == client.decode() and out["threadid"] is None

    def test_status_prefix_before_client(self) -> None:
        """The %E text before [client …] stays in the message; the client is still found."""
        line = (
            b"[Sun Nov 22 00:00:00 2026] [core:error] [pid 9:tid 10] (13)Permission denied: "
            b"[client 192.0.2.7:5] AH00035: access to / denied\n"
        )
        assert fields_of("APACHEERRORLOG", line, "client", "message") == (
            "192.0.2.7:5",
            "(13)Permission denied: AH00035: access to / denied",
        )

    def test_trace_level(self) -> None:
        """trace1…trace8 severities match."""
        line = b"[Sun Nov 22 00:00:00 2026] [ssl:trace3] [pid 9] ssl_engine_io.c(2135): OpenSSL\n"
        out = parse("APACHEERRORLOG", line)
        assert out is not None and out["severity"] == "trace3"


class TestSyslog:
    def test_no_tag(self) -> None:
        """RFC 3164 §5.4 example 3 has no TAG: program null, the rest is the message."""
        line = b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!\n"
        assert fields_of("SYSLOG", line, "hostname", "program", "message") == (
            "10.0.0.99",
            None,
            "Use the BFG!",
        )

    def test_program_with_slash(self) -> None:
        """Tags like postfix/smtpd keep their slash."""
        out = parse("SYSLOG", b"Nov 22 00:19:10 mx postfix/smtpd[77]: connect from x\n")
        assert out is not None and out["program"] == "postfix/smtpd" and out["processid"] == "77"

    def test_dash_is_not_null(self) -> None:
        """Only the Apache formats turn "-" into null (as AWS); a syslog message "-" stays."""
        out = parse("SYSLOG", b"Nov 22 00:19:10 host app: -\n")
        assert out is not None and out["message"] == "-"

    def test_rfc3339_timestamp_does_not_match_syslog(self) -> None:
        """SYSLOG is the RFC 3164 timestamp; an RFC 3339 line is skipped."""
        assert parse("SYSLOG", b"2026-11-22T00:19:10Z host app: x\n") is None


class TestRfc3339Syslog:
    @pytest.mark.parametrize(
        "stamp",
        [
            b"1985-04-12T23:20:50.52Z",
            b"1996-12-19T16:39:57-08:00",
            b"1990-12-31T23:59:60Z",
            b"1937-01-01T12:00:27.87+00:20",
            b"2026-11-22T00:19:10.123456+01:00",
        ],
    )
    def test_rfc3339_timestamps(self, stamp: bytes) -> None:
        """The RFC 3339 §5.8 examples (leap second included) are timestamps of a file line."""
        out = parse("RFC3339SYSLOG", stamp + b" host CRON[12]: (root) CMD (run-parts)\n")
        assert out == {
            "timestamp": stamp.decode(),
            "hostname": "host",
            "program": "CRON",
            "processid": "12",
            "message": "(root) CMD (run-parts)",
        }

    def test_rfc5424_structured_data(self) -> None:
        """RFC 5424 §6.5 example 4: two SD elements and no MSG."""
        sd = (
            b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
            b'[examplePriority@32473 class="high"]'
        )
        line = b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 " + sd
        assert fields_of("RFC3339SYSLOG", line + b"\n", "structureddata", "message", "program") == (
            sd.decode(),
            None,
            "evntslog",
        )

    def test_3164_timestamp_does_not_match(self) -> None:
        """An RFC 3164 timestamp is not RFC 3339: skipped."""
        assert parse("RFC3339SYSLOG", b"Oct 11 22:14:15 host su: x\n") is None


class TestCustomPatterns:
    def test_rename_default_fields(self) -> None:
        """customFieldNames alone renames the format's fields in order."""
        names = ["ts", "host", "app", "pid", "msg"]
        out = parse("SYSLOG", b"Feb  5 17:32:18 h a[1]: m\n", customFieldNames=names)
        assert out == {"ts": "Feb  5 17:32:18", "host": "h", "app": "a", "pid": "1", "msg": "m"}

    def test_rename_to_names_that_are_not_identifiers(self) -> None:
        """Any string is a field name, e.g. with dashes."""
        names = ["c-ip", "i", "u", "t", "r", "s", "b"]
        out = parse("COMMONAPACHELOG", APACHE_DOC_COMMON + b"\n", customFieldNames=names)
        assert out is not None and list(out) == names and out["i"] is None

    def test_match_pattern_apache_dash_is_null(self) -> None:
        """With an Apache logFormat, "-" in a custom pattern's group is null (as AWS)."""
        out = parse(
            "COMMONAPACHELOG",
            b"GET - 12\n",
            matchPattern=r"(\S+) (\S+) (\d+)",
            customFieldNames=["method", "user", "ms"],
        )
        assert out == {"method": "GET", "user": None, "ms": "12"}

    def test_match_pattern_java_named_groups(self) -> None:
        """Java's (?<name>…) is understood, and named groups can stand in for customFieldNames."""
        out = parse("SYSLOG", b"a=1 b=2\n", matchPattern=r"a=(?<a>\d+) b=(?<b>\d+)")
        assert out == {"a": "1", "b": "2"}

    def test_match_pattern_whole_line(self) -> None:
        """The pattern must match the whole line (Java matches()), not a prefix."""
        assert (
            parse("SYSLOG", b"a=1 b=2\n", matchPattern=r"a=(\d+)", customFieldNames=["a"]) is None
        )


class TestMismatch:
    def test_skip_is_counted_and_warned_once(self, caplog: pytest.LogCaptureFixture) -> None:
        """Unmatched lines are skipped and counted; one warning for many lines, not one each."""
        chain = build_chain([{"optionName": "LOGTOJSON", "logFormat": "SYSLOG"}])
        with caplog.at_level(logging.WARNING):
            for _ in range(1000):
                assert chain(b"not syslog\n") is None
        assert chain.skipped == 1000 and chain.errors == 0
        assert len([r for r in caplog.records if "does not match" in r.message]) == 1

    def test_raw_sends_the_line(self) -> None:
        """onMismatch RAW sends the unparsed line and counts it as unmatched."""
        chain = build_chain(
            [{"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "onMismatch": "RAW"}]
        )
        assert chain(b"not syslog\n") == b"not syslog\n"
        assert chain.skipped == 0 and chain.errors == 1 and chain.unmatched == 1

    def test_raw_stops_the_chain(self) -> None:
        """A raw line is sent as read, not wrapped by the processors after LOGTOJSON."""
        chain = build_chain(
            [
                {"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "onMismatch": "RAW"},
                {"optionName": "ADDBRACKETS"},
            ]
        )
        assert chain(b"not syslog\n") == b"not syslog\n"


class TestOptions:
    def test_pretty_print(self) -> None:
        """PRETTYPRINT emits indented multi-line JSON ending in one newline."""
        chain = build_chain(
            [{"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "jsonFormat": "PRETTYPRINT"}]
        )
        out = chain(b"Feb  5 17:32:18 h a[1]: m\n")
        assert out is not None and out.startswith(b'{\n  "timestamp": ') and out.endswith(b"}\n")

    @pytest.mark.parametrize(
        ("option", "path", "words"),
        [
            ({}, "p[0].logFormat", "required"),
            ({"logFormat": "NGINX"}, "p[0].logFormat", "COMBINEDAPACHELOG"),
            ({"logFormat": "SYSLOG", "customFieldNames": ["a"]}, "p[0].customFieldNames", "5"),
            ({"logFormat": "SYSLOG", "matchPattern": "(a"}, "p[0].matchPattern", "regular"),
            ({"logFormat": "SYSLOG", "matchPattern": "(a)"}, "p[0].customFieldNames", "required"),
            (
                {"logFormat": "SYSLOG", "matchPattern": "(a)(b)", "customFieldNames": ["x"]},
                "p[0].customFieldNames",
                "2 groups",
            ),
            ({"logFormat": "SYSLOG", "onMismatch": "DROP"}, "p[0].onMismatch", "SKIP or RAW"),
            ({"logFormat": "SYSLOG", "jsonFormat": "pretty"}, "p[0].jsonFormat", "PRETTYPRINT"),
            ({"logFormat": "SYSLOG", "matchPatern": "x"}, "p[0].matchPatern", "matchPattern"),
            (
                {"logFormat": "SYSLOG", "customFieldNames": ["a", "a", "b", "c", "d"]},
                "p[0].customFieldNames[1]",
                "duplicate",
            ),
        ],
    )
    def test_bad_options_name_their_path(
        self, option: dict[str, Any], path: str, words: str
    ) -> None:
        """Every bad option is a ConfigError naming the offending key's JSON path."""
        with pytest.raises(ConfigError) as info:
            build_chain([{"optionName": "LOGTOJSON", **option}], path="p")
        assert info.value.path == path
        assert words in str(info.value)
