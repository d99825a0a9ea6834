"""Discovery's walk: glob's matching rules, but it terminates, bounds its depth and reports failures."""

from __future__ import annotations

import errno
import glob
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import agent.tailing.identity as identity
from agent.tailing.discovery import walk
from agent.tailing.tracker import FileSet
from tests.tailing.harness import fast_flow, file_set_for


def touch(path: Path, data: bytes = b"x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


class TestWalk:
    def test_matches_like_glob(self, tmp_path: Path) -> None:
        """Without loops, the walk finds what glob finds (hidden names, **, wildcards, literals)."""
        for name in ("x.log", "a/y.log", "a/b/z.log", "a/b/c/w.log", ".h/h.log", "a/.q.log",
                     "d/e.txt", "a/b/c/k.log.gz", "a1/m.log"):  # fmt: skip
            touch(tmp_path / name)
        for pattern in ("**/*.log", "*/*.log", "**", "a/b/z.log", "a/*/z.log", "a/**/c/*.log",
                        "**/.*.log", "?/*.log", "a[0-9]/*.log"):  # fmt: skip
            full = str(tmp_path / pattern)
            expected = sorted(
                p
                for p in glob.glob(full, recursive=True)
                if os.path.isfile(p) and not p.endswith(".gz")
            )
            assert sorted(f.path for f in walk(full).found) == expected, pattern

    def test_symlink_loops_terminate(self, tmp_path: Path) -> None:
        """Two loops (``ln -s . l1; ln -s . l2``) under ** : each file found once, promptly."""
        app = tmp_path / "logs" / "app"
        touch(app / "a.log")
        os.symlink(".", app / "l1")
        os.symlink(".", app / "l2")
        os.symlink("..", app / "up")
        result = walk(str(tmp_path / "logs" / "**" / "*.log"))
        assert [f.path for f in result.found] == [str(app / "a.log")]
        assert result.failed == []

    def test_depth_is_bounded(self, tmp_path: Path) -> None:
        """** descends at most max_depth directories; what is deeper is reported, not walked."""
        deep = tmp_path.joinpath(*[f"d{i}" for i in range(6)])
        touch(deep / "deep.log")
        touch(tmp_path / "d0" / "shallow.log")
        result = walk(str(tmp_path / "**" / "*.log"), max_depth=3)
        assert [Path(f.path).name for f in result.found] == ["shallow.log"]
        assert result.too_deep

    def test_unlistable_directory_is_a_failure_not_an_absence(self, tmp_path: Path) -> None:
        """EMFILE from listing a directory is reported with the directory, never as 'empty'."""
        touch(tmp_path / "logs" / "a.log")

        def scandir(path: str) -> os._ScandirIterator[str]:
            raise OSError(errno.EMFILE, "Too many open files", path)

        result = walk(str(tmp_path / "logs" / "*.log"), scandir=scandir)
        assert result.found == []
        assert [(d, e.errno) for d, e in result.failed] == [(str(tmp_path / "logs"), errno.EMFILE)]
        assert result.covers(str(tmp_path / "logs" / "a.log"))

    def test_path_filter_is_applied(self, tmp_path: Path) -> None:
        """The per-path policy hook sees every match and can turn one down."""
        touch(tmp_path / "a.log")
        os.symlink(tmp_path / "a.log", tmp_path / "b.log")
        touch(tmp_path / "c.log")
        seen: list[str] = []

        def admit(path: str, lst: os.stat_result, st: os.stat_result) -> bool:
            seen.append(path)
            return not os.path.islink(path)

        found = walk(str(tmp_path / "[bc].log"), admit=admit).found
        assert [Path(f.path).name for f in found] == ["c.log"]
        assert sorted(Path(p).name for p in seen) == ["b.log", "c.log"]


def file_set(pattern: str, **overrides: object) -> FileSet:
    return file_set_for(fast_flow(pattern, **overrides))


class TestScanErrors:
    def test_emfile_keeps_the_files_and_counts(self, tmp_path: Path) -> None:
        """A scan that hits EMFILE is an error: the files stay open and nothing is 'rotated'."""
        for i in range(3):
            touch(tmp_path / f"f{i}.log", f"line {i}\n".encode())
        files = file_set(str(tmp_path / "*.log"))
        files.rescan()
        assert len(files.files) == 3

        failing = True
        real = os.scandir

        def scandir(path: str) -> os._ScandirIterator[str]:
            if failing:
                raise OSError(errno.EMFILE, "Too many open files", path)
            return real(path)

        files.scandir = scandir
        files.rescan()
        assert len(files.files) == 3
        assert not any(t.gone for t in files.files.values())
        assert files.metrics.files_rotated == 0
        assert files.metrics.scan_errors == 1
        failing = False
        files.rescan()
        assert files.metrics.scan_errors == 1
        files.close()


class TestConstantCostIdentification:
    def test_identifying_a_file_does_not_look_at_every_open_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Adopting one more file hashes a few heads, however many files are already open."""
        for i in range(300):
            touch(tmp_path / f"f{i:04d}.log", f"line {i} {'y' * (i % 7)}\n".encode())
        files = file_set(str(tmp_path / "*.log"))
        files.rescan()
        assert len(files.files) == 300
        calls = count_calls(monkeypatch)
        touch(tmp_path / "new.log", b"a new line\n")
        files.rescan()
        assert len(files.files) == 301
        # every open file's head is verified once per scan (in the worker thread): the new
        # file itself may cost a handful more, never one per open file
        assert calls() <= 300 + 20
        files.close()


def count_calls(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    counter = [0]
    real = identity.digest

    def digest(data: bytes) -> bytes:
        counter[0] += 1
        return real(data)

    for module in ("agent.tailing.identity", "agent.tailing.probe"):
        monkeypatch.setattr(f"{module}.digest", digest)
    return lambda: counter[0]
