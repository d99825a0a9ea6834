"""Reference shippers and process probes for the benchmarks: rsyslog's imfile → omfile, syslog-ng's
file() → file(), /proc.

Each runs as its own instance (``rsyslogd -n -f OUR.conf``, ``syslog-ng -F -f OUR.conf``) with its own
work directory under the benchmark's temporary directory; the system's daemons, configs and services
are never touched. Timing runs from launching the shipper until its output file reaches the input's
size. syslog-ng is not installed as a package (Debian's syslog-ng-core would remove rsyslog): `make
bench` unpacks it into the venv's peers/ directory (scripts/peer-syslog-ng.sh).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
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


# syslog-ng's file() → file() copy: flags(no-parse) makes each line the MESSAGE whole, the template
# writes it back with its newline, so the output is the input byte for byte. "tuned" (a larger
# source window and fetch limit, a deeper queue, writes of 1,000 lines) is the profile issue 14's
# goal names; "default" is syslog-ng as shipped, about half as fast here.
SYSLOG_NG_TUNING = {
    "default": ("", ""),
    "tuned": (
        "log-fifo-size(100000); flush-lines(1000);",
        "log-iw-size(20000) log-fetch-limit(2000) log-msg-size(65536)",
    ),
}

SYSLOG_NG_CONF = """\
@version: {version}
options {{ stats-freq(0); {options} }};
source s_in {{ file("{input}" follow-freq(1) flags(no-parse) {source}); }};
destination d_out {{ file("{out}" template("${{MESSAGE}}\\n")); }};
log {{ source(s_in); destination(d_out); }};
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


@dataclass(frozen=True)
class SyslogNg:
    """An unpacked syslog-ng: the binary, its module directory and the config version it speaks."""

    root: Path

    @property
    def binary(self) -> Path:
        return self.root / "usr" / "sbin" / "syslog-ng"

    @property
    def modules(self) -> Path:
        # usr/lib/syslog-ng/3.38: the modules, named by the version the config's @version gives
        return max((self.root / "usr" / "lib" / "syslog-ng").glob("[0-9]*.[0-9]*"))

    @property
    def version(self) -> str:
        return self.modules.name

    def command(self, home: Path, conf: Path) -> list[str]:
        """Foreground, no capabilities, every file it keeps (persist, pid, control socket) in home."""
        return [
            str(self.binary),
            f"--module-path={self.modules}",
            "-F",
            "--no-caps",
            "-f",
            str(conf),
            "-R",
            str(home / "syslog-ng.persist"),
            "-p",
            str(home / "syslog-ng.pid"),
            "-c",
            str(home / "syslog-ng.ctl"),
        ]

    def env(self) -> dict[str, str]:
        """Its own libraries (libsyslog-ng, libevtlog) are beside the modules, not on the system's path."""
        libs = str(self.root / "usr" / "lib" / "syslog-ng")
        old = os.environ.get("LD_LIBRARY_PATH")
        return {**os.environ, "LD_LIBRARY_PATH": f"{libs}:{old}" if old else libs}


def syslog_ng() -> SyslogNg | None:
    """The syslog-ng `make bench` unpacked into the venv (scripts/peer-syslog-ng.sh), if any."""
    here = Path(__file__).resolve().parents[2]
    for peers in (Path(sys.prefix) / "peers", here / ".venv" / "peers"):
        found = SyslogNg(peers / "syslog-ng")
        if found.binary.is_file() and any(found.root.glob("usr/lib/syslog-ng/[0-9]*.[0-9]*")):
            return found
    return None


def syslog_ng_conf(sng: SyslogNg, log: Path, out: Path, profile: str) -> str:
    options, source = SYSLOG_NG_TUNING[profile]
    return SYSLOG_NG_CONF.format(
        version=sng.version, options=options, input=log, out=out, source=source
    )


def count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def syslog_ng_once(
    work: Path, log: Path, profile: str = "tuned", timeout: float = 300.0, stall: float = 15.0
) -> Run:
    """syslog-ng file() → file() over ``log`` from its start; returns when the copy is complete.

    Raises if the copy is not complete in ``timeout``, stops growing for ``stall`` seconds, or
    (checked after the clock stops) has a line count other than the input's.
    """
    sng = syslog_ng()
    if sng is None:
        raise RuntimeError(
            "syslog-ng is not unpacked: run `make bench` (scripts/peer-syslog-ng.sh)"
        )
    home = work / "syslog-ng"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    out = home / "out.log"
    conf = home / "syslog-ng.conf"
    conf.write_text(syslog_ng_conf(sng, log, out, profile))
    size = log.stat().st_size
    with open(home / "stderr.log", "wb") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(
            sng.command(home, conf), stdout=subprocess.DEVNULL, stderr=stderr, env=sng.env()
        )
    try:
        grown, last = start, -1
        while True:
            now = time.perf_counter()
            copied = out.stat().st_size if out.exists() else 0
            if copied >= size:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"syslog-ng exited {proc.returncode}: {_stderr(home)}")
            if copied != last:
                grown, last = now, copied
            if now - grown > stall or now - start > timeout:
                raise RuntimeError(f"syslog-ng copied {copied} of {size} bytes: {_stderr(home)}")
            time.sleep(0.025)
        wall = time.perf_counter() - start
        cpu = proc_cpu(proc.pid)
        rss = proc_mem_mb(proc.pid, "VmHWM")
        stop(proc)
        want, got = count_lines(log), count_lines(out)
        if got != want or out.stat().st_size != size:
            raise RuntimeError(
                f"syslog-ng wrote {got:,} lines ({out.stat().st_size:,} bytes) "
                f"of {want:,} ({size:,} bytes)"
            )
    finally:
        stop(proc)
        shutil.rmtree(home, ignore_errors=True)
    return Run(wall, cpu, rss, 0)


def _stderr(home: Path) -> str:
    """The start of syslog-ng's stderr: where it says what it could not do."""
    text = (home / "stderr.log").read_text(errors="replace").strip()
    return text[:600] or "(nothing on stderr)"


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
