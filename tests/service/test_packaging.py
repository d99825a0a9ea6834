"""The .deb, the .rpm and the unit, built once per session and tried in a throwaway root."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.config import parse_config

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "kinesis-agent.service"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# exposure as rated by `systemd-analyze security`: 0 (locked down) … 10 (unprotected)
EXPOSURE_BAR = 2.0

pytestmark = pytest.mark.slow


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], check=True, capture_output=True, text=True, timeout=120, env=env
    )


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/bootstrap-system.sh installs it)")


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("trying a package in a throwaway root needs root (mount, chroot)")


@dataclass(frozen=True)
class Built:
    build_dir: Path
    deb: Path
    rpm: Path | None
    py_minor: str  # the packages' interpreter: /usr/bin/python<py_minor>


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Both packages, built like `make deb rpm` does but into a temporary directory."""
    need("dpkg-deb")
    tmp = tmp_path_factory.mktemp("packages")
    env = {**os.environ, "BUILD_DIR": str(tmp / "build"), "DIST_DIR": str(tmp / "dist")}
    env["BUILD_PIP"] = str(Path(sys.executable).with_name("pip"))
    run("bash", REPO / "packaging" / "stage.sh", env=env)
    deb = Path(run("bash", REPO / "packaging" / "deb" / "build.sh", env=env).stdout.strip())
    rpm = None
    if shutil.which("rpmbuild"):
        rpm = Path(run("bash", REPO / "packaging" / "rpm" / "build.sh", env=env).stdout.strip())
    stage_env = dict(
        line.split("=", 1) for line in (tmp / "build" / "stage.env").read_text().splitlines()
    )
    py_minor = stage_env["TARGET_PYTHON"].removeprefix("/usr/bin/python")
    return Built(tmp / "build", deb, rpm, py_minor)


@pytest.fixture(scope="session")
def py_minor(built: Built) -> str:
    return built.py_minor


@pytest.fixture(scope="session")
def rpm(built: Built) -> Path:
    if built.rpm is None:
        need("rpmbuild")
    assert built.rpm is not None
    return built.rpm


def section_outputs(transcript: str) -> dict[str, tuple[int, str]]:
    """'### name' … '### rc=N' blocks of a try-in-root run → {name: (rc, output)}."""
    out: dict[str, tuple[int, str]] = {}
    for m in re.finditer(r"^### (\S+)\n(.*?)^### rc=(\d+)$", transcript, re.M | re.S):
        out[m[1]] = (int(m[3]), m[2])
    return out


def try_in_root(package: Path, steps: dict[str, str]) -> dict[str, tuple[int, str]]:
    """Install the package into a throwaway root, run each named step there, collect its output."""
    need_root()
    need("unshare", "chroot")
    script = "".join(
        f"echo '### {name}'\n( {cmd}\n) 2>&1\necho \"### rc=$?\"\n" for name, cmd in steps.items()
    )
    proc = run("bash", REPO / "packaging" / "try-in-root.sh", package, script)
    return section_outputs(proc.stdout)


class TestDeb:
    """dist/kinesis-agent_<version>_<arch>.deb."""

    def test_name_and_metadata(self, built: Built) -> None:
        """Named and versioned from pyproject.toml, for this architecture, needing its Python."""
        arch = run("dpkg", "--print-architecture").stdout.strip()
        assert built.deb.name == f"kinesis-agent_{VERSION}_{arch}.deb"
        fields = run("dpkg-deb", "-f", built.deb, "Package", "Version", "Architecture").stdout
        assert fields.split() == [
            "Package:",
            "kinesis-agent",
            "Version:",
            VERSION,
            "Architecture:",
            arch,
        ]
        depends = run("dpkg-deb", "-f", built.deb, "Depends").stdout
        assert f"python{built.py_minor}" in depends

    def test_file_list(self, built: Built) -> None:
        """The venv under /opt, the command, the config, agent.d and the unit."""
        listing = run("dpkg-deb", "-c", built.deb).stdout
        entries = {line.split(None, 5)[5] for line in listing.splitlines()}
        for path in [
            "./usr/bin/kinesis-agent -> /opt/kinesis-agent/bin/kinesis-agent",
            f"./opt/kinesis-agent/bin/python{built.py_minor} -> /usr/bin/python{built.py_minor}",
            "./opt/kinesis-agent/bin/kinesis-agent",
            f"./opt/kinesis-agent/lib/python{built.py_minor}/site-packages/agent/cli/main.py",
            "./etc/agent.json",
            "./etc/agent.d/",
            "./lib/systemd/system/kinesis-agent.service",
        ]:
            assert path in entries
        assert re.search(r"agent/cli/__pycache__/main\.cpython-\d+\.pyc", listing), (
            "not byte-compiled"
        )
        assert all(" root/root " in line for line in listing.splitlines())
        # may hold awsSecretAccessKey: never world-readable, not even before postinst runs
        [config] = [line for line in listing.splitlines() if line.endswith(" ./etc/agent.json")]
        assert config.startswith("-rw-r----- ")

    def test_config_is_a_conffile(self, built: Built) -> None:
        """/etc/agent.json is a conffile: upgrades never overwrite the operator's edits."""
        assert run("dpkg-deb", "-I", built.deb, "conffiles").stdout == "/etc/agent.json\n"

    def test_maintainer_scripts(self, built: Built) -> None:
        """postinst, prerm and postrm are executable and parse."""
        for script in ("postinst", "prerm", "postrm"):
            text = run("dpkg-deb", "-I", built.deb, script).stdout
            subprocess.run(["sh", "-n"], input=text, text=True, check=True)
        info = run("dpkg-deb", "-I", built.deb).stdout
        assert re.search(r"\*\s+postinst", info)  # '*' marks executable

    def test_no_build_paths_leak(self, built: Built, tmp_path: Path) -> None:
        """Nothing in the package points back into the build tree."""
        run("dpkg-deb", "-x", built.deb, tmp_path)
        leaks = subprocess.run(
            ["grep", "-rlF", str(built.build_dir), str(tmp_path)], capture_output=True, text=True
        )
        assert leaks.stdout == ""


