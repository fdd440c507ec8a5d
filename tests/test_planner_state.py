from __future__ import annotations

import math

import pytest

from common.planning import partition
from common.planning.partition import supersedes
from common.planning.probe import BandwidthEstimator, LinkClock
from common.planning.regime import Regime
from services.planner.state import Calibration, PlanBook, check_control, should_switch
from tests.test_partition import chain_loses_graph


def test_estimator_follows_changes_and_ignores_outliers() -> None:
    est = BandwidthEstimator(window=7)
    assert est.bps is None
    for _ in range(7):
        est.add(1_000_000, 1.0)  # 1 MB/s
    assert est.bytes_per_second == pytest.approx(1e6)
    assert not est.add(100_000, 1.0)  # one slow transfer (slow start, a busy worker): ignored
    assert not est.add(1_100_000, 1.0)
    assert not est.add(10_000_000, 1.0)  # outliers that disagree with each other: no step
    assert not est.add(100_000, 1.0)
    assert not est.add(1_000_000, 1.0)
    assert est.bytes_per_second == pytest.approx(1e6) and est.steps == 0
    for rate in (1.5e6, 0.7e6, 2.0e6, 0.5e6):  # noise inside the band never steps
        assert not est.add(rate, 1.0)
    assert est.steps == 0
    assert not est.add(10_000_000, 1.0)
    assert est.add(12_000_000, 1.0)  # two in a row, agreeing, 10x faster: the link changed
    assert est.bytes_per_second == pytest.approx(1.1e7) and len(est.rates) == 2
    est.add(10, 0.001)  # tiny transfers measure latency, not bandwidth: ignored
    assert est.samples == 7 + 5 + 4 + 2 and est.steps == 1


@pytest.mark.parametrize("before,after", [(3e6, 1.4e5), (1.4e5, 3e6), (7e5, 1.6e4)])
def test_estimator_follows_a_step_within_two_transfers(before: float, after: float) -> None:
    """wifi -> 3g, 3g -> wifi, 4g -> cat1 (bytes/s), with +-30% noise on every transfer."""
    import random

    rng = random.Random(0)
    est = BandwidthEstimator()
    for _ in range(20):
        assert not est.add(before * rng.uniform(0.7, 1.3), 1.0)
    assert not est.add(after * rng.uniform(0.7, 1.3), 1.0)
    assert est.add(after * rng.uniform(0.7, 1.3), 1.0)  # the second transfer at the new rate
    assert after * 0.7 <= est.bytes_per_second <= after * 1.3
    for _ in range(50):  # and then it stays: noise does not flap it back
        est.add(after * rng.uniform(0.7, 1.3), 1.0)
    assert est.steps == 1


def test_a_stalled_transfer_bounds_the_estimate_until_transfers_catch_up() -> None:
    """wifi -> 3g: the planner plans for at most the stuck transfer's rate at once, follows the
    bound down as it tightens, and lets go when finished transfers have stepped the window."""
    est = BandwidthEstimator(hold_s=3.0)
    for _ in range(7):
        est.add(2_000_000, 0.1)  # 20 MB/s
    assert est.estimate(0.0) == pytest.approx(2e7) and not est.bounded(0.0)
    est.bound(150_000, 0.2, now=10.0)  # a 150 kB frame on the link for 0.2 s: <= 750 kB/s
    assert est.estimate(10.0) == pytest.approx(7.5e5) and est.bounded(10.0)
    est.bound(150_000, 0.5, now=10.3)  # tighter as it lasts
    assert est.estimate(10.3) == pytest.approx(3e5)
    assert not est.add(150_000, 1.1)  # it arrives: one slow transfer is no step yet, but the
    assert est.estimate(10.5) == pytest.approx(1.36e5, rel=0.01)  # bound takes its rate
    est.bound(150_000, 0.2, now=10.7)  # the next frame, stuck behind: looser, says nothing new
    assert est.estimate(10.7) == pytest.approx(1.36e5, rel=0.01)
    assert est.add(150_000, 1.0)  # the second: a step; the window now knows the link
    assert not est.bounded(10.8) and est.estimate(10.8) == pytest.approx(1.43e5, rel=0.05)


