"""What holds the event loop: run the agent with a sampler of every thread's stack, and print
what they were doing whenever the agent's own lag meter saw a lag over a threshold.

    PYTHONPATH=$PWD .venv/bin/python tests/bench/lagprobe.py run -c CONFIG [--once]
    LAGPROBE_MS=50 (threshold), LAGPROBE_OUT=/tmp/lagprobe.txt (report)

Also logs cyclic-GC pauses over 10 ms and the thread that paid for them (a pause in a worker
thread holds the GIL, so the loop too). Samples are taken every 2 ms when the sampler gets the
GIL: few samples in a long window mean the GIL itself was fought over. A debugging aid (issue 12
§1 was profiled with it), not a test.
"""

from __future__ import annotations

import collections
import gc
import os
import runpy
import sys
import threading
import time
from types import FrameType
from typing import Any

THRESHOLD = float(os.environ.get("LAGPROBE_MS", "50")) / 1000
OUT = open(os.environ.get("LAGPROBE_OUT", "/tmp/lagprobe.txt"), "w")  # noqa: SIM115
MAIN = threading.get_ident()
RING: collections.deque[tuple[float, str]] = collections.deque(maxlen=5000)
_gc_started = [0.0]


def _gc_pause(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
        return
    took = time.perf_counter() - _gc_started[0]
    if took > 0.01:
        OUT.write(
            f"GC gen{info['generation']} {took * 1000:.0f} ms in {threading.current_thread().name}"
            f" at {time.monotonic():.1f}\n"
        )
        OUT.flush()


def _summary(frame: FrameType | None) -> str:
    """The innermost frame and the agent's frames above it."""
    out: list[str] = []
    while frame is not None and len(out) < 6:
        code = frame.f_code
        if "/agent/" in code.co_filename or not out:
            out.append(f"{code.co_filename.split('/')[-1]}:{frame.f_lineno}:{code.co_name}")
        frame = frame.f_back
    return " < ".join(out)


def _sample() -> None:
    me = threading.get_ident()
    while True:
        time.sleep(0.002)
        now = time.perf_counter()
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            text = _summary(frame)
            if ident == MAIN:
                RING.append((now, text))
            elif "wait" not in text.split(" < ")[0]:  # idle pool threads say nothing
                RING.append((now, "  [thread] " + text))


def _install() -> None:
    import agent.observability.looplag as looplag

    observe = looplag.LagMeter.observe

    def observed(self: looplag.LagMeter, now: float, lag: float) -> None:
        if lag > THRESHOLD:
            since = time.perf_counter() - lag - 0.05
            counts = collections.Counter(s for t, s in list(RING) if t >= since)
            OUT.write(f"LAG {lag * 1000:.0f} ms at {time.monotonic():.1f}\n")
            for text, n in counts.most_common(10):
                OUT.write(f"   {n:4d} {text}\n")
            OUT.flush()
        observe(self, now, lag)

    looplag.LagMeter.observe = observed  # type: ignore[method-assign]
    gc.callbacks.append(_gc_pause)
    threading.Thread(target=_sample, daemon=True, name="lagprobe").start()


if __name__ == "__main__":
    _install()
    sys.argv = ["agent", *sys.argv[1:]]
    runpy.run_module("agent", run_name="__main__")
