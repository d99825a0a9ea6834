"""Real web servers for the tests: nginx and Apache httpd from Debian, each its own foreground process.

Each server gets a private directory (config, pid, error log, ``logs/access.log`` in the combined
format) and listens on 127.0.0.1 and [::1] on one free port. It serves ``/index.html`` (a file,
200), ``/moved`` (301 to it), ``/ok`` (nginx: 200 for any method) and 404 for anything else.

Run as root (CI), the servers, and logrotate beside them, run as ``nobody`` (:func:`unprivileged`):
a web server of the tests never runs with root's rights. Run as anyone else they run as that user.
A server that cannot start raises PeerError, which fails the tests that need it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.peers.servers import PeerError

INDEX = b"<html><body>kinesis-agent test page</body></html>\n"
NOBODY = 65534
APACHE_MODULES = Path("/usr/lib/apache2/modules")


def unprivileged() -> dict[str, Any]:
    """Popen arguments that drop root to nobody (nothing when we are not root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": NOBODY, "group": NOBODY, "extra_groups": [], "umask": 0o022}


def private_dir(prefix: str) -> Path:
    """A fresh directory the unprivileged user owns, outside pytest's 0700 root-only tmp tree."""
    if os.geteuid() != 0:
        path = Path(tempfile.mkdtemp(prefix=prefix))
    else:  # in /tmp, whatever TMPDIR says: nobody must be able to reach it
        path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        os.chown(path, NOBODY, NOBODY)
    path.chmod(0o755)
    return path


def make_dirs(*paths: Path) -> None:
    for p in paths:
        p.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(p, NOBODY, NOBODY)


def free_dual_port() -> int:
    """A port free on both 127.0.0.1 and ::1 (the server binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET6) as six:
            six.bind(("::1", 0))
            port = int(six.getsockname()[1])
            with socket.socket() as four:
                try:
                    four.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise PeerError("no port free on both 127.0.0.1 and ::1")


@dataclass
class WebServer:
    """A running server: its master process, port, and where it logs."""

    kind: str  # "nginx" or "apache"
    root: Path
    process: subprocess.Popen[bytes]
    port: int
    pid_file: Path
    error_log: Path
    stderr: Any = field(repr=False, default=None)

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def access_log(self) -> Path:
        return self.logs / "access.log"

    def master_pid(self) -> int:
        return self.process.pid

    def reopen_command(self) -> str:
        """The logrotate postrotate line: SIGUSR1 to the master (nginx reopens its logs; Apache
        restarts gracefully, which reopens them)."""
        return f"kill -USR1 {self.master_pid()}"

    def stop(self) -> None:
        if self.process.poll() is None:
            # nginx: SIGQUIT is the graceful stop; Apache: SIGWINCH. SIGTERM is fast for both.
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.stderr is not None:
            self.stderr.close()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def tail(self) -> str:
        out = []
        for p in (self.error_log, self.root / "stderr.log"):
            with contextlib.suppress(OSError):
                out.append(f"--- {p}:\n{p.read_text(errors='replace')[-2000:]}")
        return "\n".join(out)


def _nginx_conf(root: Path, port: int) -> str:
    return f"""
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
daemon off;
events {{ worker_connections 256; }}
http {{
    access_log {root}/logs/access.log combined;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        listen [::1]:{port};
        server_name localhost;
        root {root}/html;
        location = /ok {{ return 200 "ok\\n"; }}
        location = /moved {{ return 301 /index.html; }}
    }}
}}
"""


def _apache_conf(root: Path, port: int) -> str:
    mods = ["mpm_event", "authz_core", "alias"]
    loads = "\n".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in mods)
    return f"""
{loads}
ServerName localhost
Listen 127.0.0.1:{port}
Listen [::1]:{port}
PidFile {root}/httpd.pid
DefaultRuntimeDir {root}/run
Mutex file:{root}/run default
ErrorLog {root}/error.log
LogLevel info
StartServers 1
ServerLimit 4
ThreadsPerChild 16
MaxRequestWorkers 64
MinSpareThreads 8
MaxSpareThreads 32
DocumentRoot {root}/html
<Directory {root}/html>
    Require all granted
</Directory>
Redirect 301 /moved /index.html
LogFormat "%h %l %u %t \\"%r\\" %>s %b \\"%{{Referer}}i\\" \\"%{{User-Agent}}i\\"" combined
CustomLog {root}/logs/access.log combined
"""


def _site(kind: str, program: str, package: str, scratch: str) -> tuple[str, Path, int]:
    """The server's executable, a private root with logs/, html/index.html and ``scratch``/,
    and a free port on both loopbacks."""
    exe = shutil.which(program) or f"/usr/sbin/{program}"
    if not os.path.exists(exe):
        raise PeerError(f"{program} not installed: scripts/bootstrap-system.sh installs {package}")
    root = private_dir(f"kinesis-agent-{kind}-")
    make_dirs(root / "logs", root / "html", root / scratch)
    (root / "html" / "index.html").write_bytes(INDEX)
    return exe, root, free_dual_port()


def start_nginx() -> WebServer:
    exe, root, port = _site("nginx", "nginx", "nginx-light", "tmp")
    conf = root / "nginx.conf"
    conf.write_text(_nginx_conf(root, port))
    # -e: the error log before the config is read (the default /var/log/nginx is root's)
    command = [exe, "-p", str(root), "-e", str(root / "error.log"), "-c", str(conf)]
    return _launch("nginx", root, command, port, root / "nginx.pid")


def start_apache() -> WebServer:
    exe, root, port = _site("apache", "apache2", "apache2-bin", "run")
    conf = root / "httpd.conf"
    conf.write_text(_apache_conf(root, port))
    command = [exe, "-d", str(root), "-f", str(conf), "-D", "FOREGROUND"]
    return _launch("apache", root, command, port, root / "httpd.pid")


def _launch(kind: str, root: Path, command: list[str], port: int, pid_file: Path) -> WebServer:
    stderr = (root / "stderr.log").open("ab")
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C"}
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=stderr,
        stderr=stderr,
        env=env,
        cwd=root,
        start_new_session=True,
        **unprivileged(),
    )
    server = WebServer(kind, root, process, port, pid_file, root / "error.log", stderr)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise PeerError(f"{kind} exited with {process.returncode}:\n{server.tail()}")
        if pid_file.exists() and _answers(port):
            return server
        time.sleep(0.05)
    server.stop()
    raise PeerError(f"{kind} did not answer on port {port} within 15 s:\n{server.tail()}")


def _answers(port: int) -> bool:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family) as s:
                s.settimeout(1)
                s.connect((host, port))
        except OSError:
            return False
    return True


START = {"nginx": start_nginx, "apache": start_apache}