def test_a_bound_lets_go_when_the_link_was_never_that_slow_or_nothing_is_stuck() -> None:
    est = BandwidthEstimator(hold_s=3.0)
    for _ in range(7):
        est.add(1_000_000, 1.0)
    est.bound(100_000, 1.0, now=0.0)  # a transfer held up by something else than the link
    est.unstalled(1.0)  # ... that is through: the edge says nothing is stuck
    est.unstalled(2.0)
    assert est.estimate(3.9) == pytest.approx(5e4)  # it tightened until the edge said so
    assert est.estimate(4.1) == pytest.approx(1e6)  # nothing stuck for 3 s: dropped
    assert not est.add(100_000, 1.0, now=4.1)  # a slow transfer now is a sample, not a bound
    assert not est.bounded(4.2)
    est.bound(100_000, 1.0, now=5.0)
    est.add(1_000_000, 1.0)  # a finished transfer at the old rate: the bound was wrong
    assert est.estimate(5.1) == pytest.approx(1e6) and not est.bounded(5.1)
    est.bound(1000, 1.0, now=6.0)  # too small to say anything about bandwidth
    assert not est.bounded(6.0)


def test_a_bound_that_transfers_confirm_holds_until_the_window_steps() -> None:
    """wifi -> 400 kbit/s with 150 kB frames (3 s each), seen in a run: the bound came from the
    first frame stalling; when it arrived, the next frame was on the link, on time for the
    bound's rate, so nothing renewed the bound; it lapsed 3 s on and the window's old median
    (28 Mbit/s) came back for a plan that sent a frame into the slow link."""
    est = BandwidthEstimator(hold_s=3.0)
    for _ in range(7):
        est.add(3_500_000, 1.0)
    est.bound(150_000, 0.2, now=10.0)
    est.bound(150_000, 1.2, now=11.0)
    # the telemetry crosses the same link: behind the stuck frame it comes late, and silence
    # is no reason to let go; nor to stand still: the frame is still stuck, or the report
    # that it is through would have come over the freed link
    assert est.estimate(11.0) == pytest.approx(1.25e5)
    assert est.bounded(12.5) and est.estimate(12.5) == pytest.approx(150_000 / 2.7)
    assert not est.add(150_000, 3.0, now=14.8)  # the stalled frame arrives: one sample, no step
    for t in (15.0, 16.0, 17.0, 17.9):  # the next frame, on the link, on time for the bound
        est.unstalled(t)
    assert est.bounded(17.9) and est.estimate(17.9) == pytest.approx(5e4)  # measured, renewed
    assert est.add(150_000, 3.0, now=17.9)  # it arrives: a step
    assert not est.bounded(18.0) and est.estimate(18.0) == pytest.approx(5e4)


def test_one_transfer_is_no_estimate() -> None:
    est = BandwidthEstimator()
    est.add(65_536 * 0.28, 1.0)  # the first probe while the host loads every model: 3.5x slow
    assert est.estimate(0.0) is None  # the planner keeps its initial rate
    est.add(65_536, 1.0)
    assert est.estimate(0.0) == pytest.approx(65_536 * 1.28 / 2)


def test_link_clock_is_fifo() -> None:
    clock = LinkClock()
    assert clock.transfer(0.0, 1.0) == 1.0
    assert clock.transfer(0.5, 2.0) == 1.0  # waited behind the first until 1.0
    assert clock.transfer(5.0, 5.5) == 0.5


def test_calibration_needs_samples_and_is_bounded() -> None:
    cal = Calibration(min_samples=3)
    for _ in range(2):
        cal.observe("edge", 0.02, 0.01)
    assert cal.factor("edge") == 1.0
    cal.observe("edge", 0.02, 0.01)
    assert cal.factor("edge") == pytest.approx(2.0)
    assert cal.residual("edge") == pytest.approx(1.0)  # the model has caught up
    cal.observe("cloud", 1.0, 0.0001)  # too short a prediction to learn from
    assert cal.samples["cloud"] == 0
    for _ in range(20):
        cal.observe("cloud", 100.0, 0.01)
    assert cal.factor("cloud") == cal.bounds[1]


def test_a_stale_profile_is_corrected_within_ten_frames_and_noise_moves_nothing() -> None:
    """A cloud profile measured on a busy host (1078 ms predicted, ~100 ms measured, seen in a
    demo): the factor follows within a few telemetry reports; then noise of +-10% around the
    truth never moves the applied factor (no rebuilt cost graph, no flapping plan)."""
    cal = Calibration()
    for _ in range(5):
        cal.observe("cloud", 0.100, 1.078)
    assert cal.factor("cloud") == pytest.approx(0.100 / 1.078, rel=0.05)
    assert 0.67 <= cal.residual("cloud") <= 1.5
    applied = cal.factor("cloud")
    for i in range(50):
        cal.observe("cloud", 0.100 * (0.9 if i % 2 else 1.1), 1.078)
        assert cal.factor("cloud") == applied
    for _ in range(10):  # the host gets busy: 3x slower
        cal.observe("cloud", 0.300, 1.078)
    assert cal.factor("cloud") == pytest.approx(0.300 / 1.078, rel=0.15)


