from __future__ import annotations

import networkx as nx
import pytest

from common.planning import partition
from common.planning.regime import Hysteresis, Regime, RegimeState, decide, next_regime
from tests.test_partition import chain_loses_graph

CFG = Hysteresis(enter_heavy=1.0, leave_heavy=0.8, queue_high=4, min_dwell_s=5.0)


def test_hysteresis_does_not_flap() -> None:
    s = RegimeState()
    s = next_regime(s, 0.95, 0, now=0.0, cfg=CFG)
    assert s.regime is Regime.LIGHT
    s = next_regime(s, 1.0, 0, now=1.0, cfg=CFG)
    assert s == RegimeState(Regime.HEAVY, 1.0)
    # between the thresholds: stays heavy; below leave but inside dwell: stays heavy
    assert next_regime(s, 0.9, 0, now=10.0, cfg=CFG).regime is Regime.HEAVY
    assert next_regime(s, 0.5, 0, now=3.0, cfg=CFG).regime is Regime.HEAVY
    s = next_regime(s, 0.5, 0, now=6.5, cfg=CFG)
    assert s == RegimeState(Regime.LIGHT, 6.5)
    # a long queue is heavy load whatever the estimate says
    assert next_regime(s, 0.1, 4, now=20.0, cfg=CFG).regime is Regime.HEAVY
    assert next_regime(RegimeState(Regime.HEAVY, 0.0), 0.1, 5, now=20.0, cfg=CFG).regime is Regime.HEAVY
    with pytest.raises(ValueError):
        Hysteresis(enter_heavy=0.5, leave_heavy=0.8)


def pipeline_graph() -> nx.DiGraph:
    """A chain whose throughput-optimal cut is not its latency-optimal one."""
    g = nx.DiGraph(model="p", fingerprint="f", inputs=["x"])
    spec = [("x", 0, 0, 100_000), ("a", 0.010, 0.001, 50_000), ("b", 0.010, 0.001, 1_000),
            ("c", 0.030, 0.003, 10)]
    for v, e, c, size in spec:
        g.add_node(v, op="op", edge_time_s=e, cloud_time_s=c, output_bytes=size)
    g.add_edges_from([("x", "a"), ("a", "b"), ("b", "c")])
    return g


def test_algorithm_3_light_heavy_overloaded() -> None:
    g = pipeline_graph()
    bw = 8e6  # 1 MB/s
    light, state = decide(g, bw, fps=1.0)
    assert light.regime is Regime.LIGHT and light.plan.algorithm == "dsl" and not light.overloaded
    dsl = partition.dsl(g, bw)
    rate = 1.2 / dsl.predicted.bottleneck_s  # DSL cannot keep up
    heavy, state = decide(g, bw, fps=rate, state=state, now=10.0)
    assert heavy.regime is Regime.HEAVY and heavy.plan.algorithm == "dsh"
    assert heavy.plan.predicted.throughput_fps >= dsl.predicted.throughput_fps
    assert "heavy load" in heavy.reason or "overloaded" in heavy.reason
    best = partition.exact_throughput(g, bw).predicted.throughput_fps
    over, _ = decide(g, bw, fps=2 * best, state=state, now=20.0)
    assert over.overloaded and "add cloud workers" in over.reason
    # more workers raise DSH's throughput where the cloud is the bottleneck
    assert partition.dsh(g, bw, 4).predicted.throughput_fps >= partition.dsh(g, bw, 1).predicted.throughput_fps


def test_decide_on_the_dag_example_uses_dsl_when_light() -> None:
    d, _ = decide(chain_loses_graph(), 1e6, fps=0.1)
    assert d.plan == d.dsl and d.load_factor < 1
