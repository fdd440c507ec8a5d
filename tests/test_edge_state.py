"""The edge agent's retry and deadline decisions, with synthetic times (no sockets, no sleeps)."""

from __future__ import annotations

import pytest

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


def test_schedule_steps_at_the_given_seconds() -> None:
    from common.planning.units import parse_bandwidth
    from services.edge_agent.state import Schedule

    s = Schedule.parse("wifi, 3g@15,cat1@30.5", parse_bandwidth)
    assert s.at(-1) == s.at(0) == s.at(14.9) == parse_bandwidth("wifi")
    assert s.at(15) == parse_bandwidth("3g") and s.at(30.4) == parse_bandwidth("3g")
    assert s.at(1e9) == parse_bandwidth("cat1")
    assert s.changes == (15.0, 30.5)
    assert Schedule.parse("5", float).at(100) == 5.0


@pytest.mark.parametrize("text", ["2,5", "2@3,5@10", "2,5@10,7@10", "2,5@x", "2,5@-1"])
def test_schedule_refuses_what_it_cannot_follow(text: str) -> None:
    from common.errors import DadsError
    from services.edge_agent.state import Schedule

    with pytest.raises(DadsError, match="schedule"):
        Schedule.parse(text, float)


def test_percentile_is_the_nearest_rank() -> None:
    from services.edge_agent.state import percentile

    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([5.0, 1.0], 100) == 5.0 and percentile([5.0, 1.0], 0) == 1.0
    assert percentile([], 95) == 0.0 and percentile([], 95, empty=-1.0) == -1.0
