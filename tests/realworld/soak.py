"""The long real-program runs for ``make soak``: every rotation mode, nginx and Apache, one table.

    python -m tests.realworld.soak [--quick]

Each run: tens of thousands of real requests, twenty rotations by the real logrotate, SIGKILLs of
the agent (not in olddir: a file moved out of the pattern while the agent is down is beyond anyone's
reach). ``--quick`` uses the ``make test`` lengths. Returns the failures, each one line.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from pathlib import Path

from tests.realworld.rotation import MODES, require_logrotate
from tests.realworld.scenario import HEADER, RESULTS, failures, run_mode


def soak(quick: bool) -> list[str]:
    require_logrotate()
    requests, rate, rotations, kills = (1500, 1000, 3, 1) if quick else (20_000, 500, 20, 3)
    root = Path(tempfile.mkdtemp(prefix="kinesis-agent-realworld-"))
    out: list[str] = []
    for kind in ("nginx", "apache"):
        for mode in MODES:
            work = root / f"{kind}-{mode}"
            work.mkdir()
            seed = int(time.time())
            print(f"== real {kind}, logrotate {mode} (seed {seed}) ...", flush=True)
            try:
                t = run_mode(
                    work,
                    kind,
                    mode,
                    requests=requests,
                    rate=rate,
                    rotations=rotations * (3 if mode == "copytruncate" and quick else 1),
                    kills=0 if mode == "olddir" else kills,
                    seed=seed,
                )
            except Exception:
                traceback.print_exc()
                out.append(f"real {kind} {mode}: crashed (see above; agent log in {work})")
                continue
            print(t.report(), flush=True)
            out += [f"real {kind} {mode}: {f}" for f in failures(t)]
    return out


def table() -> str:
    return "\n".join([HEADER, *(t.row() for t in RESULTS)])
