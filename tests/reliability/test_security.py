"""S1: the service runs as its own unprivileged user, listeners of ours bind loopback, and no
secret reaches the logs or ``check``'s output."""

from __future__ import annotations

import configparser
import time
from pathlib import Path

import pytest

from agent.config import AgentConfig, load_config
from tests.peers.helpers import new_stream
from tests.peers.servers import Peer
from tests.support.agent import REPO, run_agent, start_agent, stop_agent
from tests.support.config import aws_config, from_start
from tests.support.logs import append, numbered

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY-s1"
ACCESS_KEY = "AKIAS1SECRETACCESSKEYID"
EXTERNAL_ID = "external-id-s1-do-not-log"
SESSION_TOKEN = "FwoGZXIvYXdzEBs1SESSIONTOKENdonotlog"
SECRETS = (SECRET_KEY, ACCESS_KEY, EXTERNAL_ID, SESSION_TOKEN)


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(REPO / "systemd" / "kinesis-agent.service")
    return parser


def test_unit_runs_as_its_own_unprivileged_user() -> None:
    """User=/Group= kinesis-agent (never root), no new privileges, no capabilities."""
    service = unit()["Service"]
    assert service["User"] == "kinesis-agent"
    assert service["Group"] == "kinesis-agent"
    assert service.get("NoNewPrivileges") == "yes"
    assert service.get("CapabilityBoundingSet", "x") == ""
    assert service.get("AmbientCapabilities", "x") == ""
    assert service.get("ProtectSystem") == "strict"


def test_secrets_never_in_the_config_repr(tmp_path: Path) -> None:
    """The frozen config's repr (which ends up in tracebacks and debug logs) hides the keys."""
    cfg = _secret_config(tmp_path, "http://127.0.0.1:9", "s")
    text = repr(load_config(str(cfg))) + str(load_config(str(cfg)))
    for secret in SECRETS[:3]:
        assert secret not in text


def test_prometheus_listen_defaults_to_loopback() -> None:
    """metrics.prometheusListen is off by default (no listener at all); a bare port binds
    127.0.0.1, only an explicit host binds elsewhere."""
    from agent.observability.prometheus import parse_listen

    assert AgentConfig(flows=()).metrics_prometheus_listen is None
    assert parse_listen("9100") == ("127.0.0.1", 9100)
    assert parse_listen(":9100") == ("127.0.0.1", 9100)
    assert parse_listen("0.0.0.0:9100") == ("0.0.0.0", 9100)


def _secret_config(tmp: Path, endpoint: str, stream: str) -> Path:
    (tmp / "logs").mkdir(exist_ok=True)
    return aws_config(
        tmp,
        from_start(tmp / "logs" / "*.log", kinesisStream=stream),
        checkpoints=tmp / "cp.db",
        **{
            "kinesis.endpoint": endpoint,
            "awsAccessKeyId": ACCESS_KEY,
            "awsSecretAccessKey": SECRET_KEY,
            "assumeRoleExternalId": EXTERNAL_ID,
        },
    )


@pytest.mark.slow
def test_no_secret_in_logs_or_check_output(tmp_path: Path, kinesalite: Peer) -> None:
    """A run at DEBUG against kinesalite (that answers errors too: a missing stream), ``check``
    and ``status --json`` of the failing agent: no output holds the access key, secret key,
    external id or session token."""
    stream = new_stream(kinesalite.endpoint)
    cfg = _secret_config(tmp_path, kinesalite.endpoint, stream)
    append(tmp_path / "logs" / "a.log", numbered("a", 0, 50))
    env = {"AWS_SESSION_TOKEN": SESSION_TOKEN, "KINESIS_AGENT_LOG_LEVEL": "DEBUG"}
    outputs = []
    for args in (
        ["run", "--once", "-c", str(cfg)],
        ["check", "-c", str(cfg)],
    ):
        done = run_agent(*args, env=env, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout + done.stderr)
    # and a failing destination (stream missing): error paths log the request context
    broken = _secret_config(tmp_path, kinesalite.endpoint, "no-such-stream")
    log = tmp_path / "agent.log"
    proc = start_agent(broken, log=log, env=env)
    time.sleep(3)  # failing and retrying by now
    status = run_agent("status", "--json", "-c", str(broken), env=env, timeout=30)
    assert status.returncode == 0, status.stderr[-2000:]
    outputs.append(status.stdout + status.stderr)
    stop_agent(proc, timeout=20)
    outputs.append(log.read_text())
    assert "no-such-stream" in outputs[-1]
    for text in outputs:
        for secret in SECRETS:
            assert secret not in text, f"secret {secret[:6]}… leaked"
        assert "Authorization" not in text or "Credential=" + ACCESS_KEY not in text
