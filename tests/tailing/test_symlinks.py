"""The symlink rule on a fake filesystem: who owns each link on the way, and who could read the end."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.tailing.symlinks import SymlinkPolicy, refused

ROOT, ADM, AGENT, MALLORY, POD = 0, 4, 900, 1001, 1002


@dataclass
class Node:
    mode: int
    uid: int = ROOT
    gid: int = ROOT
    target: str = ""
    ino: int = 0


class FakeFS:
    """Paths → nodes; lstat/stat/readlink as the kernel would answer them."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {"/": Node(stat.S_IFDIR | 0o755)}

    def add(self, path: str, mode: int, uid: int = ROOT, gid: int = ROOT, target: str = "") -> None:
        self.nodes[path] = Node(mode, uid, gid, target, len(self.nodes) + 1)

    def dir(self, path: str, perm: int = 0o755, uid: int = ROOT, gid: int = ROOT) -> None:
        self.add(path, stat.S_IFDIR | perm, uid, gid)

    def file(self, path: str, perm: int = 0o644, uid: int = ROOT, gid: int = ROOT) -> None:
        self.add(path, stat.S_IFREG | perm, uid, gid)

    def link(self, path: str, target: str, uid: int) -> None:
        self.add(path, stat.S_IFLNK | 0o777, uid, uid, target)

    def lstat(self, path: str) -> os.stat_result:
        node = self.nodes.get(path)
        if node is None:
            raise FileNotFoundError(path)
        return os.stat_result((node.mode, node.ino, 1, 1, node.uid, node.gid, 0, 0, 0, 0))

    def readlink(self, path: str) -> str:
        return self.nodes[path].target

    def stat(self, path: str) -> os.stat_result:
        policy = SymlinkPolicy(lstat=self.lstat, readlink=self.readlink, stat_path=self.lstat)
        resolved = policy.resolve(path)
        if resolved is None:
            raise FileNotFoundError(path)
        return self.lstat(resolved[0])

    def policy(self) -> SymlinkPolicy:
        groups = {ROOT: {ROOT}, AGENT: {AGENT, ADM}, MALLORY: {MALLORY}, POD: {POD}}
        return SymlinkPolicy(
            agent_uid=AGENT,
            lstat=self.lstat,
            stat_path=self.stat,
            readlink=self.readlink,
            groups=lambda uid: frozenset(groups.get(uid, set())),
        )


@pytest.fixture
def fs() -> FakeFS:
    fs = FakeFS()
    fs.dir("/var")
    fs.dir("/var/log", 0o775, ROOT, ADM)
    fs.file("/var/log/auth.log", 0o640, ROOT, ADM)
    fs.dir("/srv", 0o777)
    fs.dir("/srv/app", 0o755, MALLORY, MALLORY)
    fs.file("/srv/app/own.log", 0o644, MALLORY, MALLORY)
    return fs