class TestRpm:
    """dist/kinesis-agent-<version>-1.<arch>.rpm."""

    def query(self, rpm: Path, *args: str) -> str:
        return run("rpm", "-qp", *args, rpm).stdout

    def test_name_and_metadata(self, rpm: Path, py_minor: str) -> None:
        """Named and versioned from pyproject.toml; requires its Python by path."""
        nvra = self.query(rpm, "--queryformat", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}")
        name, version, release, arch = nvra.split()
        assert (name, version, release) == ("kinesis-agent", VERSION, "1")
        assert rpm.name == f"kinesis-agent-{VERSION}-1.{arch}.rpm"
        assert f"/usr/bin/python{py_minor}" in self.query(rpm, "--requires").splitlines()

    def test_file_list(self, rpm: Path, py_minor: str) -> None:
        """The venv under /opt, the command, the config, agent.d and the unit in /usr/lib."""
        files = set(self.query(rpm, "-l").splitlines())
        for path in [
            "/usr/bin/kinesis-agent",
            "/opt/kinesis-agent/bin/kinesis-agent",
            f"/opt/kinesis-agent/lib/python{py_minor}/site-packages/agent/cli/main.py",
            "/etc/agent.json",
            "/etc/agent.d",
            "/usr/lib/systemd/system/kinesis-agent.service",
        ]:
            assert path in files

    def test_config_is_noreplace(self, rpm: Path) -> None:
        """/etc/agent.json is %config(noreplace): an edited config survives upgrades."""
        assert self.query(rpm, "--configfiles") == "/etc/agent.json\n"
        flags = self.query(rpm, "--queryformat", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]")
        assert "/etc/agent.json cn\n" in flags  # c: config, n: noreplace
        modes = self.query(
            rpm,
            "--queryformat",
            "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]",
        )
        assert "-rw-r----- root:kinesis-agent /etc/agent.json\n" in modes  # it may hold secrets

    def test_scriptlets(self, rpm: Path) -> None:
        """%pre creates the account; the others talk to systemd only where it runs."""
        scripts = self.query(rpm, "--scripts")
        assert "useradd --system" in scripts
        assert scripts.count("[ -d /run/systemd/system ]") == 3

    def test_same_application_as_the_deb(self, built: Built, rpm: Path) -> None:
        """Both formats ship the same /opt/kinesis-agent tree."""
        deb_files = {
            line.split(None, 5)[5].split(" -> ")[0].removeprefix(".").rstrip("/")
            for line in run("dpkg-deb", "-c", built.deb).stdout.splitlines()
        }
        rpm_files = set(self.query(rpm, "-l").splitlines())
        assert {f for f in deb_files if f.startswith("/opt/")} == {
            f for f in rpm_files if f.startswith("/opt/")
        }


