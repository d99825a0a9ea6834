"""`make run`: the agent in the foreground on the embedded store, fed by a demo log that keeps growing.

Everything lives under ./demo-state (config, logs, store, checkpoints); no root needed. A writer
thread appends Apache-style lines and rotates the log by rename every few hundred lines, so the
rotation handling is visible too.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from pathlib import Path

from agent.cli.main import configure_logging
from agent.config import load_config
from agent.service import daemon

PATHS = [
    "/",
    "/index.html",
    "/api/orders",
    "/api/users/42",
    "/static/app.js",
    "/login",
    "/search?q=kinesis",
]
DEMO_LISTEN = "127.0.0.1:4567"
AGENTS = ["curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64)", "kinesis-agent-demo/1.0"]


def write_config(root: Path) -> Path:
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    config = {
        "checkpointFile": str(root / "state" / "checkpoints.db"),
        "localStore.directory": str(root / "state" / "streams"),
        "localStore.shardCount": 2,
        # the store as a Kinesis endpoint: any Kinesis client reads the demo stream
        "localStore.listen": os.environ.get("KINESIS_AGENT_DEMO_LISTEN", DEMO_LISTEN),
        "log.statusReportingPeriodSeconds": 10,
        "flows": [
            {
                "filePattern": str(logs / "access.log*"),
                "localStream": "demo",
                "initialPosition": "START_OF_FILE",
                "maxBufferAgeMillis": 1000,
            }
        ],
    }
    path = root / "agent.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def demo_line(n: int, rng: random.Random) -> str:
    ip = f"192.0.2.{rng.randint(1, 254)}"
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    status = rng.choice([200, 200, 200, 304, 404, 500])
    return (
        f'{ip} - - [{stamp}] "GET {rng.choice(PATHS)} HTTP/1.1" {status} {rng.randint(100, 9000)} '
        f'"-" "{rng.choice(AGENTS)}" seq={n}\n'
    )


def writer(logs: Path, stop: threading.Event, rate: float = 5.0, rotate_every: int = 200) -> None:
    rng = random.Random()
    live = logs / "access.log"
    n = 0
    while not stop.is_set():
        with open(live, "a", encoding="utf-8") as fh:
            fh.write(demo_line(n, rng))
        n += 1
        if n % rotate_every == 0:  # logrotate-style: rename, keep two old files
            old = logs / "access.log.2"
            if old.exists():
                old.unlink()
            if (logs / "access.log.1").exists():
                os.rename(logs / "access.log.1", old)
            os.rename(live, logs / "access.log.1")
        stop.wait(1 / rate)


def main() -> int:
    root = Path(os.environ.get("KINESIS_AGENT_DEMO_DIR", "demo-state")).resolve()
    config_path = write_config(root)
    configure_logging("INFO")
    stop = threading.Event()
    thread = threading.Thread(target=writer, args=(root / "logs", stop), daemon=True)
    thread.start()
    exe = Path(sys.executable).parent / "kinesis-agent"
    aws = os.path.relpath(Path(sys.executable).parent / "aws")
    url = "http://" + json.loads(config_path.read_text())["localStore.listen"]
    print(
        "\nkinesis-agent demo: tailing demo-state/logs/access.log* into the local stream 'demo'.\n"
        "Watch records arrive in another terminal with:\n\n"
        f"    {os.path.relpath(exe)} stream read demo --follow -c {os.path.relpath(config_path)}\n\n"
        f"or read it as Kinesis at {url} with the AWS CLI (any key pair will do):\n\n"
        "    export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1\n"
        f"    {aws} kinesis describe-stream-summary --stream-name demo --endpoint-url {url}\n"
        f"    IT=$({aws} kinesis get-shard-iterator --stream-name demo --endpoint-url {url} \\\n"
        "        --shard-id shardId-000000000000 --shard-iterator-type TRIM_HORIZON \\\n"
        "        --query ShardIterator --output text)\n"
        f"    {aws} kinesis get-records --shard-iterator $IT --limit 5 --endpoint-url {url}\n\n"
        "Ctrl+C stops the agent (it drains and commits first).\n",
        file=sys.stderr,
        flush=True,
    )
    try:
        return daemon.run(load_config(config_path), config_path=str(config_path))
    finally:
        stop.set()


if __name__ == "__main__":
    raise SystemExit(main())
