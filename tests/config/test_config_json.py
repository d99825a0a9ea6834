"""Reading agent.json from disk: what the AWS agent accepts is accepted, every hostile file is one ConfigError."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from agent.config import jsonfile as config_json
from agent.config import load_config
from agent.errors import ConfigError, one_line

FLOW = {"filePattern": "/var/log/app/*.log", "localStream": "app"}
FLOW_TEXT = json.dumps(FLOW)


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    path.write_bytes(text)
    return path


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert len(text.splitlines()) == 1 and text.isprintable() and len(text) < 2000, text[:300]
    assert "internal error" not in text
    return info.value


class TestWhatAwsAccepts:
    def test_a_byte_order_mark_is_skipped(self, tmp_path: Path) -> None:
        """agent.json and agent.d files saved with a UTF-8 BOM (Windows editors do) load."""
        main = write(
            tmp_path / "agent.json", b"\xef\xbb\xbf" + json.dumps({"flows": [FLOW]}).encode()
        )
        (tmp_path / "agent.d").mkdir()
        other = dict(FLOW, localStream="other")
        write(
            tmp_path / "agent.d" / "more.json",
            b"\xef\xbb\xbf" + json.dumps({"flows": [other]}).encode(),
        )
        cfg = load_config(main)
        assert [f.stream_name for f in cfg.flows] == ["app", "other"]

    def test_a_key_given_twice_keeps_the_last_value_and_warns_with_its_path(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """As AWS: the last value wins; unlike AWS, a warning names each repeated key's JSON path."""
        text = (
            '{"shutdownTimeoutMillis": 1000, "shutdownTimeoutMillis": 2000, "flows": [{'
            '"filePattern": "/var/log/a/*.log", "localStream": "first", "localStream": "app",'
            '"dataProcessingOptions": [{"optionName": "ADDBRACKETS", "optionName": "SINGLELINE"}]}]}'
        )
        with caplog.at_level(logging.WARNING):
            cfg = load_config(write(tmp_path / "agent.json", text))
        assert cfg.shutdown_timeout_millis == 2000
        assert cfg.flows[0].stream_name == "app"
        assert cfg.flows[0].data_processing_options[0]["optionName"] == "SINGLELINE"
        warned = [
            r.getMessage() for r in caplog.records if "given more than once" in r.getMessage()
        ]
        assert [m.split(": ")[1] for m in warned] == [
            "shutdownTimeoutMillis",
            "flows[0].localStream",
            "flows[0].dataProcessingOptions[0].optionName",
        ]
        assert all(str(tmp_path / "agent.json") in m for m in warned)

    def test_repeated_keys_in_an_agent_d_file_name_that_file(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        main = write(tmp_path / "agent.json", json.dumps({"flows": [FLOW]}))
        (tmp_path / "agent.d").mkdir()
        extra = write(
            tmp_path / "agent.d" / "b.json",
            '{"flows": [{"filePattern": "/b/*.log", "localStream": "x", "localStream": "b"}]}',
        )
        with caplog.at_level(logging.WARNING):
            cfg = load_config(main)
        assert cfg.flows[1].stream_name == "b"
        assert f"{extra}: flows[0].localStream: given more than once" in caplog.text

    def test_thousands_of_repeated_keys_are_counted_not_listed(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A generated file with a key repeated everywhere: ten warnings and one count, not a flood."""
        metadata = "[" + ",".join(['{"a":1,"a":2}'] * 5000) + "]"
        option = '{"optionName": "ADDMETADATA", "metadata": ' + metadata + "}"
        text = '{"flows": [' + FLOW_TEXT[:-1] + ', "dataProcessingOptions": [' + option + "]}]}"
        with caplog.at_level(logging.WARNING):
            load_config(write(tmp_path / "agent.json", text))
        assert len(caplog.records) == config_json.MAX_DUPLICATE_WARNINGS + 1
        assert "4990 more keys given more than once" in caplog.records[-1].getMessage()

    def test_comments_are_allowed_and_positions_survive_them(self, tmp_path: Path) -> None:
        """// and /* */ comments (Jackson's ALLOW_COMMENTS), never inside strings; errors keep line and column."""
        text = (
            "// the agent\n"
            '{ /* a { block [ comment\n spanning */ "flows": [{"filePattern": "/var/log/a/*.log",\n'
            '  "localStream": "app", // trailing\n'
            '  "truncatedRecordTerminator": "// not /* a comment */"}]}\n'
        )
        cfg = load_config(write(tmp_path / "agent.json", text))
        assert cfg.flows[0].truncated_record_terminator == "// not /* a comment */"
        broken = write(tmp_path / "broken.json", '/* one\ntwo */ {\n  "flows": [}\n')
        assert "line 3 column 13" in str(config_error(broken))

    def test_a_regex_python_warns_about_is_one_log_line(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """``[[`` is valid (Java reads it too); Python's FutureWarning becomes a log line naming the key,
        not a multi-line warning on stderr."""
        text = json.dumps({"flows": [dict(FLOW, multiLineStartPattern="[[a]")]})
        with caplog.at_level(logging.WARNING):
            cfg = load_config(write(tmp_path / "agent.json", text))
        assert cfg.flows[0].multi_line_start_pattern == "[[a]"
        assert "flows[0].multiLineStartPattern: Possible nested set at position 1" in caplog.text

    def test_nesting_up_to_the_limit_is_read(self, tmp_path: Path) -> None:
        """Deep but sane (ADDMETADATA values may nest) is fine: the limit is far from real configs."""
        depth = config_json.MAX_DEPTH - 5  # agent.json → flows → flow → options → option
        option = {"optionName": "ADDMETADATA", "metadata": "@"}
        text = json.dumps({"flows": [dict(FLOW, dataProcessingOptions=[option])]})
        text = text.replace('"@"', "[" * depth + "]" * depth)
        load_config(write(tmp_path / "agent.json", text))


def flows_with(value: str) -> str:
    return (
        '{"flows": ['
        + FLOW_TEXT[:-1]
        + ', "dataProcessingOptions": [{"optionName": "ADDMETADATA", "metadata": '
        + value
        + "}]}]}"
    )


BOMBS = {
    "5000 nested arrays": (flows_with("[" * 5000 + "]" * 5000), "nested deeper than 64 levels"),
    "5000 nested objects": (
        '{"flows": [], "x": ' + '{"a":' * 5000 + "1" + "}" * 5000 + "}",
        "nested deeper",
    ),
    "65 nested arrays": (
        flows_with("[" * 60 + "]" * 60),
        "nested deeper than 64 levels (line 1 column",
    ),
    "5000-digit integer": (
        '{"shutdownTimeoutMillis": ' + "9" * 5000 + ', "flows": []}',
        "a number of 5,000 characters",
    ),
    "5000-digit negative": (flows_with("-" + "1" * 5000), "a number of 5,001 characters"),
    "1e999": ('{"shutdownTimeoutMillis": 1e999, "flows": []}', "the number 1e999 is out of range"),
    "-1.5E+999": (flows_with("-1.5E+999"), "the number -1.5E+999 is out of range"),
    "NaN": (flows_with("NaN"), "NaN is not JSON"),
    "Infinity": (flows_with("[1, Infinity]"), "Infinity is not JSON"),
    "-Infinity": (flows_with("-Infinity"), "Infinity is not JSON"),
    "lone surrogate value": (
        '{"flows": [{"filePattern": "/a/*.log", "localStream": "a", "truncatedRecordTerminator": "\\ud800"}]}',
        "flows[0].truncatedRecordTerminator: holds a lone UTF-16 surrogate",
    ),
    "lone surrogate key": ('{"flows": [], "\\udc00x": 1}', "the key holds a lone UTF-16 surrogate"),
    "not UTF-8": (
        b'{"flows": [\n{"filePattern": "/a/\xff.log"}]}',
        "not UTF-8 text: byte 0xff at line 2 column 21",
    ),
    "UTF-16": ('{"flows": []}'.encode("utf-16"), "not UTF-8 text: byte 0xff at line 1 column 1"),
    "empty": (b"", "is empty"),
    "only a BOM and comments": (b"\xef\xbb\xbf// nothing\n/* here */\n", "is empty"),
    "a list": ("[" + FLOW_TEXT + "]", "must be a JSON object, not a list"),
    "a number": ("42", "must be a JSON object, not a number"),
    "a string": ('"flows"', "must be a JSON object, not a string"),
    "null": ("null", "must be a JSON object, not null"),
    "flows a string": (
        '{"flows": "/var/log/*.log"}',
        "flows: must be a list of flow objects, not a string",
    ),
    "flow a string": (
        '{"flows": ["/var/log/*.log"]}',
        "flows[0]: must be a flow object, not a string",
    ),
    "options a string": (
        '{"flows": [' + FLOW_TEXT[:-1] + ', "dataProcessingOptions": "SINGLELINE"}]}',
        "flows[0].dataProcessingOptions: must be a list, not a string",
    ),
    "option a string": (
        '{"flows": [' + FLOW_TEXT[:-1] + ', "dataProcessingOptions": ["SINGLELINE"]}]}',
        "flows[0].dataProcessingOptions[0]: must be an object",
    ),
    "truncated": ('{"flows": [' + FLOW_TEXT, "invalid JSON at line 1 column"),
    "megabyte key": (
        '{"flows": [], "' + "k" * 1024 * 1024 + '": 1}',
        "characters)…kkk",
    ),
    "escape sequences in a key": (
        '{"flows": [], "\\u001b[2J\\nboom": 1}',
        "\\x1b[2J\\nboom: unknown key",
    ),
    "NUL in filePattern": (
        '{"flows": [{"filePattern": "/var/log/\\u0000.log", "localStream": "a"}]}',
        "flows[0].filePattern: must not contain a NUL character",
    ),
    "NUL in checkpointFile": (
        '{"checkpointFile": "/var/lib/\\u0000", "flows": [' + FLOW_TEXT + "]}",
        "checkpointFile: must not contain a NUL character",
    ),
    "status socket path too long": (
        '{"statusSocket": "/run/' + "s" * 200 + '", "flows": [' + FLOW_TEXT + "]}",
        "statusSocket: is 205 bytes long; a Unix socket path may have at most 107",
    ),
    "prometheusListen not a port": (
        '{"metrics.prometheusListen": "127.0.0.1:99999", "flows": [' + FLOW_TEXT + "]}",
        "metrics.prometheusListen: expected a port 0-65535 in '127.0.0.1:99999'",
    ),
    "regex too many repeats": (
        '{"flows": [' + FLOW_TEXT[:-1] + ', "multiLineStartPattern": "a{99999999999}"}]}',
        "multiLineStartPattern: is not a valid regular expression: the repetition number is too large",
    ),
    "regex nested 3000 deep": (
        '{"flows": ['
        + FLOW_TEXT[:-1]
        + ', "multiLineStartPattern": "'
        + "(" * 3000
        + ")" * 3000
        + '"}]}',
        "multiLineStartPattern: is not a valid regular expression",
    ),
    "regex only valid as text": (
        '{"flows": [' + FLOW_TEXT[:-1] + ', "multiLineStartPattern": "\\\\u00e9"}]}',
        "bad escape \\u at position 0 (it is matched against bytes)",
    ),
    "LOGTOJSON pattern too many repeats": (
        '{"flows": [' + FLOW_TEXT[:-1] + ', "dataProcessingOptions": [{"optionName": "LOGTOJSON", '
        '"logFormat": "SYSLOG", "matchPattern": "(a{99999999999})", "customFieldNames": ["a"]}]}]}',
        "dataProcessingOptions[0].matchPattern: is not a valid regular expression",
    ),
    "CSV delimiter nested 3000 deep": (
        '{"flows": [' + FLOW_TEXT[:-1] + ', "dataProcessingOptions": [{"optionName": "CSVTOJSON", '
        '"customFieldNames": ["a"], "delimiter": "' + "(" * 3000 + "," + ")" * 3000 + '"}]}]}',
        "dataProcessingOptions[0].delimiter: is neither a literal nor a valid regular expression",
    ),
}


class TestBombs:
    @pytest.mark.parametrize("name", list(BOMBS))
    def test_each_is_one_config_error(self, tmp_path: Path, name: str) -> None:
        """Each hostile document is refused with one line that says what and where."""
        text, words = BOMBS[name]
        path = write(tmp_path / "agent.json", text)
        message = str(config_error(path))
        assert message.startswith(f"{path}: "), message[:300]
        assert words in message, message[:300]

    def test_a_huge_file_is_refused_before_it_is_read(self, tmp_path: Path) -> None:
        path = tmp_path / "agent.json"
        with open(path, "wb") as fh:
            fh.truncate(64 * 1024 * 1024 * 1024)  # sparse: 64 GiB of nothing
        assert "larger than the 4 MiB a configuration file may hold" in str(config_error(path))

    def test_the_whole_configuration_has_a_budget(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(config_json, "MAX_TOTAL_BYTES", 4000)
        main = write(tmp_path / "agent.json", json.dumps({"flows": [FLOW]}))
        (tmp_path / "agent.d").mkdir()
        for i in range(60):
            write(
                tmp_path / "agent.d" / f"{i:02d}.json",
                json.dumps({"flows": [dict(FLOW, localStream=f"s{i}")]}),
            )
        error = config_error(main)
        assert "takes the configuration over" in str(error) and "agent.d" in str(error.source)

    @pytest.mark.parametrize("kind", ["directory", "fifo", "device", "symlink loop", "missing"])
    def test_what_is_not_a_readable_file(self, tmp_path: Path, kind: str) -> None:
        """A directory, FIFO (would block forever), device, symlink loop or nothing: one clear line."""
        path = tmp_path / "agent.json"
        if kind == "directory":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "device":
            path = Path("/dev/zero")
        elif kind == "symlink loop":
            path.symlink_to(path)
        words = {
            "directory": "is a directory",
            "fifo": "is not a regular file",
            "device": "is not a regular file",
            "symlink loop": "cannot be read: Too many levels of symbolic links",
            "missing": "configuration file not found",
        }[kind]
        assert words in str(config_error(path))

    def test_an_unreadable_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = write(tmp_path / "agent.json", json.dumps({"flows": [FLOW]}))
        real_open = os.open

        def denied(file: object, *args: object, **kwargs: object) -> int:
            if str(file) == str(path):
                raise PermissionError(13, "Permission denied")
            return real_open(file, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(config_json.os, "open", denied)
        assert str(config_error(path)) == f"{path}: cannot be read: Permission denied"

    def test_an_unlistable_agent_d_is_an_error_not_no_flows(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        main = write(tmp_path / "agent.json", json.dumps({"flows": [FLOW]}))
        (tmp_path / "agent.d").mkdir()

        def denied(path: object) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(config_json.os, "scandir", denied)
        assert "agent.d: cannot list the directory: Permission denied" in str(config_error(main))

    def test_agent_d_with_thousands_of_files(self, tmp_path: Path) -> None:
        main = write(tmp_path / "agent.json", json.dumps({"flows": [FLOW]}))
        (tmp_path / "agent.d").mkdir()
        for i in range(config_json.MAX_EXTRA_FILES + 1):
            (tmp_path / "agent.d" / f"{i:04d}.json").write_bytes(b"{}")
        assert "holds 1001 *.json files; at most 1000 are read" in str(config_error(main))

    def test_an_agent_d_entry_that_is_a_directory(self, tmp_path: Path) -> None:
        main = write(tmp_path / "agent.json", json.dumps({"flows": [FLOW]}))
        (tmp_path / "agent.d" / "x.json").mkdir(parents=True)
        error = config_error(main)
        assert error.source == str(tmp_path / "agent.d" / "x.json") and "is a directory" in str(
            error
        )

    def test_an_unforeseen_failure_is_still_a_config_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Belt and braces: a bug while validating still exits 78 and keeps a running agent running."""

        def broken(*args: object, **kwargs: object) -> None:
            raise KeyError("surprise")

        monkeypatch.setattr("agent.config.loading.parse_config", broken)
        path = write(tmp_path / "agent.json", json.dumps({"flows": [FLOW]}))
        with pytest.raises(ConfigError, match="internal error KeyError: 'surprise'") as info:
            load_config(path)
        assert isinstance(info.value.__cause__, KeyError)


class TestOneLine:
    def test_control_characters_and_line_separators_are_escaped(self) -> None:
        text = one_line("a\nb\rc\x1b[2J\x85d\u2028e\x00")
        assert text == "a\\nb\\rc\\x1b[2J\\x85d\\u2028e\\x00"
        assert text.isprintable() and len(text.splitlines()) == 1

    def test_long_text_keeps_head_and_tail(self) -> None:
        text = one_line("h" * 1000 + "t" * 1000, 100)
        assert text.startswith("h" * 50) and text.endswith("t" * 50)
        assert "(1,900 characters)" in text
