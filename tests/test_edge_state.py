"""The edge agent's retry and deadline decisions, with synthetic times (no sockets, no sleeps)."""

from __future__ import annotations

from services.edge_agent.state import MAX_ATTEMPTS, RETRY_BACKOFF_S, expired, retry_delay


def test_retryable_errors_back_off_exponentially_within_the_deadline() -> None:
    assert retry_delay(True, 1, now=0.0, deadline=10.0) == RETRY_BACKOFF_S
    assert retry_delay(True, 3, now=0.0, deadline=10.0) == RETRY_BACKOFF_S * 4
    assert retry_delay(True, MAX_ATTEMPTS, now=0.0, deadline=10.0) is None  # tried enough
    assert retry_delay(False, 1, now=0.0, deadline=10.0) is None  # e.g. a fingerprint mismatch
    assert retry_delay(True, 2, now=9.95, deadline=10.0) is None  # would wake up past its deadline


def test_frames_past_their_deadline_expire() -> None:
    assert expired([(1, 5.0), (2, 6.0), (3, 4.0)], now=5.5) == [1, 3]
    assert expired([(1, 5.0)], now=5.0) == []  # at the deadline is still in time


def test_results_are_read_by_complete_lines(tmp_path) -> None:
    """A reader racing the edge's writer never parses half a line."""
    from services.edge_agent.results import read_results

    path = tmp_path / "results.jsonl"
    assert read_results(path) == []
    path.write_text('{"frame_id": 0}\n{"frame_id": 1, "cla')
    assert read_results(path) == [{"frame_id": 0}]
    path.write_text('{"frame_id": 0}\n{"frame_id": 1}\n')
    assert [x["frame_id"] for x in read_results(path)] == [0, 1]
