"""Planners against brute force on random DAGs, and the cases the chain view gets wrong."""

from __future__ import annotations

import math

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import CostGraphError
from common.planning import dag, partition
from common.planning.bwmap import bandwidth_map
from common.planning.costgraph import to_json
from tests.strategies import bandwidths, cost_graphs

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rel_close(a: float, b: float, rel: float = 1e-9) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-15)


def assert_valid(g: nx.DiGraph, plan: partition.Plan) -> None:
    edge = dag.check_cut(g, plan.edge_nodes)  # closed under predecessors, holds the inputs
    assert list(plan.transfer) == dag.transfer(g, edge)
    assert list(plan.edge_nodes) == sorted(plan.edge_nodes)


@PROPS
@given(cost_graphs(), bandwidths)
def test_dsl_is_the_brute_force_optimum(g: nx.DiGraph, bw: float) -> None:
    best = partition.brute_force(g, bw)
    plan = partition.dsl(g, bw)
    assert_valid(g, plan)
    assert rel_close(plan.predicted.latency_s, best.predicted.latency_s)
    for baseline in (partition.neurosurgeon, partition.edge_only, partition.cloud_only):
        other = baseline(g, bw)
        assert_valid(g, other)
        assert other.predicted.latency_s >= plan.predicted.latency_s * (1 - 1e-9)


@PROPS
@given(cost_graphs(max_nodes=12), bandwidths, st.integers(1, 4))
def test_dsh_within_three_of_exact_and_exact_beats_all(g: nx.DiGraph, bw: float, k: int) -> None:
    exact = partition.exact_throughput(g, bw, k)
    brute = partition.brute_force(g, bw, k, objective="throughput")
    assert_valid(g, exact)
    assert exact.extra["optimal"]
    opt = brute.predicted.bottleneck_s
    # HiGHS is exact up to its feasibility tolerance (1e-7 of the largest scaled time): hypothesis
    # found a graph whose optimum is 0 s where the ILP's cut costs 1e-7 s
    largest = max(max(d["edge_time_s"], d["cloud_time_s"] / k, d["output_bytes"] * 8.0 / bw)
                  for _, d in g.nodes(data=True))
    assert exact.predicted.bottleneck_s <= opt * (1 + 1e-6) + 1e-6 * largest + 1e-12
    heur = partition.dsh(g, bw, k)
    assert_valid(g, heur)
    assert heur.predicted.bottleneck_s <= 3 * opt * (1 + 1e-9) + 1e-12
    for name in ("dsl", "neurosurgeon", "edge_only", "cloud_only"):
        other = partition.solve(g, name, bw, k)
        assert exact.predicted.bottleneck_s <= other.predicted.bottleneck_s * (1 + 1e-6) + 1e-12
    assert heur.predicted.bottleneck_s <= partition.dsl(g, bw, k).predicted.bottleneck_s * (1 + 1e-9)


def chain_loses_graph() -> nx.DiGraph:
    """Branch a reads the raw input and shrinks it; branch b is heavy on the edge.

    The best cut runs the stem and branch a on the edge and branch b on the cloud. In layer
    order (x, s, b1, a1, a2, b2, out) every prefix that holds branch a also holds b1, and every
    prefix without branch a must send the raw input: the chain view cannot find that cut.
    """
    g = nx.DiGraph(model="toy", fingerprint="f", inputs=["x"])
    for v, e, c, size in [
        ("x", 0.0, 0.0, 200_000),
        ("s", 0.001, 0.001, 2_000),
        ("b1", 0.100, 0.001, 200_000),
        ("a1", 0.002, 0.001, 100_000),
        ("a2", 0.001, 0.001, 10),
        ("b2", 0.100, 0.001, 10),
        ("out", 0.001, 0.001, 10),
    ]:
        g.add_node(v, op="op", edge_time_s=e, cloud_time_s=c, output_bytes=size)
    g.add_edges_from([("x", "s"), ("s", "b1"), ("x", "a1"), ("a1", "a2"), ("b1", "b2"),
                      ("a2", "out"), ("b2", "out")])
    return g


def test_chain_view_is_strictly_worse_on_a_dag() -> None:
    g = chain_loses_graph()
    bw = 1e6  # 125 kB/s: the raw input costs 1.6 s, s 16 ms, a2 0.08 ms
    best = partition.dsl(g, bw)
    assert set(best.edge_nodes) == {"x", "s", "a1", "a2"} and best.transfer == ("s", "a2")
    assert rel_close(best.predicted.latency_s, 0.004 + 2010 * 8 / bw + 0.003)
    chain = partition.neurosurgeon(g, bw)
    assert chain.predicted.latency_s > 5 * best.predicted.latency_s
    assert rel_close(best.predicted.latency_s, partition.brute_force(g, bw).predicted.latency_s)