class TestSymlinkPolicy:
    """A link is followed when its owner is root or the agent, or could read the target itself."""

    def test_plain_paths_have_nothing_to_judge(self, fs: FakeFS) -> None:
        """A path with no link in it is never refused, whoever owns it."""
        assert fs.policy().why_not("/var/log/auth.log") is None

    def test_a_planted_link_to_a_file_only_adm_reads_is_refused(self, fs: FakeFS) -> None:
        """mallory's evil.log -> /var/log/auth.log: mallory cannot read auth.log, so no."""
        fs.link("/srv/app/evil.log", "/var/log/auth.log", MALLORY)
        reason = fs.policy().why_not("/srv/app/evil.log")
        assert reason is not None
        assert "/srv/app/evil.log belongs to uid 1001" in reason
        assert "cannot read /var/log/auth.log" in reason

    def test_a_link_to_the_owners_own_file_is_followed(self, fs: FakeFS) -> None:
        fs.link("/srv/app/mine.log", "own.log", MALLORY)
        assert fs.policy().why_not("/srv/app/mine.log") is None

    def test_links_of_root_and_of_the_agent_are_trusted(self, fs: FakeFS) -> None:
        fs.link("/srv/app/root.log", "/var/log/auth.log", ROOT)
        fs.link("/srv/app/agent.log", "/var/log/auth.log", AGENT)
        assert fs.policy().why_not("/srv/app/root.log") is None
        assert fs.policy().why_not("/srv/app/agent.log") is None

    def test_a_chain_is_judged_link_by_link(self, fs: FakeFS) -> None:
        """root's link in the middle does not launder mallory's link at the front."""
        fs.link("/var/log/current", "auth.log", ROOT)
        fs.link("/srv/app/hop.log", "/var/log/current", MALLORY)
        assert fs.policy().why_not("/srv/app/hop.log") is not None
        fs.link("/srv/app/via-root.log", "/srv/app/own.log", ROOT)
        fs.link("/srv/app/hop2.log", "via-root.log", MALLORY)
        assert fs.policy().why_not("/srv/app/hop2.log") is None

    def test_a_linked_directory_in_the_path_is_judged_too(self, fs: FakeFS) -> None:
        """mallory's logs -> /var/log, matched by /srv/app/logs/*.log: auth.log is refused."""
        fs.link("/srv/app/logs", "/var/log", MALLORY)
        fs.file("/var/log/public.log", 0o644)
        assert fs.policy().why_not("/srv/app/logs/auth.log") is not None
        assert fs.policy().why_not("/srv/app/logs/public.log") is None

    def test_dotdot_after_a_link_is_taken_from_the_real_directory(self, fs: FakeFS) -> None:
        fs.dir("/var/log/sub", 0o755)
        fs.link("/srv/app/up", "/var/log/sub", MALLORY)
        real, links = fs.policy().resolve("/srv/app/up/../auth.log") or ("", [])
        assert real == "/var/log/auth.log"
        assert links == [("/srv/app/up", MALLORY)]
        assert fs.policy().why_not("/srv/app/up/../auth.log") is not None

    def test_search_permission_on_the_targets_directories_counts(self, fs: FakeFS) -> None:
        """A world-readable file in a directory mallory cannot enter is not hers to read."""
        fs.dir("/var/private", 0o750, ROOT, ADM)
        fs.file("/var/private/open.log", 0o644)
        fs.link("/srv/app/p.log", "/var/private/open.log", MALLORY)
        assert fs.policy().why_not("/srv/app/p.log") is not None

    def test_kubernetes_container_links_keep_working(self, fs: FakeFS) -> None:
        """/var/log/containers/*.log -> /var/log/pods/...: root's links, or the pod user's own."""
        fs.dir("/var/log/pods", 0o755)
        fs.dir("/var/log/pods/ns_app", 0o750, POD, POD)
        fs.file("/var/log/pods/ns_app/0.log", 0o640, POD, POD)
        fs.dir("/var/log/containers", 0o755)
        fs.link("/var/log/containers/app.log", "/var/log/pods/ns_app/0.log", ROOT)
        fs.link("/var/log/containers/own.log", "../pods/ns_app/0.log", POD)
        assert fs.policy().why_not("/var/log/containers/app.log") is None
        assert fs.policy().why_not("/var/log/containers/own.log") is None

    def test_dangling_links_and_loops_are_left_to_discovery(self, fs: FakeFS) -> None:
        """They do not resolve: discovery's stat fails on them and reports them as before."""
        fs.link("/srv/app/gone.log", "/nowhere", MALLORY)
        fs.link("/srv/app/a", "b", MALLORY)
        fs.link("/srv/app/b", "a", MALLORY)
        assert fs.policy().resolve("/srv/app/gone.log") is None
        assert fs.policy().resolve("/srv/app/a") is None

    def test_a_link_swapped_between_discoverys_stat_and_the_check_is_refused(
        self, fs: FakeFS
    ) -> None:
        """Discovery saw one file; the link now points at another: judged next scan, not now."""
        fs.link("/srv/app/swap.log", "own.log", MALLORY)
        seen = fs.lstat("/var/log/auth.log")
        assert fs.policy().why_not("/srv/app/swap.log", seen) == (
            "/srv/app/swap.log changed while it was checked"
        )

    def test_refusals_are_logged_once_and_recorded_for_counting(
        self, fs: FakeFS, caplog: pytest.LogCaptureFixture
    ) -> None:
        from agent.tailing.discovery import ScanProblems

        fs.link("/srv/app/evil.log", "/var/log/auth.log", MALLORY)
        problems = ScanProblems(set(), set())
        found = fs.stat("/srv/app/evil.log")
        for _ in range(3):
            assert refused("/srv/app/evil.log", found, problems, fs.policy())
        assert problems.unreadable == {"/srv/app/evil.log"}
        assert [r.getMessage().split(":")[0] for r in caplog.records] == [
            "/srv/app/evil.log skipped"
        ]


