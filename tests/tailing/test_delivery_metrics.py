"""Delivery gauges of a running flow, driven through the in-process harness."""

from __future__ import annotations

from pathlib import Path

from tests.tailing.harness import FlowHarness, fast_flow


def test_stuck_flow_gauge_counts_failed_attempts_in_a_row(tmp_path: Path, logs: Path) -> None:
    """consecutive_errors (CloudWatch's ConsecutiveProcessingErrors) climbs with every failed
    attempt of a batch and is 0 again once the batch is delivered."""
    (logs / "app.log").write_bytes(b"one\ntwo\n")
    h = FlowHarness(
        tmp_path,
        fast_flow(
            str(logs / "app.log*"), retry_initial_backoff_millis=10, retry_max_backoff_millis=20
        ),
    )
    h.memory.fail_next = 4
    seen: list[int] = []
    h.start()
    try:
        assert h.flow is not None
        metrics = h.flow.metrics

        def watch() -> bool:
            if not seen or seen[-1] != metrics.consecutive_errors:
                seen.append(metrics.consecutive_errors)
            return h.memory.records == [b"one\n", b"two\n"]

        assert h.wait_until(watch)
        assert metrics.consecutive_errors == 0
    finally:
        h.close()
    assert max(seen) == 4
    assert seen == [*sorted(seen[:-1]), 0]
