"""Who a probed file is and where reading it starts: the identity rules, applied by look-ups only.

Decisions, in the order they are taken for a file seen at a matching path:
- same (dev, inode) as an open file: the same file, maybe renamed; a size below our position or
  a changed head means it was truncated (copytruncate): its copy, if one matches the pattern,
  continues from our position, and the file itself restarts at 0;
- a new inode with a checkpoint for its exact identity: resume there;
- a new inode whose head equals an open, untruncated file's: maybe a copy in the making (a
  shadow, shadows.py), held unread until the original is truncated (then the rules below), or
  until it is shown to be a file of its own — its last bytes differ from the original's at the
  same offsets, no truncation comes within SHADOW_WINDOW of its last change, or ``run --once``
  ends — and then read from 0 (unless it is the copy of a truncated file: see below, where a
  file that starts like two others, one of them truncated, lands); held and released are logged;
- a new inode whose head equals a file that ended (truncated, deleted, or from a checkpoint):
  the copy continues from where that file was read to;
- a new inode whose head equals a *truncated* file that was read further than the copy is long
  (lines written between logrotate's copy and its truncate were read from the live file): the
  copy is a prefix of what was read, so it starts at its end and nothing in it is sent again.
  The file's held tail (an unterminated last line) is flushed from the original then, since the
  copy does not hold all of it. Truncation is the evidence that it is a copy (seen while
  running, or after a restart as an inode whose head no longer matches its checkpoint): a file
  that merely starts like an old, longer one (a header line) is a new file, read from 0;
- otherwise a new file: from 0, or from the end on the flow's very first scan with END_OF_FILE.
New files of one scan are judged originals first (known inodes, then the longest), so that of
a file and its copy, the copy is the shadow.
The probe (probe.py, in a worker thread) read everything these rules need: deciding is O(1)
dictionary work per file on the loop.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

from agent.observability.metrics import FileMetrics
from agent.records import FileId
from agent.tailing.framing import Framer
from agent.tailing.identity import fingerprint_of
from agent.tailing.probe import Probe
from agent.tailing.shadows import DIVERGED, SHADOW_WINDOW, Original, Shadow
from agent.tailing.tables import FileTables, log
from agent.tailing.tailer import FileAcks, TrackedFile

# Files adopted in one slice past which each is logged at debug level and the slice in one line.
QUIET_BURST = 64


class Adoption(FileTables):
    """Takes probed files into the tables: decides their identity and start, keeps or closes them."""

    def _adopt_all(self, probes: list[Probe]) -> None:
        """Adopt a slice of probed files. Past QUIET_BURST of them, each is logged at debug level
        and the slice in one line: a log line is a write(2), and the loop's system calls are
        where it waits for the GIL behind busy worker threads."""
        now = self.clock()
        quiet = len(probes) > QUIET_BURST
        self._adopt_level = logging.DEBUG if quiet else logging.INFO
        before = len(self.files)
        try:
            for p in probes:
                self._adopt(p, now)
        finally:
            self._adopt_level = logging.INFO
        if quiet:
            log.info(
                "%s: tailing %d more files (%d open, %d idle and closed; each at debug level)",
                self.flow_id,
                len(self.files) - before,
                len(self.files),
                len(self.dormant),
            )
        # past a thousand more files, what they hold leaves the collector's view
        self._freezer.observe(len(self.files) + len(self.dormant))

    def _adopt(
        self, p: Probe, now: float, *, force: bool = False, copy_of_truncated: bool = False
    ) -> None:
        """Decide who a probed file is and where to start; keep its descriptor or close it.

        ``force``: identify it by whatever head it has (a waiting file that left the pattern).
        ``copy_of_truncated``: the copy of a file just truncated (truncation.py): it continues
        that file, even if another open file starts alike (a file of its own, or another copy).
        """
        f = p.found
        key = (f.dev, f.ino)
        if p.error is not None or p.st is None:
            exc = p.error
            if exc is not None and exc.errno in (errno.EMFILE, errno.ENFILE):
                self.metrics.read_errors += 1
                if self._emfile_scan != self.scan_count:  # once a scan, not once a file
                    self._emfile_scan = self.scan_count
                    log.error(
                        "%s: cannot open %s: %s (retrying; raise LimitNOFILE)",
                        self.flow_id,
                        f.path,
                        exc.strerror,
                    )
                return
            if f.path not in self.problems.unreadable:
                self.problems.unreadable.add(f.path)
                self.metrics.read_errors += 1
                log.error(
                    "%s: cannot open %s: %s (will retry every scan)",
                    self.flow_id,
                    f.path,
                    exc.strerror if exc is not None else "?",
                )
            return
        self.problems.unreadable.discard(f.path)
        st = p.st
        if (st.st_dev, st.st_ino) != key or not stat.S_ISREG(st.st_mode) or self._held(key):
            os.close(p.fd)  # replaced between scan and open (maybe by a FIFO): next scan
            return
        decided = self._identify(p, key, now, force=force, copy_of_truncated=copy_of_truncated)
        before = self.waiting_fds.pop(key, None)
        if before is not None:
            os.close(before[1])  # this probe's descriptor replaces it
        if decided is None:
            if key in self.shadows:
                # a possible copy of a file being read: compared with it off the loop, once
                # this slice is adopted (its descriptor is closed there, or adopted with it)
                self.judging.append((p, self._originals(p, key)))
            elif not force and len(self.files) + len(self.waiting_fds) < self.max_open:
                # too short to tell who it is yet: held, so that it is drained if it leaves
                # the pattern before it can be identified
                self.waiting_fds[key] = (f, p.fd)
            else:
                os.close(p.fd)  # no descriptor to spare
            return
        fid, start, floor = decided
        self.waiting_since.pop(key, None)
        self._waiting_path.pop(key, None)
        self.shadows.pop(key, None)
        acks = FileAcks(self.flow_id, fid, f.path, start, floor=floor, size=st.st_size)
        acks.dirty = True  # record where we start, so a restart does not re-decide it
        framer = Framer(
            start=start,
            max_record_bytes=self.max_record_bytes,
            terminator=self._terminator,
            multiline=self._multiline,
            skip_header_lines=self.flow.skip_header_lines,
        )
        tracked = TrackedFile(
            f.path, p.fd, acks, framer, size=st.st_size, mtime=st.st_mtime, now=now
        )
        self.files[key] = tracked
        self.open_heads.add(fid.fp_len, fid.fp_hash, key)
        self.metrics.files[str(fid)] = FileMetrics(
            f.path, str(fid), size=st.st_size, read_offset=start, checkpoint_offset=start
        )
        log.log(self._adopt_level, "%s: tailing %s from offset %d", self.flow_id, f.path, start)

    def _identify(
        self,
        p: Probe,
        key: tuple[int, int],
        now: float,
        *,
        force: bool = False,
        copy_of_truncated: bool = False,
    ) -> tuple[FileId, int, FileAcks | None] | None:
        """Who the file is and where to start, or None (wait, or a copy of a live file)."""
        assert p.st is not None
        size = p.st.st_size
        fresh = key in self.restart_at_zero
        if not fresh:
            for fid in self.by_inode.get(key, ()):
                if p.digest_at(fid.fp_len) != fid.fp_hash:
                    self.truncated.add(fid)  # rewritten (copytruncate while we were away)
                    continue
                offset = self.offsets[fid]
                if offset <= size:
                    if self.checkpointed:
                        self._resumed.add(fid)  # may have ended by the time they are judged
                    self._forget_ended()
                    return fid, offset, self.ended.get(fid)
                self.truncated.add(fid)
                self.metrics.files_truncated += 1
                log.warning(
                    "%s: %s is shorter than its checkpoint; reading it from 0",
                    self.flow_id,
                    fid,
                )
                fresh = True
        first_seen = self.waiting_since.setdefault(key, now)
        self._waiting_path[key] = p.found.path
        idle = (
            force
            or self.identify_partial_now
            or (now - first_seen >= self.flow.partial_line_flush_millis / 1000)
        )
        fp = fingerprint_of(p.head, force=idle)
        if fp is None:
            return None
        fid = FileId(key[0], key[1], fp[0], fp[1])
        self.restart_at_zero.discard(key)
        if fresh:
            return fid, 0, None
        if not copy_of_truncated and any(
            other != key for other in self.open_heads.lookup(p.head, p.digests, p.digest_at)
        ):
            if force or self._still_a_shadow(p, key, now):
                return None  # maybe a copy of a file still open: the original is read first
            released = True  # not a copy of the open file it starts like (logged)
        else:
            released = False
        prior = [
            known
            for known in self._same_head(p)
            if (self.offsets[known] <= size and not released) or known in self.truncated
        ]
        if prior:
            best = max(prior, key=lambda known: self.offsets[known])
            start = self.offsets[best]
            if start > size:
                log.info(
                    "%s: %s is a copy of %s, which was read past the copy's end (%d > %d): "
                    "none of it is sent again",
                    self.flow_id,
                    fid,
                    best,
                    start,
                    size,
                )
                start = size
            self.continued[best] = size
            self._forget_ended()
            return fid, start, self.ended.get(best)
        if p.end is not None:  # probed for the flow's first scan with END_OF_FILE
            return fid, p.end, None
        return fid, 0, None

    def _still_a_shadow(self, p: Probe, key: tuple[int, int], now: float) -> bool:
        """A new file starting like an open one: still a candidate copy (held unread), or a
        file of its own (shadows.py): shown different by the comparison, not truncated within
        SHADOW_WINDOW of its last change, or the end of ``run --once``. Logged either way."""
        assert p.st is not None
        size = p.st.st_size
        shadow = self.shadows.get(key)
        if shadow is None:
            original = " and ".join(o.path for o in self._originals(p, key)) or "?"
            shadow = self.shadows[key] = Shadow(p.found.path, original, size, now)
            log.info(
                "%s: %s starts like %s (being read): held unread as a possible copy "
                "(copytruncate) until that file is truncated, or they differ, or %.0f s pass",
                self.flow_id,
                p.found.path,
                original,
                SHADOW_WINDOW,
            )
        elif shadow.size != size:
            shadow.size, shadow.grew_at = size, now
        if key in self.own_files:
            why = "their bytes differ at the same offsets"
        elif now - shadow.grew_at >= SHADOW_WINDOW:
            why = f"that was not truncated within {SHADOW_WINDOW:.0f} s of this one's last change"
        elif self.release_shadows:
            why = "that was not truncated before run --once ended"
        else:
            return True
        self.own_files.discard(key)
        log.info(
            "%s: %s is not a copy of %s (%s): no longer held",
            self.flow_id,
            p.found.path,
            shadow.original,
            why,
        )
        return False

    def _originals(self, p: Probe, key: tuple[int, int]) -> list[Original]:
        """The open (or idle) files a possible copy starts like, as the comparison needs them."""
        out = []
        for other in self.open_heads.lookup(p.head, p.digests, p.digest_at):
            tracked = self.files.get(other) or self.dormant.get(other)
            if other == key or tracked is None:
                continue
            fid = tracked.file_id
            out.append(
                Original(tracked.path, other, tracked.fd, fid.fp_len, fid.fp_hash, tracked.offset)
            )
        return out

    def _apply_verdicts(
        self, judging: list[tuple[Probe, list[Original]]], verdicts: list[str]
    ) -> None:
        """Shadows found different from their originals are adopted as files of their own (their
        descriptors were kept open by ``compare_all``; the others' were closed)."""
        now = self.clock()
        for (p, _originals), verdict in zip(judging, verdicts, strict=True):
            if verdict != DIVERGED:
                continue
            key = (p.found.dev, p.found.ino)
            if key not in self.shadows:  # adopted meanwhile (its original was truncated)
                os.close(p.fd)
                continue
            self.own_files.add(key)
            self._adopt(p, now)