class TestWhatTheRuleCannotResolve:
    """A path discovery could stat but the rule cannot walk link by link is refused, not waved on."""

    def test_a_link_dangling_only_while_it_is_checked_is_refused(self, fs: FakeFS) -> None:
        """Race: evil.log -> auth.log at discovery's stat, dangling at the check, back at open.

        Discovery's stat saw a file; a rule that passes what it cannot resolve would let the
        tracker open auth.log (its fstat matches what discovery saw).
        """
        fs.link("/srv/app/evil.log", "/var/log/auth.log", MALLORY)
        seen = fs.stat("/srv/app/evil.log")
        fs.nodes["/srv/app/evil.log"].target = "/nowhere"  # swapped for the check only
        assert fs.policy().why_not("/srv/app/evil.log", seen) is not None

    def test_a_proc_magic_link_to_a_deleted_file_is_refused(self, tmp_path: Path) -> None:
        """evil.log -> /proc/self/fd/N: the kernel follows N to the agent's open (deleted) file,
        whose readlink text ("... (deleted)") resolves to nothing."""
        secret = tmp_path / "private" / "secret.log"
        secret.parent.mkdir()
        secret.write_bytes(b"root:password-hash\n")
        fd = os.open(secret, os.O_RDONLY)
        try:
            secret.unlink()
            evil = tmp_path / "evil.log"
            evil.symlink_to(f"/proc/self/fd/{fd}")
            stranger = 54321  # neither root nor the agent; may read nothing here
            if os.geteuid() == 0:
                os.lchown(evil, stranger, stranger)
                owner = stranger
            else:
                owner = os.geteuid()
                secret.parent.chmod(0)  # the link's owner cannot reach the file any more
            found = os.stat(evil)
            assert stat.S_ISREG(found.st_mode)  # discovery would take it for a regular file
            policy = SymlinkPolicy(agent_uid=owner + 1, groups=lambda uid: frozenset())
            assert policy.why_not(str(evil), found) is not None
        finally:
            os.close(fd)
            secret.parent.chmod(0o755)


class TestCostPerScan:
    """A scan of many files walks each directory once, not every component of every path."""

    def test_one_lstat_per_file_once_its_directory_is_known(self, tmp_path: Path) -> None:
        deep = tmp_path / "a" / "b" / "c" / "d"
        deep.mkdir(parents=True)
        names = [str(deep / f"{i}.log") for i in range(200)]
        for name in names:
            Path(name).touch()
        calls: list[str] = []

        def counting(path: str) -> os.stat_result:
            calls.append(path)
            return os.lstat(path)

        policy = SymlinkPolicy(lstat=counting)
        for name in names:
            assert policy.why_not(name, os.stat(name)) is None
        assert len(calls) <= len(names) + len(deep.parts)

    def test_a_users_groups_are_looked_up_once(self, fs: FakeFS) -> None:
        """With LDAP or sssd each lookup may be a round trip: once per user, not per link."""
        asked: list[int] = []

        def groups(uid: int) -> frozenset[int]:
            asked.append(uid)
            return frozenset({uid})

        for i in range(100):
            fs.link(f"/srv/app/{i}.log", "own.log", MALLORY)
        policy = SymlinkPolicy(
            agent_uid=AGENT, lstat=fs.lstat, stat_path=fs.stat, readlink=fs.readlink, groups=groups
        )
        assert all(policy.why_not(f"/srv/app/{i}.log") is None for i in range(100))
        assert asked == [MALLORY]

    def test_discovery_judges_a_whole_scan_with_one_policy(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from agent.tailing import discovery, symlinks

        for i in range(50):
            (tmp_path / f"{i}.log").touch()
        made: list[SymlinkPolicy] = []

        class Counted(SymlinkPolicy):
            def __init__(self) -> None:
                super().__init__()
                made.append(self)

        monkeypatch.setattr(symlinks, "SymlinkPolicy", Counted)
        assert len(discovery.scan(str(tmp_path / "*.log"))) == 50
        assert len(made) == 1
