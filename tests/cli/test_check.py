"""``kinesis-agent check`` on the shipped example configs, a broken one, and --test-destination."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from agent.cli.check import test_destinations as check_destinations
from agent.config import AgentConfig, FlowConfig
from tests.support.agent import run_agent
from tests.support.streams import stored_lines

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "etc" / "examples").glob("*.json"))

APACHE = (
    '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 '
    '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"\n'
)
JAVA = (
    "2026-11-22 10:00:00 ERROR request failed\n"
    "java.lang.IllegalStateException: boom\n"
    "\tat com.example.Handler.run(Handler.java:42)\n"
    "2026-11-22 10:00:01 INFO recovered\n"
    "2026-11-22 10:00:02 INFO next\n"
)
CSV = "order_id,customer,amount\n1001,ada,12.50\n1002,grace,7.25\n"

# for each example: a file its pattern matches, its content, and what a processed record shows
SAMPLES = {
    "apache-to-kinesis.json": ("apache2/access.log", APACHE, '"request":"GET /apache_pb.gif'),
    "java-app-to-firehose.json": (
        "myapp/app-1.log",
        JAVA,
        # SINGLELINE joins the event's lines (dropping the newlines and the indentation)
        "IllegalStateException: boomat com.example.Handler.run(Handler.java:42)\n",
    ),
    "csv-to-local.json": (
        "exports/2026/11/orders-22.csv",
        CSV,
        '{"order_id":"1001","customer":"ada","amount":"12.50"}',
    ),
}


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return run_agent("check", *args)


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def _relocate(example: Path, tmp: Path) -> tuple[Path, Path]:
    """The example with its files and state moved under ``tmp``; returns (config, sample file)."""
    rel, content, _ = SAMPLES[example.name]
    doc = json.loads(_strip_comments(example.read_text()))
    pattern = doc["flows"][0]["filePattern"]
    # keep the pattern's own glob (the part after the last fixed directory) and re-root it
    parts = pattern.split("/")
    fixed = next(i for i, p in enumerate(parts) if any(c in p for c in "*?["))
    doc["flows"][0]["filePattern"] = str(tmp / "logs" / "/".join(parts[fixed - 1 :]))
    sample = tmp / "logs" / rel
    sample.parent.mkdir(parents=True, exist_ok=True)
    sample.write_text(content)
    doc["checkpointFile"] = str(tmp / "state" / "checkpoints.db")
    doc["localStore.directory"] = str(tmp / "state" / "streams")
    doc.pop("metrics.prometheusListen", None)
    config = tmp / example.name
    config.write_text(json.dumps(doc))
    return config, sample


def test_every_example_has_a_sample() -> None:
    """Each config under etc/examples/ is exercised below."""
    assert {e.name for e in EXAMPLES} == set(SAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_show_files_and_processed_records(example: Path, tmp_path: Path) -> None:
    """check lists the matched file and prints its first records after the flow's processors."""
    assert _check("-c", str(example)).returncode == 0, "the example itself validates"
    config, sample = _relocate(example, tmp_path)
    proc = _check("-c", str(config))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "configuration OK" in out
    assert f"  {sample}  {sample.stat().st_size} bytes" in out
    assert f"first records of {sample} after processing:" in out
    expected = SAMPLES[example.name][2]
    assert expected in out


def test_installed_default_config(tmp_path: Path) -> None:
    """etc/agent.json validates; its one flow is listed with whatever matches on this machine."""
    proc = _check("-c", str(ROOT / "etc" / "agent.json"))
    assert proc.returncode == 0, proc.stderr
    assert "configuration OK" in proc.stdout
    assert "flow local:syslog:/var/log/syslog* -> LocalStream:syslog" in proc.stdout


def test_broken_config_is_one_line_and_exit_78(tmp_path: Path) -> None:
    """A config error prints one line naming the JSON path and exits 78 (EX_CONFIG)."""
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"flows": [{"filePattern": "/x/*.log", "kinesisStream": "s", "maxBufferAgeMilis": 5}]}'
    )
    proc = _check("-c", str(bad))
    assert proc.returncode == 78
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert re.search(r"flows\[0\]\.maxBufferAgeMilis", lines[0])
    assert "maxBufferAgeMillis" in lines[0]  # the nearest valid key
    assert proc.stdout == ""


def test_test_destination_local(tmp_path: Path) -> None:
    """--test-destination on a local flow says the store will create the stream."""
    config, _ = _relocate(ROOT / "etc" / "examples" / "csv-to-local.json", tmp_path)
    proc = _check("-c", str(config), "--test-destination")
    assert proc.returncode == 0, proc.stderr
    assert "LocalStream:orders: OK (no store in" in proc.stdout


class TestDestinations:
    def test_failures_are_reported_per_flow(self) -> None:
        """One line per flow; a failing describe marks the check failed with its reason."""

        def ok(config: AgentConfig, flow: FlowConfig) -> str:
            return "ACTIVE, 2 open shard(s)"

        def denied(config: AgentConfig, flow: FlowConfig) -> str:
            raise PermissionError("AccessDeniedException: not authorized\nmore detail")

        config = AgentConfig(
            flows=(
                FlowConfig(file_pattern="/a", kinesis_stream="k"),
                FlowConfig(file_pattern="/b", delivery_stream="d"),
            )
        )
        good, lines = check_destinations(config, {"kinesis": ok, "firehose": denied})
        assert not good
        assert lines == [
            "  KinesisStream:k: OK (ACTIVE, 2 open shard(s))",
            "  DeliveryStream:d: FAILED: AccessDeniedException: not authorized",
        ]


def test_files_are_listed_in_shipping_order(tmp_path: Path) -> None:
    """check lists a flow's files in the order ``run`` ships them: oldest first, and on a tie of
    modification times the rotated (longer) name first, as the tracker reads them."""
    logs = tmp_path / "logs"
    logs.mkdir()
    times = {"older.log": 1_000, "app.log.1": 2_000, "app.log": 2_000, "newer.log": 3_000}
    for name, mtime in times.items():
        (logs / name).write_text(f"from {name}\n")
        os.utime(logs / name, (mtime, mtime))
    doc = {
        "checkpointFile": str(tmp_path / "state" / "checkpoints.db"),
        "localStore.directory": str(tmp_path / "state" / "streams"),
        "localStore.shardCount": 1,  # one shard: the store's order is the shipping order
        "flows": [
            {
                "filePattern": str(logs / "*"),
                "localStream": "s",
                "initialPosition": "START_OF_FILE",
            }
        ],
    }
    config = tmp_path / "agent.json"
    config.write_text(json.dumps(doc))
    proc = _check("-c", str(config))
    assert proc.returncode == 0, proc.stderr
    listed = re.findall(r"^  \S+/logs/(\S+)  \d+ bytes$", proc.stdout, re.MULTILINE)
    assert listed == ["older.log", "app.log.1", "app.log", "newer.log"]
    run = run_agent("run", "-c", str(config), "--once", text=False)
    assert run.returncode == 0, run.stderr
    shipped = [
        line.decode().split()[1] for line in stored_lines(tmp_path / "state" / "streams", "s")
    ]
    assert shipped == listed
