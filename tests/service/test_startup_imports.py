"""What a start-up imports is what its configuration uses: the real ``python -m agent`` process.

Start-up time is mostly imports (issue 14: botocore's client ~0.15 s, now built at a flow's first
send; importlib.metadata ~60 ms, prometheus_client ~35 ms, the endpoint and rich for commands that
were not run). A timed test
would be flaky on a shared machine; the list of loaded modules is not. Each case runs the agent in
a subprocess under a small wrapper that writes ``sorted(sys.modules)`` at exit, and checks what
must be absent, and (so that the check can fail) what must be present where the configuration
asks for it. The time itself is measured by the S1 row of ``make bench`` (tests/bench/bench_startup.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.peers.servers import Peer
from tests.support.agent import REPO, agent_env
from tests.support.config import NO_CLOUDWATCH, from_start, local_config, write_config
from tests.support.logs import write_log

# Runs `python -m agent ARGS` and, at exit (SystemExit included), writes every loaded module's name.
WRAPPER = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def dump():
    with open(out, "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
atexit.register(dump)
sys.argv[0] = "kinesis-agent"
runpy.run_module("agent", run_name="__main__", alter_sys=True)
"""

# Never needed by a flow without processing that sends nothing: the AWS SDK, the Prometheus
# client, the terminal views, the Kinesis endpoint (and its HTTP/2), the processor families and
# orjson (with the uuid and platform it imports; ~5 ms together), difflib (for "did you mean"
# only), and the version look-up (last: see test_version_loads_no_command_and_no_daemon).
NOT_FOR_LOCAL = (
    "botocore",
    "boto3",
    "urllib3",
    "prometheus_client",
    "rich",
    "h2",
    "agent.endpoint",
    "agent.awsclient",
    "agent.observability.prometheus",
    "agent.processors.text",
    "agent.processors.csvjson",
    "agent.processors.logjson",
    "agent.processors.metadata",
    "agent.processors.ec2",
    "orjson",
    "uuid",
    "platform",
    "difflib",
    "importlib.metadata",
)


def loaded(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -m agent *args``; its result and the modules it had loaded at exit."""
    out = tmp_path / "modules.txt"
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(out), *args],
        capture_output=True,
        text=True,
        env=agent_env(),
        cwd=REPO,
        timeout=60,
    )
    return proc, set(out.read_text().split())


def present(modules: set[str], *packages: str) -> list[str]:
    """The names in ``modules`` that are one of ``packages`` or inside one."""
    return sorted(m for m in modules for p in packages if m == p or m.startswith(p + "."))


def empty_logs(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    return logs / "*.log"  # matches no file


def test_run_once_on_an_empty_local_flow_loads_no_aws_prometheus_rich_or_endpoint(
    tmp_path: Path,
) -> None:
    """``run --once`` into the embedded store: none of the optional parts load."""
    config = local_config(tmp_path, from_start(empty_logs(tmp_path), localStream="s"))
    proc, modules = loaded(tmp_path, "run", "--once", "-c", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "agent.sinks.local" in modules  # the run did start the flow
    assert present(modules, *NOT_FOR_LOCAL) == []


def test_a_flow_with_processing_loads_its_processors_family_only(tmp_path: Path) -> None:
    """LOGTOJSON loads its module (and orjson, which it writes with), not the other families."""
    flow = from_start(
        empty_logs(tmp_path),
        localStream="s",
        dataProcessingOptions=[{"optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG"}],
    )
    proc, modules = loaded(tmp_path, "run", "--once", "-c", str(local_config(tmp_path, flow)))
    assert proc.returncode == 0, proc.stderr
    assert {"agent.processors.logjson", "orjson"} <= modules
    others = ("text", "csvjson", "metadata", "ec2")
    assert present(modules, *(f"agent.processors.{m}" for m in others)) == []


def kinesis_flow_config(tmp_path: Path, endpoint: str, stream: str) -> Path:
    return write_config(
        tmp_path / "agent.json",
        {
            "checkpointFile": str(tmp_path / "cp.db"),
            **NO_CLOUDWATCH,
            "kinesis.endpoint": endpoint,
            "flows": [from_start(tmp_path / "logs" / "*.log", kinesisStream=stream)],
        },
    )


def test_run_once_on_an_empty_kinesis_flow_loads_no_botocore(tmp_path: Path) -> None:
    """A Kinesis flow builds its client at its first send: with nothing to send, no botocore
    (nor the client module that imports it) is loaded, and none of the other optional parts."""
    empty_logs(tmp_path)
    # --once with no file sends nothing: the port is never connected to
    config = kinesis_flow_config(tmp_path, "http://127.0.0.1:1", "s")
    proc, modules = loaded(tmp_path, "run", "--once", "-c", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "agent.sinks.kinesis" in modules  # the run did start the flow
    assert present(modules, *NOT_FOR_LOCAL, "agent.store") == []


def test_run_once_that_sends_to_kinesis_loads_botocore(
    tmp_path: Path, kinesalite: Peer, stream: str
) -> None:
    """The same flow with a line to send builds its client (so the test above can fail)."""
    write_log(tmp_path / "logs" / "app.log", 1)
    config = kinesis_flow_config(tmp_path, kinesalite.endpoint, stream)
    proc, modules = loaded(tmp_path, "run", "--once", "-c", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "botocore.client" in modules and "agent.awsclient" in modules
    assert present(modules, "boto3", "prometheus_client", "rich", "h2", "agent.endpoint") == []


def test_prometheus_client_loads_when_a_listener_is_configured(tmp_path: Path) -> None:
    """``metrics.prometheusListen`` set: the listener, and so prometheus_client, is started."""
    config = local_config(
        tmp_path,
        from_start(empty_logs(tmp_path), localStream="s"),
        **{"metrics.prometheusListen": "127.0.0.1:0"},
    )
    proc, modules = loaded(tmp_path, "run", "--once", "-c", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "prometheus_client" in modules


def test_version_loads_no_command_and_no_daemon(tmp_path: Path) -> None:
    """``--version`` prints the version having loaded neither the daemon nor any command's work."""
    proc, modules = loaded(tmp_path, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("kinesis-agent ")
    assert (
        present(
            modules,
            *NOT_FOR_LOCAL[:-1],  # the version is looked up: importlib.metadata is expected
            "asyncio",
            "agent.store",
            "agent.service",
            "agent.pipeline",
            "agent.observability",
        )
        == []
    )
