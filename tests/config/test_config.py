"""Config parsing: AWS keys with defaults, coercion, and errors that name the JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.config import FLOW_KEYS, GLOBAL_KEYS, AgentConfig, FlowConfig, load_config, parse_config
from agent.errors import ConfigError


def flow(**extra: object) -> dict[str, object]:
    return {"filePattern": "/var/log/app/*.log", "localStream": "app", **extra}


class TestParse:
    def test_defaults_match_the_aws_agent(self) -> None:
        """A minimal flow gets the AWS defaults."""
        cfg = parse_config({"flows": [flow()]})
        f = cfg.flows[0]
        assert f.max_buffer_age_millis == 60_000
        assert f.max_buffer_size_records == 500
        assert f.max_buffer_size_bytes == 5 * 1024 * 1024
        assert f.initial_position == "END_OF_FILE"
        assert f.partition_key_option == "RANDOM"
        assert cfg.shutdown_timeout_millis == 10_000
        assert cfg.checkpoint_file == "/var/lib/kinesis-agent/checkpoints.db"

    def test_firehose_buffer_default_is_4_mib(self) -> None:
        """deliveryStream flows default to Firehose's 4 MiB batch."""
        cfg = parse_config({"flows": [{"filePattern": "/x/*.log", "deliveryStream": "d"}]})
        assert cfg.flows[0].max_buffer_size_bytes == 4 * 1024 * 1024
        assert cfg.flows[0].flow_id == "fh:d:/x/*.log"

    def test_numbers_and_booleans_as_strings(self) -> None:
        """'1000' and 'yes' are accepted as AWS does."""
        cfg = parse_config(
            {"cloudwatch.emitMetrics": "no", "flows": [flow(maxBufferAgeMillis="1000")]}
        )
        assert cfg.cloudwatch_emit_metrics is False
        assert cfg.flows[0].max_buffer_age_millis == 1000

    def test_every_key_maps_to_a_field(self) -> None:
        """Each accepted key that has an effect has a dataclass field."""
        agent_fields = set(AgentConfig.__dataclass_fields__)
        flow_fields = set(FlowConfig.__dataclass_fields__)
        for key in GLOBAL_KEYS:
            assert key.ignored or key.name == "flows" or key.field in agent_fields, key.name
        for key in FLOW_KEYS:
            assert key.ignored or key.field in flow_fields, key.name

    def test_secrets_are_not_in_repr(self) -> None:
        """Access keys never show in a repr."""
        cfg = parse_config(
            {"awsAccessKeyId": "AKIAEXAMPLE", "awsSecretAccessKey": "s3cr3t", "flows": [flow()]}
        )
        assert "s3cr3t" not in repr(cfg)
        assert "AKIAEXAMPLE" not in repr(cfg)

    def test_null_means_the_default(self) -> None:
        """``null`` for a string key is "not set", as in the AWS agent: the default applies."""
        cfg = parse_config(
            {
                "checkpointFile": None,
                "cloudwatch.namespace": None,
                "flows": [flow(truncatedRecordTerminator=None, multiLineStartPattern=None)],
            }
        )
        assert cfg.checkpoint_file == "/var/lib/kinesis-agent/checkpoints.db"
        assert cfg.cloudwatch_namespace == "AWSKinesisAgent"
        assert cfg.flows[0].truncated_record_terminator == "\n"
        assert cfg.flows[0].multi_line_start_pattern is None

    def test_a_null_file_pattern_is_missing(self) -> None:
        with pytest.raises(ConfigError) as info:
            parse_config({"flows": [flow(filePattern=None)]})
        assert info.value.path == "flows[0].filePattern" and "is required" in info.value.message


