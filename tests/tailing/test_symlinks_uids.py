"""The symlink rule with real users: an attacker plants links, the agent runs unprivileged in adm.

Three uids, as on a web server: root owns a root:adm 0640 log; ``mallory`` can write a watched
directory and plants one link to that log and one to a file of her own; the agent runs as its
own user in group ``adm`` (so the kernel would let it read both). Only mallory's own file may
ship. Needs root (useradd, setpriv); the users are removed afterwards.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.streams import stored_lines

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Users:
    mallory: str
    agent: str


def _need(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("creating users and switching to them needs root")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


@pytest.fixture
def users() -> Iterator[Users]:
    _need("useradd", "userdel", "setpriv", "unshare")
    tag = secrets.token_hex(3)
    made = Users(mallory=f"katm{tag}", agent=f"kata{tag}")
    created: list[str] = []
    try:
        for name, extra in ((made.mallory, []), (made.agent, ["--groups", "adm"])):
            subprocess.run(
                [
                    "useradd",
                    "--no-create-home",
                    "--user-group",
                    "--shell",
                    "/bin/false",
                    *extra,
                    name,
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            created.append(name)
        yield made
    finally:
        for name in created:
            subprocess.run(["userdel", name], capture_output=True, timeout=30)


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="ka-symlinks-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def as_user(name: str, command: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={name}", f"--regid={name}", "--init-groups", "--", *command]


def unprivileged_python(staging: Path) -> str:
    """A shell prefix that makes this interpreter reachable by other users, if it is not.

    pyenv lives under /root (0700 on this kind of machine). In a private mount namespace a
    tmpfs over the closed ancestor with the interpreter's prefix bound back in opens the path
    to the test's agent user and to nothing else; the host's mounts are untouched.
    """
    prefix = Path(sys.base_prefix)
    closed = [p for p in (prefix, *prefix.parents) if not os.stat(p).st_mode & stat.S_IXOTH]
    if not closed:
        return ""
    top = closed[-1]
    staging.mkdir()
    return (
        f"mount --bind {prefix} {staging} && mount -t tmpfs -o mode=0755 tmpfs {top} && "
        f"mkdir -p {prefix} && mount --bind {staging} {prefix} && "
    )


def test_only_the_link_its_owner_could_read_ships(users: Users, base: Path) -> None:
    """evil.log -> root:adm 0640 is skipped, counted and logged; mine.log and root's links ship."""
    mallory = pwd.getpwnam(users.mallory)
    agent = pwd.getpwnam(users.agent)
    secret = base / "secret.log"
    secret.write_bytes(b"root:password-hash\n")
    os.chown(secret, 0, 4)  # root:adm 0640, like /var/log/auth.log
    secret.chmod(0o640)
    home = base / "mallory"
    home.mkdir()
    (home / "own.log").write_bytes(b"mine\n")
    watched = base / "logs"
    watched.mkdir()
    for path in (home, home / "own.log", watched):
        os.chown(path, mallory.pw_uid, mallory.pw_gid)
    for link, target in (("evil.log", secret), ("mine.log", home / "own.log")):
        subprocess.run(
            as_user(users.mallory, ["ln", "-s", str(target), str(watched / link)]),
            check=True,
            timeout=30,
        )
    assert os.lstat(watched / "evil.log").st_uid == mallory.pw_uid
    # Kubernetes-style: /var/log/containers/*.log are root's links into the pods' directories
    pods = base / "pods"
    pods.mkdir()
    (pods / "0.log").write_bytes(b"pod line\n")
    os.chown(pods / "0.log", 0, 4)
    (pods / "0.log").chmod(0o640)
    containers = base / "containers"
    containers.mkdir()
    (containers / "app.log").symlink_to(pods / "0.log")
    state = base / "state"
    state.mkdir()
    os.chown(state, agent.pw_uid, agent.pw_gid)
    config = base / "agent.json"
    flow = {"initialPosition": "START_OF_FILE", "maxBufferAgeMillis": 1000}
    config.write_text(
        json.dumps(
            {
                "checkpointFile": str(state / "cp.db"),
                "localStore.directory": str(state / "streams"),
                "flows": [
                    {"filePattern": str(watched / "*.log"), "localStream": "web", **flow},
                    {"filePattern": str(containers / "*.log"), "localStream": "k8s", **flow},
                ],
            }
        )
    )
    command = " ".join(
        as_user(users.agent, [sys.executable, "-m", "agent", "run", "--once", "-c", str(config)])
    )
    proc = subprocess.run(
        ["unshare", "--mount", "sh", "-c", unprivileged_python(base / "python") + command],
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "HOME": str(state)},
    )
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert stored_lines(state / "streams", "web") == [b"mine\n"]
    assert stored_lines(state / "streams", "k8s") == [b"pod line\n"]
    assert f"{watched / 'evil.log'} skipped: the link {watched / 'evil.log'} belongs to user" in err
    assert "files_skipped=1" in err
