"""R1 to R3 against kinesalite, short versions (``make soak`` runs the long ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peers.servers import Peer
from tests.reliability.scenarios import crash_soak_kinesis, flaky, outage

pytestmark = pytest.mark.slow


def test_sigkills_while_shipping_to_kinesis(kinesalite: Peer, tmp_path: Path) -> None:
    """R1: SIGKILLs at random instants with rotations and copytruncate: 0 lost; duplicates no more
    than what was stored in the last checkpoint interval before each kill."""
    t = crash_soak_kinesis(tmp_path, kinesalite.port, kills=5)
    assert t.lost == 0, t
    assert t.duplicated <= t.notes["window_bound"], t
    assert t.notes["rotations"] > 0


def test_destination_outage_and_refusal(tmp_path: Path) -> None:
    """R2: kinesalite down 10 s then back, then the proxy refusing everything: 0 lost, memory
    within the in-flight budget plus slack, files rotated away during the outage drained."""
    t = outage(tmp_path, outage_seconds=10, refuse_seconds=4)
    assert t.lost == 0, t
    # in-flight budget, plus what botocore and the retry path allocate, plus the sampler's noise
    assert t.peak_rss - t.notes["baseline_rss"] < t.notes["budget"] + 12 * 1024 * 1024, t
    # a request cut off by the outage may have been stored: at most one batch per cut
    assert t.duplicated <= 500 * 2, t
    assert t.notes["rotated_out"] > 0, t


def test_throttling_and_flaky_network_while_tailing(kinesalite: Peer, tmp_path: Path) -> None:
    """R3: throttling, 5xx and resets while files grow and rotate: 0 lost, 0 duplicated (only the
    failed entries are ever resent)."""
    t = flaky(tmp_path, kinesalite.port, seconds=6)
    assert t.lost == 0, t
    assert t.duplicated == 0, t
    assert t.notes["throttled_entries"] > 0