class TestErrors:
    @pytest.mark.parametrize(
        ("doc", "path", "words"),
        [
            (
                {"flows": [flow(), flow(maxBufferAgeMilis=5)]},
                "flows[1].maxBufferAgeMilis",
                "maxBufferAgeMillis",
            ),
            (
                {"flows": [flow(maxBufferAgeMillis=10)]},
                "flows[0].maxBufferAgeMillis",
                "1000 to 900000",
            ),
            (
                {"flows": [flow(maxBufferAgeMillis="soon")]},
                "flows[0].maxBufferAgeMillis",
                "integer",
            ),
            (
                {"flows": [flow(initialPosition="start_of_file")]},
                "flows[0].initialPosition",
                "START_OF_FILE",
            ),
            ({"flows": [{"filePattern": "/a/*"}]}, "flows[0]", "no destination"),
            ({"flows": [flow(kinesisStream="k")]}, "flows[0]", "2 destinations"),
            ({"maxBufferAgeMillis": 1000, "flows": [flow()]}, "maxBufferAgeMillis", "per-flow key"),
            ({"flows": [flow(checkpointFile="/x")]}, "flows[0].checkpointFile", "global key"),
            ({"flows": []}, "flows", "no flows"),
            (
                {"flows": [flow(localStream="bad/name")]},
                "flows[0].localStream",
                "not a valid stream name",
            ),
            ({"flows": [flow(filePattern="relative/*.log")]}, "flows[0].filePattern", "absolute"),
            (
                {"flows": [flow(multiLineStartPattern="([")]},
                "flows[0].multiLineStartPattern",
                "regular expression",
            ),
            ({"flows": [flow(), flow()]}, "flows[1]", "duplicates"),
            (
                {"flows": [flow(partitionKeyOption="FIELD")]},
                "flows[0].partitionKeyField",
                "required",
            ),
            (
                {
                    "flows": [
                        flow(
                            dataProcessingOptions=[
                                {"optionName": "SINGLELINE", "parseOptions": ["X"]}
                            ]
                        )
                    ]
                },
                "flows[0].dataProcessingOptions[0].parseOptions",
                "NO_TRIM",
            ),
            (
                {"flows": [flow(dataProcessingOptions=[{"optionName": "singleline"}])]},
                "flows[0].dataProcessingOptions[0].optionName",
                "case-sensitive",
            ),
        ],
    )
    def test_error_names_the_path(self, doc: dict[str, object], path: str, words: str) -> None:
        """Each mistake is one ConfigError naming its JSON path and saying what is expected."""
        with pytest.raises(ConfigError) as info:
            parse_config(doc)
        assert info.value.path == path
        assert words in str(info.value)


class TestFiles:
    def test_comments_and_agent_d(self, tmp_path: Path) -> None:
        """Comments are allowed; agent.d/*.json flows are appended in name order."""
        (tmp_path / "agent.json").write_text(
            '// main\n{ /* globals */ "checkpointFile": "/tmp/c.db", "flows": ['
            + json.dumps(flow())
            + "] }"
        )
        (tmp_path / "agent.d").mkdir()
        (tmp_path / "agent.d" / "b.json").write_text(json.dumps({"flows": [flow(localStream="b")]}))
        (tmp_path / "agent.d" / "a.json").write_text(json.dumps({"flows": [flow(localStream="a")]}))
        cfg = load_config(tmp_path / "agent.json")
        assert [f.local_stream for f in cfg.flows] == ["app", "a", "b"]
        assert cfg.checkpoint_file == "/tmp/c.db"

    def test_agent_d_error_names_its_file(self, tmp_path: Path) -> None:
        """An error in an agent.d file names that file and the flow inside it."""
        (tmp_path / "agent.json").write_text(json.dumps({"flows": [flow()]}))
        (tmp_path / "agent.d").mkdir()
        (tmp_path / "agent.d" / "x.json").write_text(
            json.dumps({"flows": [flow(localStream="x", bogus=1)]})
        )
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path / "agent.json")
        assert "x.json" in str(info.value)
        assert info.value.path == "flows[0].bogus"

    def test_invalid_json_says_where(self, tmp_path: Path) -> None:
        """A syntax error gives line and column."""
        (tmp_path / "agent.json").write_text('{"flows": [\n  {"filePattern": }\n]}')
        with pytest.raises(ConfigError, match="line 2"):
            load_config(tmp_path / "agent.json")

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing config is a ConfigError, not a traceback."""
        with pytest.raises(ConfigError, match="not found"):
            load_config(tmp_path / "nope.json")