class TestUnit:
    """systemd/kinesis-agent.service."""

    def unit(self) -> dict[str, list[str]]:
        keys: dict[str, list[str]] = {}
        for line in UNIT.read_text().splitlines():
            if "=" in line and not line.startswith(("#", "[")):
                key, _, value = line.partition("=")
                keys.setdefault(key, []).append(value)
        return keys

    def test_lifecycle_settings(self) -> None:
        """notify + watchdog, reload by SIGHUP, no restart loop on a bad config (exit 78)."""
        u = self.unit()
        assert u["Type"] == ["notify"]
        assert u["ExecStart"] == ["/usr/bin/kinesis-agent run -c /etc/agent.json"]
        assert u["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
        assert u["WatchdogSec"] == ["30"]
        assert u["Restart"] == ["on-failure"]
        assert u["RestartPreventExitStatus"] == ["78"]
        assert (u["User"], u["Group"], u["SupplementaryGroups"]) == (
            ["kinesis-agent"],
            ["kinesis-agent"],
            ["adm"],
        )
        assert u["StateDirectory"] == ["kinesis-agent"]

    def test_stop_timeout_outlasts_the_drain(self) -> None:
        """systemd waits longer than the agent's own shutdownTimeoutMillis before SIGKILL."""
        cfg = parse_config({"flows": [{"filePattern": "/x", "localStream": "x"}]})
        drain = cfg.shutdown_timeout_millis / 1000
        assert drain < int(self.unit()["TimeoutStopSec"][0]) <= drain + 10

    def test_security_exposure(self) -> None:
        """`systemd-analyze security` rates the sandbox at or below the bar."""
        need("systemd-analyze")
        out = run("systemd-analyze", "security", "--offline=true", "--no-pager", UNIT).stdout
        m = re.search(r"Overall exposure level for kinesis-agent\.service: (\d+\.\d+)", out)
        assert m, out
        assert float(m[1]) <= EXPOSURE_BAR, out


@pytest.fixture(scope="session")
def steps(built: Built) -> dict[str, tuple[int, str]]:
    """The .deb installed into a throwaway root, then used, upgraded, removed and purged."""
    need("systemd-analyze")
    return try_in_root(
        built.deb,
        {
            "version": "kinesis-agent --version",
            "check": "runuser -u kinesis-agent -- kinesis-agent check -c /etc/agent.json",
            "account": "id -nG kinesis-agent; stat -c '%U:%G %a' /var/lib/kinesis-agent",
            "config_mode": "stat -c '%U:%G %a' /etc/agent.json",
            "journald": "/opt/kinesis-agent/bin/python -c 'import systemd.journal'",
            "verify": "systemd-analyze verify kinesis-agent.service",
            # the same unit with a binary that does not exist: verify must notice
            "verify_control": "sed 's|/usr/bin/kinesis-agent|/usr/bin/no-such-agent|'"
            " /lib/systemd/system/kinesis-agent.service >/etc/systemd/system/control.service;"
            " systemd-analyze verify control.service",
            "security": "systemd-analyze security --offline=true --threshold=20"
            " kinesis-agent.service",
            "reinstall_keeps_config": "echo '// edited' >>/etc/agent.json;"
            " dpkg -i /tmp/*.deb >/dev/null; tail -n1 /etc/agent.json",
            "remove": "dpkg -r kinesis-agent >/dev/null; ls /etc/agent.json; id -u kinesis-agent;"
            " test ! -e /opt/kinesis-agent && test ! -e /usr/bin/kinesis-agent",
            "purge": "dpkg -P kinesis-agent >/dev/null; ls /etc/agent.json /var/lib/kinesis-agent;"
            " getent passwd kinesis-agent; getent group kinesis-agent; true",
        },
    )


class TestInstalledDeb:
    """The .deb installed with dpkg into a throwaway root (an overlay of this machine)."""

    def test_version(self, steps: dict[str, tuple[int, str]]) -> None:
        """`kinesis-agent --version` runs from the /opt venv with the system Python."""
        assert steps["version"] == (0, f"kinesis-agent {VERSION}\n")

    def test_check_runs_as_the_service_user(self, steps: dict[str, tuple[int, str]]) -> None:
        """The installed config is valid and the service account can read it and run the code."""
        rc, out = steps["check"]
        assert rc == 0, out
        assert "configuration OK: /etc/agent.json" in out

    def test_account_and_state_directory(self, steps: dict[str, tuple[int, str]]) -> None:
        """postinst made the system account (in adm, to read /var/log) and its state directory."""
        assert steps["account"] == (0, "kinesis-agent adm\nkinesis-agent:kinesis-agent 750\n")

    def test_config_is_readable_by_the_service_only(
        self, steps: dict[str, tuple[int, str]]
    ) -> None:
        """/etc/agent.json may hold awsSecretAccessKey: 0640 root:kinesis-agent."""
        assert steps["config_mode"] == (0, "root:kinesis-agent 640\n")

    def test_systemd_python_is_bundled(self, steps: dict[str, tuple[int, str]]) -> None:
        """The venv has systemd-python, so notify and journald use libsystemd."""
        assert steps["journald"] == (0, "")

    def test_unit_verifies_where_installed(self, steps: dict[str, tuple[int, str]]) -> None:
        """`systemd-analyze verify` is clean where /usr/bin/kinesis-agent really exists."""
        assert steps["verify"] == (0, "")
        rc, out = steps["verify_control"]
        assert rc != 0, "verify must see a missing binary, or the clean run proves nothing"
        assert "/usr/bin/no-such-agent is not executable" in out

    def test_installed_unit_meets_the_security_bar(self, steps: dict[str, tuple[int, str]]) -> None:
        """The installed unit passes `--threshold=20` (exposure 2.0)."""
        rc, out = steps["security"]
        assert rc == 0, out

    def test_reinstall_keeps_an_edited_config(self, steps: dict[str, tuple[int, str]]) -> None:
        """An operator's edit to /etc/agent.json survives installing the package again."""
        assert steps["reinstall_keeps_config"] == (0, "// edited\n")

    def test_remove_keeps_config_and_account(self, steps: dict[str, tuple[int, str]]) -> None:
        """dpkg -r removes the program but keeps the config and the account."""
        rc, out = steps["remove"]
        assert rc == 0, out
        assert out.startswith("/etc/agent.json\n")

    def test_purge_removes_state_config_and_account(
        self, steps: dict[str, tuple[int, str]]
    ) -> None:
        """dpkg -P removes the config, the state directory, the user and the group."""
        _rc, out = steps["purge"]
        assert "No such file or directory" in out
        assert "/etc/agent.json\n" not in out
        assert "kinesis-agent:" not in out


FAKE_SYSTEMCTL = (
    "mkdir -p /run/systemd/system /usr/local/sbin;"
    " printf '#!/bin/sh\\necho systemctl \"$*\" >>/tmp/systemctl.log\\n' >/usr/local/sbin/systemctl;"
    " chmod +x /usr/local/sbin/systemctl"
)


class TestMaintainerScriptsUnderSystemd:
    """Where systemd runs, the scripts reload it, enable and start, restart on upgrade, stop on
    removal (systemctl is a recording fake here)."""

    def test_deb(self, built: Built) -> None:
        """postinst enables and starts once, try-restarts on upgrade; prerm disables and stops."""
        steps = try_in_root(
            built.deb,
            {
                # try-in-root installed it without systemd; start over with the fake
                "cycle": f"dpkg -P kinesis-agent >/dev/null 2>&1; {FAKE_SYSTEMCTL};"
                " for step in install upgrade; do dpkg -i /tmp/*.deb >/dev/null;"
                " echo $step >>/tmp/systemctl.log; done;"
                " dpkg -r kinesis-agent >/dev/null 2>&1; cat /tmp/systemctl.log",
            },
        )
        assert steps["cycle"] == (
            0,
            "systemctl daemon-reload\n"
            "systemctl enable kinesis-agent.service\n"
            "systemctl start kinesis-agent.service\n"
            "install\n"
            "systemctl daemon-reload\n"  # old postrm
            "systemctl daemon-reload\n"  # new postinst
            "systemctl try-restart kinesis-agent.service\n"
            "upgrade\n"
            "systemctl disable --now kinesis-agent.service\n"
            "systemctl daemon-reload\n",
        )


class TestInstalledRpm:
    """The .rpm installed with rpm into a throwaway root (scriptlets run; deps not resolvable)."""

    def test_install_run_and_erase(self, rpm: Path) -> None:
        """%pre/%post set the machine up, the command runs, erase leaves state for the operator."""
        steps = try_in_root(
            rpm,
            {
                "version": "kinesis-agent --version",
                "check": "runuser -u kinesis-agent -- kinesis-agent check -c /etc/agent.json"
                " >/dev/null",
                "account": "id -nG kinesis-agent; stat -c '%U:%G %a' /var/lib/kinesis-agent",
                "config_mode": "stat -c '%U:%G %a' /etc/agent.json",
                "erase": "rpm -e kinesis-agent 2>/dev/null; test ! -e /usr/bin/kinesis-agent;"
                " test -d /var/lib/kinesis-agent",
            },
        )
        assert steps["version"] == (0, f"kinesis-agent {VERSION}\n")
        assert steps["check"] == (0, "")
        assert steps["account"] == (0, "kinesis-agent adm\nkinesis-agent:kinesis-agent 750\n")
        assert steps["config_mode"] == (0, "root:kinesis-agent 640\n")
        assert steps["erase"][0] == 0, steps["erase"][1]
