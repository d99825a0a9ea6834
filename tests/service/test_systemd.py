"""systemd integration: the notify protocol against a socket the test owns, and log routing."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.service.systemd import Notifier, configure_logging
from tests.support.agent import kill_agent, start_agent
from tests.support.config import from_start, local_config

try:
    from systemd import daemon as _daemon  # noqa: F401

    HAVE_LIBSYSTEMD = True
except ImportError:
    HAVE_LIBSYSTEMD = False


class NotifySocket:
    """The systemd side of sd_notify: a datagram socket that collects what the agent sends."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value
        sock.settimeout(5)

    def receive(self) -> str:
        return self.sock.recv(4096).decode()

    def pending(self) -> list[str]:
        """Every datagram already queued, without waiting."""
        out: list[str] = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return out
        finally:
            self.sock.settimeout(5)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    yield NotifySocket(sock, str(path))
    sock.close()


@pytest.fixture
def abstract_notify_socket() -> Iterator[NotifySocket]:
    name = f"kinesis-agent-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    yield NotifySocket(sock, "@" + name)
    sock.close()


class TestNotifierDatagram:
    """The built-in sender speaks the notify protocol without libsystemd."""

    def test_lifecycle_messages(self, notify_socket: NotifySocket) -> None:
        """READY, STATUS, WATCHDOG, RELOADING and STOPPING arrive as systemd expects them."""
        n = Notifier({"NOTIFY_SOCKET": notify_socket.env_value})
        assert n.enabled
        n.ready()
        n.status("2 flows, 150 records/s, lag 0 B")
        n.watchdog()
        n.reloading("reloading config")
        n.stopping()
        n.close()
        messages = [notify_socket.receive() for _ in range(5)]
        reloading = messages[3].split("\n")
        assert reloading[0] == "RELOADING=1"
        assert reloading[1].startswith("MONOTONIC_USEC=") and reloading[1][15:].isdigit()
        assert reloading[2] == "STATUS=reloading config"
        assert messages[:3] + messages[4:] == [
            "READY=1",
            "STATUS=2 flows, 150 records/s, lag 0 B",
            "WATCHDOG=1",
            "STOPPING=1",
        ]

    def test_ready_with_status_is_one_datagram(self, notify_socket: NotifySocket) -> None:
        """READY=1 and its STATUS travel together so systemd never shows a stale status."""
        with Notifier({"NOTIFY_SOCKET": notify_socket.env_value}) as n:
            n.ready("running 3 flows")
        assert notify_socket.receive() == "READY=1\nSTATUS=running 3 flows"

    def test_status_is_kept_on_one_line(self, notify_socket: NotifySocket) -> None:
        """A newline in the status text would end the STATUS assignment early; it becomes a space."""
        with Notifier({"NOTIFY_SOCKET": notify_socket.env_value}) as n:
            n.status("flow a: ok\nflow b:  failing")
        assert notify_socket.receive() == "STATUS=flow a: ok flow b: failing"

    def test_abstract_namespace_socket(self, abstract_notify_socket: NotifySocket) -> None:
        """NOTIFY_SOCKET=@name addresses the abstract namespace, as systemd uses in containers."""
        with Notifier({"NOTIFY_SOCKET": abstract_notify_socket.env_value}) as n:
            n.ready()
            n.watchdog()
        assert abstract_notify_socket.receive() == "READY=1"
        assert abstract_notify_socket.receive() == "WATCHDOG=1"

    def test_no_socket_is_a_no_op(self) -> None:
        """Outside systemd every call does nothing and raises nothing."""
        n = Notifier({})
        assert not n.enabled
        n.ready("x")
        n.status("x")
        n.watchdog()
        n.reloading()
        n.stopping()
        n.close()

    def test_unsupported_address_is_a_no_op(self, caplog: pytest.LogCaptureFixture) -> None:
        """An address family we cannot speak (vsock) disables notify with a warning."""
        n = Notifier({"NOTIFY_SOCKET": "vsock:2:1234"})
        assert not n.enabled
        n.ready()
        assert "not a unix socket" in caplog.text

    def test_vanished_socket_warns_once(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A notify socket that went away is logged once and never breaks the daemon."""
        n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
        with n, caplog.at_level(logging.WARNING):
            for _ in range(3):
                n.watchdog()
        assert caplog.text.count("cannot notify systemd") == 1

    def test_libsystemd_can_be_declined(
        self, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """prefer_libsystemd=False speaks the protocol itself, from the process environment."""
        monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.env_value)
        monkeypatch.setattr("agent.service.systemd._libsystemd_sender", pytest.fail)
        with Notifier(prefer_libsystemd=False) as n:
            n.watchdog()
        assert notify_socket.receive() == "WATCHDOG=1"

    def test_close_twice(self, notify_socket: NotifySocket) -> None:
        """close() is idempotent and the notifier reopens its socket if used again."""
        n = Notifier({"NOTIFY_SOCKET": notify_socket.env_value})
        n.close()
        n.close()
        n.ready()
        assert notify_socket.receive() == "READY=1"
        n.close()


@pytest.mark.skipif(not HAVE_LIBSYSTEMD, reason="systemd-python is not installed")
class TestNotifierLibsystemd:
    """With systemd-python installed, sd_notify(3) itself sends the same messages."""

    def test_lifecycle_messages(
        self, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """READY, STATUS, WATCHDOG and STOPPING arrive through libsystemd."""
        monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.env_value)
        n = Notifier()
        n.ready("up")
        n.watchdog()
        n.stopping()
        assert [notify_socket.receive() for _ in range(3)] == [
            "READY=1\nSTATUS=up",
            "WATCHDOG=1",
            "STOPPING=1",
        ]

    def test_abstract_namespace_socket(
        self, abstract_notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """libsystemd also understands '@name'."""
        monkeypatch.setenv("NOTIFY_SOCKET", abstract_notify_socket.env_value)
        Notifier().status("hello")
        assert abstract_notify_socket.receive() == "STATUS=hello"

    def test_vanished_socket_warns_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """libsystemd's OSError is logged once, never raised."""
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
        n = Notifier()
        with caplog.at_level(logging.WARNING):
            n.ready()
            n.watchdog()
        assert caplog.text.count("cannot notify systemd") == 1

    def test_no_socket_is_a_no_op(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without NOTIFY_SOCKET, libsystemd is not even asked."""
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
        n = Notifier()
        assert not n.enabled
        n.ready()


class TestWatchdogInterval:
    """The ping period is half of WATCHDOG_USEC, as sd_watchdog_enabled(3) recommends."""

    def test_half_of_watchdog_usec(self) -> None:
        """WatchdogSec=30 means a ping every 15 s."""
        assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval() == 15.0

    def test_sub_second(self) -> None:
        """Short test watchdogs keep their precision."""
        assert Notifier({"WATCHDOG_USEC": "500000"}).watchdog_interval() == 0.25

    def test_no_watchdog(self) -> None:
        """No WATCHDOG_USEC, zero or garbage: no watchdog."""
        assert Notifier({}).watchdog_interval() is None
        assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval() is None
        assert Notifier({"WATCHDOG_USEC": "soon"}).watchdog_interval() is None

    def test_watchdog_pid_is_us(self) -> None:
        """WATCHDOG_PID naming this process keeps the watchdog."""
        env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
        assert Notifier(env).watchdog_interval() == 1.0

    def test_watchdog_pid_is_another_process(self) -> None:
        """An inherited WATCHDOG_PID for another process means the watchdog is not ours."""
        env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}
        assert Notifier(env).watchdog_interval() is None
        env["WATCHDOG_PID"] = "nope"
        assert Notifier(env).watchdog_interval() is None


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logger")
class TestConfigureLogging:
    """Logs go to the journal under systemd and to stderr elsewhere."""

    def test_stderr_outside_systemd(self) -> None:
        """A terminal gets timestamped, levelled lines."""
        out = io.StringIO()
        handler = configure_logging(logging.INFO, environ={}, stream=out)
        assert isinstance(handler, logging.StreamHandler)
        logging.getLogger("agent.pipeline.flow").warning("disk full")
        line = out.getvalue()
        assert line.endswith("WARNING agent.pipeline.flow: disk full\n")
        assert line[:4].isdigit()

    def test_names_from_a_watched_directory_reach_no_terminal_as_control_sequences(self) -> None:
        """A file named ``ESC[2J…`` (or with a CR or a bidi override) is logged as escapes."""
        out = io.StringIO()
        configure_logging(logging.INFO, environ={}, stream=out)
        name = "/srv/app/\x1b[2J\x1b]0;owned\x07\rok\u202e.log"
        logging.getLogger("agent.tailing").warning("%s skipped: not a regular file", name)
        line = out.getvalue()
        assert "\\x1b[2J\\x1b]0;owned\\x07\\rok\\u202e.log skipped" in line
        assert not any(c in line for c in "\x1b\x07\r\u202e")

    def test_level_is_applied(self) -> None:
        """Debug lines are dropped at INFO."""
        out = io.StringIO()
        configure_logging("INFO", environ={}, stream=out)
        logging.getLogger("agent.x").debug("noise")
        assert out.getvalue() == ""

    def test_calling_twice_replaces_the_handler(self) -> None:
        """Reconfiguring does not duplicate every line."""
        out = io.StringIO()
        configure_logging(logging.INFO, environ={}, stream=out)
        configure_logging(logging.INFO, environ={}, stream=out)
        logging.getLogger("agent.x").info("once")
        assert out.getvalue().count("once") == 1

    def test_journal_stream_without_systemd_python(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """stderr connected to journald gets '<N>' priority prefixes instead of timestamps."""
        monkeypatch.setattr("agent.service.systemd._journal_handler", lambda: None)
        with (tmp_path / "journal").open("w+") as out:
            st = os.fstat(out.fileno())
            env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
            configure_logging(logging.INFO, environ=env, stream=out)
            logging.getLogger("agent.cli.main").error("bad config\nat flows[0]")
            logging.getLogger("agent.cli.main").info("started")
            out.flush()
            out.seek(0)
            assert (
                out.read()
                == "<3>agent.cli.main: bad config\n<3>at flows[0]\n<6>agent.cli.main: started\n"
            )

    def test_stale_journal_stream_is_ignored(self, tmp_path: Path) -> None:
        """A JOURNAL_STREAM inherited by a process whose stderr was redirected is not trusted."""
        out = io.StringIO()
        configure_logging(logging.INFO, environ={"JOURNAL_STREAM": "1:2"}, stream=out)
        logging.getLogger("agent.x").info("hi")
        assert "INFO    agent.x: hi" in out.getvalue()

    @pytest.mark.skipif(not HAVE_LIBSYSTEMD, reason="systemd-python is not installed")
    def test_journal_handler_under_systemd(self) -> None:
        """Started by systemd with systemd-python present: structured journal entries."""
        from systemd.journal import JournalHandler

        handler = configure_logging(logging.INFO, environ={"INVOCATION_ID": "abc"})
        assert isinstance(handler, JournalHandler)


def _collect_until(
    sock: NotifySocket,
    seen: list[str],
    done: Callable[[list[str]], bool],
    seconds: float,
    agent: subprocess.Popen[bytes] | None = None,
) -> None:
    """Append received assignments (one per line) to seen until done(seen) or the time is up."""
    deadline = time.monotonic() + seconds
    while not done(seen):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {seconds} s; received {seen}")
        if agent is not None and agent.poll() is not None:
            raise AssertionError(f"the agent exited with {agent.returncode}; received {seen}")
        sock.sock.settimeout(min(remaining, 0.5))
        with contextlib.suppress(TimeoutError):
            seen.extend(sock.sock.recv(4096).decode().splitlines())


@pytest.mark.slow
def test_real_agent_speaks_sd_notify(tmp_path: Path, notify_socket: NotifySocket) -> None:
    """Under Type=notify the real agent sends READY=1 and STATUS=, WATCHDOG=1 at half of
    WATCHDOG_USEC, and STOPPING=1 on SIGTERM, then exits 0."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("".join(f"line {i}\n" for i in range(100)))
    config = local_config(
        tmp_path,
        from_start(logs / "*.log", localStream="app", maxBufferAgeMillis=1000),
        checkpoints=tmp_path / "checkpoints.db",
        shards=None,
    )
    env = {"NOTIFY_SOCKET": notify_socket.env_value, "WATCHDOG_USEC": "400000"}
    proc = start_agent(config, env=env)
    try:
        seen: list[str] = []
        _collect_until(notify_socket, seen, lambda s: "READY=1" in s, 20, proc)
        ready_at = seen.index("READY=1")
        # a ping every 0.2 s: three of them well within 2 s
        _collect_until(notify_socket, seen, lambda s: s[ready_at:].count("WATCHDOG=1") >= 3, 2)
        _collect_until(
            notify_socket, seen, lambda s: any(x.startswith("STATUS=") and x[7:] for x in s), 5
        )
        proc.send_signal(signal.SIGTERM)
        _collect_until(notify_socket, seen, lambda s: "STOPPING=1" in s, 15)
        assert proc.wait(timeout=20) == 0
    finally:
        kill_agent(proc)


def test_unit_raises_the_descriptor_limit_and_verifies(tmp_path: Path) -> None:
    """LimitNOFILE lifts the soft limit well past 1024; `systemd-analyze verify` accepts it.

    Verified offline (no systemd is booted): a copy whose ExecStart names a binary that exists
    here, since /usr/bin/kinesis-agent exists only where the package is installed.
    """
    import shutil

    unit = Path(__file__).resolve().parents[2] / "systemd" / "kinesis-agent.service"
    limits = [
        line.partition("=")[2] for line in unit.read_text().splitlines()
        if line.startswith("LimitNOFILE=")
    ]  # fmt: skip
    assert len(limits) == 1
    soft, _, hard = limits[0].partition(":")
    assert int(soft) >= 65536
    assert not hard or int(hard) >= int(soft)
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed (scripts/bootstrap-system.sh installs it)")
    copy = tmp_path / "kinesis-agent.service"
    copy.write_text(unit.read_text().replace("/usr/bin/kinesis-agent", "/bin/true"))
    out = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert (out.returncode, out.stdout + out.stderr) == (0, "")
