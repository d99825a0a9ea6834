"""Start-up (issue 14): ``run --once`` on an empty flow beside ``python -c "import botocore.session"``.

Three commands in turn, round by round (A B C A B C ...), so all three see the same machine:
the agent on an empty local-stream flow (goal: <= 0.4x the botocore import, since it needs no
botocore at all), the agent on an empty Kinesis flow (goal: <= 1.2x; its endpoint, 127.0.0.1:1,
is never connected to: --once with no file sends nothing), and the botocore import itself. Each
ratio is the median of the rounds' ratios; the seconds are whole-process wall time. A fourth
command, importing only the standard modules any run needs (asyncio, sqlite3, dataclasses,
logging, argparse, json), is the floor: what no start-up of this design can go below.

Every command runs with a bytecode cache (in the work directory; one warm-up run each writes it):
an installed agent has its .pyc files, as botocore in site-packages has. With
PYTHONDONTWRITEBYTECODE and no cache, every run would compile the agent's modules again and
measure the compiler, not the start-up.

    .venv/bin/python tests/bench/bench_startup.py [--rounds 11] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table, timed

from tests.peers.servers import TEST_ENV
from tests.support.config import write_config

ROUNDS = 11
STDLIB_FLOOR = "asyncio, sqlite3, dataclasses, logging, argparse, json"
LOCAL_GOAL = 0.4
KINESIS_GOAL = 1.2


def _configs(work: Path) -> dict[str, Path]:
    """An empty local-stream flow and an empty Kinesis flow (a pattern that matches no file)."""
    state = work / "startup-state"
    shutil.rmtree(state, ignore_errors=True)
    (state / "logs").mkdir(parents=True)
    flow = {"filePattern": str(state / "logs" / "*.log"), "initialPosition": "START_OF_FILE"}
    common = {"cloudwatch.emitMetrics": False}
    return {
        "local": write_config(
            work / "startup-local.json",
            {
                **common,
                "checkpointFile": str(state / "local-cp.db"),
                "localStore.directory": str(state / "streams"),
                "localStore.shardCount": 1,
                "flows": [{**flow, "localStream": "startup"}],
            },
        ),
        "kinesis": write_config(
            work / "startup-kinesis.json",
            {
                **common,
                "checkpointFile": str(state / "kinesis-cp.db"),
                "kinesis.endpoint": "http://127.0.0.1:1",
                "flows": [{**flow, "kinesisStream": "startup"}],
            },
        ),
    }


def measure(work: Path, rounds: int = ROUNDS) -> dict[str, float]:
    """Median wall seconds of each command and the medians of the rounds' ratios."""
    configs = _configs(work)
    commands = {
        "local": [sys.executable, "-m", "agent", "run", "--once", "-c", str(configs["local"])],
        "kinesis": [sys.executable, "-m", "agent", "run", "--once", "-c", str(configs["kinesis"])],
        "botocore": [sys.executable, "-c", "import botocore.session"],
        "floor": [sys.executable, "-c", f"import {STDLIB_FLOOR}"],
    }
    # dummy credentials and no instance metadata: nothing reaches AWS; a bytecode cache (above)
    env = {**TEST_ENV, "PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(work / "pyc")}
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(rounds + 1):  # round 0 is the warm-up: it writes the bytecode cache
        for name, command in commands.items():
            run = timed(command, env=env)
            if run.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} exited {run.returncode}")
            if round_:
                walls[name].append(run.wall)
    ratios = {
        name: statistics.median(a / b for a, b in zip(walls[name], walls["botocore"], strict=True))
        for name in ("local", "kinesis", "floor")
    }
    return {
        "local s": statistics.median(walls["local"]),
        "kinesis s": statistics.median(walls["kinesis"]),
        "botocore import s": statistics.median(walls["botocore"]),
        "local ratio": ratios["local"],
        "kinesis ratio": ratios["kinesis"],
        "stdlib floor ratio": ratios["floor"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--workdir", help="keep the configs and the bytecode cache here")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ka-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        m = measure(work, args.rounds)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    rows = [
        [
            f"run --once, empty {kind} flow",
            f"{m[f'{kind} s']:.3f} s",
            f"{m[f'{kind} ratio']:.2f}x",
            f"<= {goal}x",
            "yes" if m[f"{kind} ratio"] <= goal else "NO",
        ]
        for kind, goal in (("local", LOCAL_GOAL), ("kinesis", KINESIS_GOAL))
    ]
    print(f'python -c "import botocore.session": {m["botocore import s"]:.3f} s (median)')
    print(f"python -c 'import {STDLIB_FLOOR}': {m['stdlib floor ratio']:.2f}x that")
    print(table(rows, ["start-up", "median", "vs botocore import", "goal", "met"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
