"""The real ``logrotate`` binary, one configuration per rotation mode, and what it leaves on disk.

Each mode is a stanza for the server's ``access.log``; the modes that move the file (every one but
``copytruncate``) end with the postrotate the Debian packages use, SIGUSR1 to the server's master,
so the server reopens ``access.log``. ``rotate 1000``: nothing is ever deleted, so the files on disk
at the end hold every line the server logged (logrotate's copytruncate window excepted).
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.peers.webservers import NOBODY, WebServer, make_dirs, unprivileged


@dataclass(frozen=True)
class Mode:
    """A rotation mode: its logrotate directives and what the run must do around them."""

    name: str
    directives: str
    reopen: bool = True  # postrotate SIGUSR1
    force: bool = True  # logrotate -f; maxsize is only meaningful without it
    compress: bool = False
    # dateext names the copy by the second: two rotations in one second collide (logrotate skips)
    one_per_second: bool = False


MODES = {
    m.name: m
    for m in [
        Mode("create", "create 0644"),
        Mode("copytruncate", "copytruncate", reopen=False),
        Mode("delaycompress", "create 0644\n    compress\n    delaycompress", compress=True),
        Mode(
            "dateext",
            "create 0644\n    dateext\n    dateformat -%Y%m%d-%H%M%S",
            one_per_second=True,
        ),
        Mode("olddir", "create 0644\n    olddir {old}"),
        # rotated only when the file is past 40 KiB, whenever logrotate runs (hourly cron, say)
        Mode("maxsize", "create 0644\n    daily\n    maxsize 40k", force=False),
    ]
}


class Logrotate:
    """One server's logrotate: its own state file and config, run as the server's user."""

    def __init__(self, server: WebServer, mode: Mode) -> None:
        self.server = server
        self.mode = mode
        self.old = server.root / "old"
        make_dirs(self.old)
        self.conf = server.root / "logrotate.conf"
        self.state = server.root / "logrotate.state"
        self.log = server.root / "logrotate.log"
        post = ""
        if mode.reopen:
            post = f"\n    postrotate\n        {server.reopen_command()}\n    endscript"
        body = mode.directives.format(old=self.old)
        self.conf.write_text(
            f"{server.access_log} {{\n    rotate 1000\n    missingok\n    {body}{post}\n}}\n"
        )
        # logrotate refuses a config its user could not have written, or others could
        self.conf.chmod(0o644)
        if os.geteuid() == 0:
            os.chown(self.conf, NOBODY, NOBODY)
        self.runs = 0

    def run(self) -> None:
        exe = shutil.which("logrotate") or "/usr/sbin/logrotate"
        command = [exe, "-v", "-s", str(self.state), str(self.conf)]
        if self.mode.force:
            command.insert(1, "-f")
        with open(self.log, "ab") as out:
            done = subprocess.run(
                command, stdout=out, stderr=out, timeout=60, cwd=self.server.root, **unprivileged()
            )
        self.runs += 1
        if done.returncode != 0:
            raise AssertionError(
                f"logrotate exited {done.returncode}: {self.log.read_text()[-3000:]}"
            )

    def rotated_files(self) -> list[Path]:
        dirs = [self.server.logs, self.old]
        return sorted(
            p
            for d in dirs
            for p in d.iterdir()
            if p.name.startswith("access.log") and p != self.server.access_log
        )


def lines_on_disk(server: WebServer, rotate: Logrotate) -> list[bytes]:
    """Every line of every access log the server and logrotate left, compressed ones included."""
    out: list[bytes] = []
    for path in [*rotate.rotated_files(), server.access_log]:
        if not path.exists():
            continue
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        out += data.splitlines(keepends=True)
    return out


def plain_rotated(rotate: Logrotate) -> Path:
    """The rotated file a delaycompress rotation will compress next (``access.log.1``)."""
    return rotate.server.logs / "access.log.1"


def require_logrotate() -> None:
    if shutil.which("logrotate") is None and not Path("/usr/sbin/logrotate").exists():
        raise AssertionError("logrotate not installed: scripts/bootstrap-system.sh installs it")
