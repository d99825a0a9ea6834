"""AWS endpoints and regions are judged when the configuration loads, not when a client is built.

The Kinesis and Firehose sinks build their botocore client at their first send (issue 14: a run
that sends nothing never imports botocore). Before that change an endpoint that is no URL or a
region that is no host label stopped ``run`` at start, inside botocore, with a traceback; now the
configuration refuses it, as every other config error: exit 78 and one line naming the key, from
``run`` and from ``check`` alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import parse_config
from agent.errors import ConfigError
from tests.support.agent import run_agent
from tests.support.config import NO_CLOUDWATCH, write_config

BAD = [
    ("kinesis.region", "not a region!", "kinesisStream"),
    ("kinesis.region", "eu_west_1", "kinesisStream"),
    ("kinesis.endpoint", "http://[::1", "kinesisStream"),
    ("kinesis.endpoint", "http://bad host:4567", "kinesisStream"),
    ("kinesis.endpoint", "http://localhost:port", "kinesisStream"),
    ("kinesis.endpoint", "ftp://localhost", "kinesisStream"),
    ("kinesis.endpoint", "https://kinesis.123.amazonaws.com", "kinesisStream"),
    ("firehose.endpoint", "http://", "deliveryStream"),
    ("firehose.endpoint", "https://fire\nhose.eu-west-1.amazonaws.com", "deliveryStream"),
]
GOOD = [
    ("kinesis.region", "eu-west-1", "kinesisStream"),
    ("kinesis.endpoint", "kinesis.eu-west-1.amazonaws.com", "kinesisStream"),
    ("kinesis.endpoint", "http://[::1]:4567", "kinesisStream"),
    ("kinesis.endpoint", "http://127.0.0.1:4567/", "kinesisStream"),
    ("kinesis.endpoint", "", "kinesisStream"),  # empty: the default endpoint
    ("firehose.endpoint", "https://firehose.us-gov-west-1.amazonaws.com", "deliveryStream"),
]


def doc(key: str, value: str, destination: str, tmp: Path | None = None) -> dict[str, Any]:
    return {
        "checkpointFile": str((tmp or Path("/nonexistent")) / "cp.db"),
        **NO_CLOUDWATCH,
        key: value,
        "flows": [{"filePattern": str((tmp or Path("/l")) / "*.log"), destination: "s"}],
    }


@pytest.mark.parametrize(("key", "value", "destination"), BAD)
def test_a_bad_endpoint_or_region_is_a_config_error_naming_the_key(
    key: str, value: str, destination: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(doc(key, value, destination))
    assert exc.value.path == key
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(("key", "value", "destination"), GOOD)
def test_endpoints_and_regions_botocore_takes_are_accepted(
    key: str, value: str, destination: str
) -> None:
    parse_config(doc(key, value, destination))


def test_keys_no_flow_uses_are_not_judged() -> None:
    """A local-only configuration with a stray Kinesis region loads, as it did before."""
    parse_config(doc("kinesis.region", "not a region!", "localStream"))
    parse_config(doc("firehose.endpoint", "http://[::1", "kinesisStream"))


@pytest.mark.parametrize("command", ["run --once", "check"])
def test_run_and_check_exit_78_with_one_line(tmp_path: Path, command: str) -> None:
    """The agent stops at start, before anything is read or sent, as it did inside botocore."""
    config = write_config(
        tmp_path / "agent.json", doc("kinesis.region", "not a region!", "kinesisStream", tmp_path)
    )
    (tmp_path / "app.log").write_bytes(b"a line\n")
    proc = run_agent(*command.split(), "-c", str(config))
    lines = proc.stderr.splitlines()
    assert proc.returncode == 78, proc.stderr
    assert len(lines) == 1 and "kinesis.region" in lines[0] and str(config) in lines[0]
