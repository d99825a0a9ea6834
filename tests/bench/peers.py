"""Reference shippers and process probes for the benchmarks: rsyslog's imfile → omfile, /proc.

rsyslog runs as its own instance (``rsyslogd -n -f OUR.conf``) with its own work directory under
the benchmark's temporary directory; the system's rsyslog, its config and its service are never
touched. Timing runs from launching rsyslogd until its output file reaches the input's size.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from common import Run

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

RSYSLOG_CONF = """\
global(workDirectory="{state}" maxMessageSize="64k")
module(load="imfile" mode="inotify" PollingInterval="1")
template(name="raw" type="string" string="%msg%\\n")
ruleset(name="ship") {{ action(type="omfile" file="{out}" template="raw") }}
input(type="imfile" file="{input}" tag="access:" ruleset="ship"
      freshStartTail="off" readMode="0")
action(type="omfile" file="{internal}")
"""


def proc_cpu(pid: int) -> float:
    """utime + stime of every thread of ``pid``, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_mem_mb(pid: int, key: str = "VmRSS") -> float:
    """A /proc/PID/status size (VmRSS now, VmHWM the peak) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def rsyslogd() -> str | None:
    return shutil.which("rsyslogd") or (
        "/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None
    )


def rsyslog_once(work: Path, log: Path, timeout: float = 300.0) -> Run:
    """rsyslog imfile → omfile over ``log`` from its start; returns when the copy is complete."""
    binary = rsyslogd()
    if binary is None:
        raise RuntimeError("rsyslogd is not installed (apt-get install rsyslog)")
    home = work / "rsyslog"
    shutil.rmtree(home, ignore_errors=True)
    (home / "state").mkdir(parents=True)
    out = home / "out.log"
    conf = home / "rsyslog.conf"
    conf.write_text(
        RSYSLOG_CONF.format(
            state=home / "state", out=out, input=log, internal=home / "rsyslog-internal.log"
        )
    )
    size = log.stat().st_size
    start = time.perf_counter()
    proc = subprocess.Popen(
        [binary, "-n", "-f", str(conf), "-i", str(home / "rsyslogd.pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if out.exists() and out.stat().st_size >= size:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited {proc.returncode}; see {home}")
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"rsyslog copied {out.stat().st_size} of {size} bytes in time")
            time.sleep(0.025)
        wall = time.perf_counter() - start
        cpu = proc_cpu(proc.pid)
        rss = proc_mem_mb(proc.pid, "VmHWM")
    finally:
        stop(proc)
        shutil.rmtree(home, ignore_errors=True)
    return Run(wall, cpu, rss, 0)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``: only the process we started."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
