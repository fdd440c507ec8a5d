"""The broker's state machine, driven by synthetic events and an injected clock."""

from __future__ import annotations

from services.broker.state import Answer, BrokerState, Dispatch, Forward


def dispatched(actions) -> list[tuple[bytes, int]]:
    return [(a.worker, a.pending.request_id) for a in actions if isinstance(a, Dispatch)]


def test_requests_go_to_the_longest_idle_worker() -> None:
    s = BrokerState()
    assert s.on_request(b"edge", 1, 5.0, ["r1"], now=0.0) == []  # no worker yet: queued
    assert dispatched(s.on_ready(b"w1", now=0.1)) == [(b"w1", 1)]
    s.on_ready(b"w2", now=0.2)
    assert dispatched(s.on_request(b"edge", 2, 5.0, ["r2"], now=0.3)) == [(b"w2", 2)]
    assert s.on_request(b"edge", 3, 5.0, ["r3"], now=0.4) == []
    actions = s.on_reply(b"w1", 1, now=0.5)
    assert isinstance(actions[0], Forward) and actions[0].edge == b"edge"
    assert dispatched(actions) == [(b"w1", 3)]
    assert actions[1].pending.dispatched_at == 0.5 and actions[1].pending.received_at == 0.4


def test_dead_worker_request_is_requeued_not_lost() -> None:
    s = BrokerState(liveness_s=3.0, max_attempts=3)
    s.on_ready(b"w1", 0.0)
    s.on_ready(b"w2", 0.0)
    assert dispatched(s.on_request(b"e", 7, 60.0, ["r"], 0.5)) == [(b"w1", 7)]
    s.on_seen(b"w2", 3.0)
    actions = s.on_tick(4.0)  # w1 silent for 4 s: dead, its request goes to w2
    assert dispatched(actions) == [(b"w2", 7)]
    assert s.ready == 1
    assert s.on_reply(b"w1", 7, 4.1) == []  # the dead worker's late answer is ignored
    assert isinstance(s.on_reply(b"w2", 7, 4.2)[0], Forward)


def test_a_request_that_kills_every_worker_is_answered() -> None:
    s = BrokerState(liveness_s=1.0, max_attempts=2)
    s.on_ready(b"w1", 0.0)
    s.on_request(b"e", 1, 60.0, ["r"], 0.0)
    assert s.on_tick(2.0) == []  # requeued once, no worker left
    s.on_ready(b"w2", 2.0)
    actions = s.on_tick(4.0)
    assert [type(a) for a in actions] == [Answer] and actions[0].code == "worker_lost"


def test_bounded_queue_and_deadlines() -> None:
    s = BrokerState(max_queue=2)
    s.on_request(b"e", 1, 1.0, [], 0.0)
    s.on_request(b"e", 2, 10.0, [], 0.0)
    full = s.on_request(b"e", 3, 10.0, [], 0.0)
    assert isinstance(full[0], Answer) and full[0].retry and full[0].code == "overloaded"
    late = s.on_tick(2.0)
    assert [(a.request_id, a.code) for a in late if isinstance(a, Answer)] == [(1, "deadline")]
    assert s.waiting == 1


def test_reregistering_worker_gives_back_its_request() -> None:
    s = BrokerState()
    s.on_ready(b"w1", 0.0)
    s.on_request(b"e", 1, 60.0, [], 0.0)
    assert dispatched(s.on_ready(b"w1", 1.0)) == [(b"w1", 1)]  # restarted: sent again
    assert s.workers[b"w1"].busy.attempts == 1


def test_a_hung_worker_loses_its_request_and_gets_no_more() -> None:
    """Alive (heartbeating) but never answering: the request goes elsewhere after the timeout."""
    s = BrokerState(liveness_s=3.0, dispatch_timeout_s=10.0)
    s.on_ready(b"w1", 0.0)
    assert dispatched(s.on_request(b"e", 1, 60.0, ["r"], 0.0)) == [(b"w1", 1)]
    for t in range(1, 11):
        s.on_seen(b"w1", float(t))
        assert s.on_tick(float(t)) == []  # slow is not hung: within the timeout nothing moves
    s.on_seen(b"w1", 11.0)
    assert s.on_tick(11.0) == [] and s.in_flight == 0 and s.waiting == 1  # taken back
    assert dispatched(s.on_ready(b"w2", 11.5)) == [(b"w2", 1)]  # re-queued: to the next worker
    assert s.on_request(b"e", 2, 60.0, ["r2"], 12.0) == []  # w1 owes an answer: gets nothing
    assert dispatched(s.on_reply(b"w1", 1, 13.0)) == [(b"w1", 2)]  # its late answer: not forwarded
    assert isinstance(s.on_reply(b"w2", 1, 14.0)[0], Forward)  # w2's answer is


def test_a_slow_worker_within_the_timeout_answers() -> None:
    s = BrokerState(liveness_s=3.0, dispatch_timeout_s=60.0)
    s.on_ready(b"w1", 0.0)
    s.on_request(b"e", 1, 60.0, ["r"], 0.0)
    for t in range(1, 20):
        s.on_seen(b"w1", float(t))
        assert s.on_tick(float(t)) == []
    assert isinstance(s.on_reply(b"w1", 1, 20.0)[0], Forward)


def test_edges_are_served_in_turn_and_a_flood_gives_way() -> None:
    s = BrokerState(max_queue=6)
    for i in range(5):
        s.on_request(b"flood", i, 60.0, [], 0.0)  # a backlog before anyone else asks
    s.on_request(b"calm", 100, 60.0, [], 0.1)
    assert s.waiting == 6
    full = s.on_request(b"calm", 101, 60.0, [], 0.2)  # full: the longest queue gives way
    assert [(a.edge, a.request_id, a.retry) for a in full if isinstance(a, Answer)] == \
        [(b"flood", 4, True)]
    refused = s.on_request(b"flood", 5, 60.0, [], 0.3)  # the flood cannot push anyone out
    assert [(a.edge, a.code) for a in refused] == [(b"flood", "overloaded")]
    order = []
    s.on_ready(b"w", 1.0)
    for t in range(6):
        busy = s.workers[b"w"].busy
        assert busy is not None
        order.append((busy.edge, busy.request_id))
        s.on_reply(b"w", busy.request_id, 1.0 + t)
    # round robin: the calm edge waits for one flood request per turn, not for all of them
    assert order == [(b"flood", 0), (b"calm", 100), (b"flood", 1), (b"calm", 101),
                     (b"flood", 2), (b"flood", 3)]
    assert s.waiting == 0 and not s.queues and not s.turn


def test_a_requeued_request_goes_first() -> None:
    s = BrokerState(liveness_s=1.0)
    s.on_ready(b"w1", 0.0)
    s.on_request(b"a", 1, 60.0, [], 0.0)  # dispatched to w1
    s.on_request(b"b", 2, 60.0, [], 0.0)
    s.on_request(b"a", 3, 60.0, [], 0.0)
    s.on_ready(b"w2", 0.5)  # takes b's request (a's turn has passed)
    s.on_seen(b"w2", 1.5)
    actions = s.on_tick(2.0)  # w1 died: a's request 1 goes back, first
    s.on_ready(b"w3", 2.0)
    assert dispatched(actions) == [] and s.workers[b"w3"].busy.request_id == 1