def test_a_tensor_read_by_several_cloud_nodes_is_paid_once() -> None:
    g = nx.DiGraph(model="toy", fingerprint="f", inputs=["x"])
    g.add_node("x", op="input", edge_time_s=0, cloud_time_s=0, output_bytes=10**6)
    g.add_node("s", op="stem", edge_time_s=0.001, cloud_time_s=0.001, output_bytes=1000)
    for i in range(4):
        g.add_node(f"b{i}", op="conv", edge_time_s=0.05, cloud_time_s=0.001, output_bytes=10**5)
        g.add_edge("s", f"b{i}")
    g.add_edge("x", "s")
    bw = 8e6  # 1 MB/s: the stem's output costs 1 ms once, 4 ms if paid per consumer
    plan = partition.dsl(g, bw)
    assert plan.edge_nodes == ("s", "x") and plan.transfer == ("s",)
    assert rel_close(plan.predicted.transfer_s, 0.001)
    assert rel_close(plan.predicted.latency_s, 0.001 + 0.001 + 0.004)


def test_plan_json_is_the_design_document() -> None:
    g = chain_loses_graph()
    plan = partition.dsl(g, 5.85e6, workers=2).stamped(7, 123.0)
    doc = plan.to_json()
    for key in ("plan_id", "algorithm", "fingerprint", "edge_nodes", "transfer", "predicted",
                "bandwidth_bps", "created_at"):
        assert key in doc
    assert set(doc["predicted"]) == {"edge_s", "transfer_s", "cloud_s", "latency_s",
                                     "throughput_fps", "wait_s"}
    assert partition.Plan.from_json(doc) == plan


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (lambda g: g.add_edge("out", "x"), "predecessors|cycle"),
        (lambda g: g.add_edge("out", "a1"), "cycle"),
        (lambda g: g.nodes["a1"].update(edge_time_s=-1), ">= 0"),
        (lambda g: g.nodes["a1"].update(cloud_time_s=math.nan), ">= 0"),
        (lambda g: g.graph.update(inputs=[]), "inputs"),
        (lambda g: g.graph.update(inputs=["nope"]), "not a node"),
        (lambda g: g.nodes["a1"].pop("output_bytes"), "lacks"),
    ],
)
def test_bad_cost_graphs_are_refused(bad, message: str) -> None:
    g = chain_loses_graph()
    bad(g)
    for algorithm in partition.ALGORITHMS:
        with pytest.raises(CostGraphError, match=message):
            partition.solve(g, algorithm, 1e6)


@pytest.mark.parametrize("bw", [0.0, -1.0, math.nan, math.inf])
def test_bad_bandwidth_is_refused(bw: float) -> None:
    with pytest.raises(CostGraphError, match="bandwidth"):
        partition.dsl(chain_loses_graph(), bw)


def test_brute_force_refuses_large_graphs() -> None:
    g = nx.DiGraph(model="big", fingerprint="f", inputs=["v0"])
    for i in range(40):
        g.add_node(f"v{i}", op="op", edge_time_s=0.001, cloud_time_s=0.001, output_bytes=1)
        if i:
            g.add_edge("v0", f"v{i}")
    with pytest.raises(CostGraphError, match="use dsl"):
        partition.brute_force(g, 1e6)
    assert partition.dsl(g, 1e6).algorithm == "dsl"


def test_workers_must_be_positive() -> None:
    with pytest.raises(CostGraphError, match="workers"):
        partition.dsh(chain_loses_graph(), 1e6, 0)
    to_json(chain_loses_graph())


@PROPS
@given(cost_graphs(), st.lists(st.floats(1e3, 1e11), min_size=1, max_size=8))
def test_bandwidth_map_agrees_with_dsl(g: nx.DiGraph, probes: list[float]) -> None:
    bmap = bandwidth_map(g)
    segs = bmap.segments
    assert segs and segs[0].min_bps == pytest.approx(1e3) and segs[-1].max_bps == pytest.approx(1e11)
    for a, b in zip(segs, segs[1:], strict=False):
        assert a.max_bps == pytest.approx(b.min_bps, rel=1e-12)
        assert a.transfer_bytes <= b.transfer_bytes  # more bandwidth, more sent
    assert bmap.solves <= 2 * len(segs) + 1
    for bw in probes + bmap.breakpoints_bps:
        want = partition.dsl(g, bw).predicted.latency_s
        assert rel_close(bmap.latency_s(bw), want), (bw, bmap.latency_s(bw), want)
        seg = bmap.lookup(bw)
        assert rel_close(partition.evaluate(g, seg.edge_nodes, bw).latency_s, want)
