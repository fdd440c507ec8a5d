from __future__ import annotations

import pytest

from common.planning import partition
from common.planning.probe import BandwidthEstimator, LinkClock
from common.planning.regime import Regime
from services.planner.state import Calibration, should_switch
from tests.test_partition import chain_loses_graph


def test_estimator_follows_changes_and_ignores_outliers() -> None:
    est = BandwidthEstimator(window=7)
    assert est.bps is None
    for _ in range(7):
        est.add(1_000_000, 1.0)  # 1 MB/s
    assert est.bytes_per_second == pytest.approx(1e6)
    est.add(100_000, 1.0)  # two slow transfers (slow start, a busy worker): ignored
    est.add(100_000, 1.0)
    assert est.bytes_per_second == pytest.approx(1e6)
    for _ in range(2):
        est.add(10_000_000, 1.0)
    assert est.bytes_per_second == pytest.approx(1e6)  # 2 of 7 say faster: not yet
    est.add(10_000_000, 1.0)
    est.add(10_000_000, 1.0)  # now 4 of 7: the link did change
    assert est.bytes_per_second == pytest.approx(1e7)
    est.add(10, 0.001)  # tiny transfers measure latency, not bandwidth: ignored
    assert est.samples == 7 + 2 + 4 and len(est.rates) == 7


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
    cal.observe("cloud", 1.0, 0.0001)  # too short a prediction to learn from
    assert cal.samples["cloud"] == 0
    for _ in range(20):
        cal.observe("cloud", 100.0, 0.01)
    assert cal.factor("cloud") == 4.0


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