def test_the_measured_wait_joins_the_prediction_and_goes_with_its_plan() -> None:
    """What frames wait beyond the stages (a saturated pool's broker queue, a busy host's hops)
    is part of the latency the planner states; the cut's own evaluation, and the edge's
    admission depth, keep the stages alone."""
    cal = Calibration()
    cal.observe_wait(0.080)
    assert cal.wait_s == pytest.approx(0.080)  # the first report is taken as it is
    for _ in range(10):
        cal.observe_wait(0.020)
    assert cal.wait_s == pytest.approx(0.020, abs=0.002)
    pred = partition.Prediction(0.01, 0.02, 0.1, 0.13, 10.0)
    waiting = pred.waiting(cal.wait_s)
    assert waiting.latency_s == pytest.approx(0.13 + cal.wait_s)
    assert waiting.waiting(0.005).latency_s == pytest.approx(0.135)  # replaced, not added twice
    assert waiting.latency_s - waiting.edge_s - waiting.wait_s == pytest.approx(0.12)
    cal.forget_wait()
    assert cal.wait_s == 0.0 and cal.wait_samples == 0


def test_plan_changes_only_for_a_real_gain() -> None:
    g = chain_loses_graph()
    cur = partition.dsl(g, 1e6)
    assert should_switch(None, cur, g, 1e6, 1, Regime.LIGHT, 0.05)
    assert not should_switch(cur, cur, g, 1e6, 1, Regime.LIGHT, 0.05)
    other = partition.edge_only(g, 1e6)
    assert not should_switch(cur, other, g, 1e6, 1, Regime.LIGHT, 0.05)  # worse: keep
    far = partition.dsl(g, 1e3)  # at 1 kbit/s the best cut differs a lot
    assert should_switch(cur, far, g, 1e3, 1, Regime.LIGHT, 0.05)
    assert not should_switch(cur, far, g, 1e3, 1, Regime.LIGHT, 0.99)


def test_a_restarted_planner_supersedes_and_never_collides() -> None:
    first = PlanBook(epoch=1_000)
    plan = chain_plan()
    a1, a2 = first.issue(plan, 1.0), first.issue(plan, 2.0)
    assert (a1.key, a2.key) == ((1_000, 1), (1_000, 2))
    again = PlanBook(epoch=2_000)  # the planner restarted: ids count from 1 again
    b1 = again.issue(plan, 3.0)
    assert b1.plan_id == 1 and b1.key != a1.key  # a worker keying by (epoch, id) cannot mix them
    assert supersedes(b1.key, a2.key) and supersedes(a2.key, a1.key) and supersedes(a1.key, None)
    assert not supersedes(a1.key, b1.key) and not supersedes(a2.key, a2.key)
    assert partition.Plan.from_json(b1.to_json()).key == b1.key  # the key survives the wire


def test_the_live_set_is_bounded_and_current_first() -> None:
    book: PlanBook[str] = PlanBook(epoch=1, max_live=3)
    for i in range(1, 6):
        book.publish((1, i), f"plan {i}")
    book.publish((1, 5), "plan 5, republished")  # refreshing the current one adds nothing
    assert book.items() == ["plan 5, republished", "plan 4", "plan 3"]


def test_each_edge_keeps_its_live_plans_and_a_departed_edge_none() -> None:
    book: PlanBook[str] = PlanBook(epoch=1, max_live=2)
    for i in range(1, 5):
        book.publish((1, 2 * i), f"a{i}", "cam-a")
        book.publish((1, 2 * i + 1), f"b{i}", "cam-b")
    assert book.items() == ["b4", "a4", "b3", "a3"]  # two each, newest first
    book.drop("cam-a")
    assert book.items() == ["b4", "b3"]
    book.drop("nobody")  # forgetting an unknown edge is harmless
    assert book.items() == ["b4", "b3"]


@pytest.mark.parametrize("bandwidth", [math.inf, -1.0, math.nan])
def test_control_refuses_rates_no_tick_could_use(bandwidth: float) -> None:
    with pytest.raises(ValueError, match="finite rate"):
        check_control(bandwidth, None)
    check_control(0.0, "auto")  # 0: the probe's estimate again
    with pytest.raises(ValueError, match="unknown algorithm"):
        check_control(None, "fastest")


def chain_plan() -> partition.Plan:
    return partition.dsl(chain_loses_graph(), 8e6)


def test_link_clock_bounds_a_transfer_still_on_the_link() -> None:
    clock = LinkClock(base_rtt_s=0.1)
    clock.transfer(0.0, 2.0)  # the link was busy until 2.0
    assert clock.elapsed(1.0, 1.5) == 0.0  # still queued behind it
    assert clock.elapsed(1.0, 5.0) == pytest.approx(2.9)  # on the link since 2.0, less the RTT
