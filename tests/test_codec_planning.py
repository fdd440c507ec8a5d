"""Planning with codecs: the cut and every crossing tensor's codec chosen together, exactly."""

from __future__ import annotations

import itertools
import json

import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import CostGraphError
from common.planning import costgraph, dag, partition
from common.planning.bwmap import bandwidth_map
from tests.strategies import bandwidths, codec_graphs
from tests.test_partition import PROPS, assert_valid, rel_close


def brute(g: nx.DiGraph, bw: float, k: int, names: frozenset[str], objective: str) -> float:
    """Independently of partition: every cut x every codec of every crossing tensor."""
    spb = 8.0 / bw
    best = float("inf")
    for edge in dag.closed_sets(g):
        crossing = dag.transfer(g, edge)
        base_e = sum(g.nodes[v]["edge_time_s"] for v in edge)
        base_c = sum(d["cloud_time_s"] for v, d in g.nodes(data=True) if v not in edge)
        opts = [[(g.nodes[v]["output_bytes"], 0.0, 0.0)]
                + [(c["bytes"], c["encode_s"], c["decode_s"])
                   for c in g.nodes[v].get("codecs", []) if c["name"] in names]
                for v in crossing]
        for combo in itertools.product(*opts):
            e = base_e + sum(o[1] for o in combo)
            c = base_c + sum(o[2] for o in combo)
            t = sum(o[0] for o in combo) * spb
            best = min(best, e + t + c if objective == "latency" else max(e, t, c / k))
    return best


@PROPS
@given(codec_graphs(), bandwidths, st.sampled_from(["lossless", "all", "none"]))
def test_dsl_with_codecs_is_the_brute_force_optimum(g: nx.DiGraph, bw: float, policy: str) -> None:
    names = costgraph.allowed(g, policy)
    plan = partition.dsl(g, bw, codecs=policy)
    assert_valid(g, plan)
    assert set(plan.codecs) == (set(plan.transfer) if names else set())
    assert set(plan.codecs.values()) <= names | {"raw"}
    assert rel_close(plan.predicted.latency_s, brute(g, bw, 1, names, "latency"), 1e-7)
    assert rel_close(partition.brute_force(g, bw, codecs=policy).predicted.latency_s,
                     plan.predicted.latency_s, 1e-7)
    # never slower than raw: raw is always one of the options
    assert plan.predicted.latency_s <= partition.dsl(g, bw, codecs="none").predicted.latency_s * (
        1 + 1e-7)
    for baseline in ("neurosurgeon", "edge_only", "cloud_only", "dsh"):
        other = partition.solve(g, baseline, bw, codecs=policy)
        assert_valid(g, other)
        assert other.predicted.latency_s >= plan.predicted.latency_s * (1 - 1e-7)


@PROPS
@given(codec_graphs(max_nodes=8), bandwidths, st.integers(1, 3))
def test_exact_throughput_with_codecs_is_the_brute_force_optimum(g: nx.DiGraph, bw: float,
                                                                 k: int) -> None:
    names = costgraph.allowed(g, "all")
    opt = brute(g, bw, k, names, "throughput")
    exact = partition.exact_throughput(g, bw, k, codecs="all")
    assert_valid(g, exact)
    largest = max([max(d["edge_time_s"], d["cloud_time_s"] / k, d["output_bytes"] * 8.0 / bw)
                   for _, d in g.nodes(data=True)]
                  + [max(c["encode_s"], c["decode_s"], c["bytes"] * 8.0 / bw)
                     for _, d in g.nodes(data=True) for c in d.get("codecs", [])])
    assert exact.predicted.bottleneck_s <= opt * (1 + 1e-6) + 1e-6 * largest + 1e-12
    assert rel_close(partition.brute_force(g, bw, k, "throughput", codecs="all")
                     .predicted.bottleneck_s, opt, 1e-7)
    heur = partition.dsh(g, bw, k, codecs="all")
    assert_valid(g, heur)
    assert heur.predicted.bottleneck_s <= 3 * opt * (1 + 1e-9) + 1e-12


@PROPS
@given(codec_graphs(), st.sampled_from(["lossless", "all"]))
def test_bandwidth_map_with_codecs_is_dsl_everywhere(g: nx.DiGraph, policy: str) -> None:
    from common.planning.mincut import CutSolver

    m = bandwidth_map(g, 1e4, 1e10, solver=CutSolver(g, costgraph.allowed(g, policy)))
    for bw in (1e4, 3e5, 1e6, 2e7, 5e8, 1e10):
        want = partition.dsl(g, bw, codecs=policy).predicted.latency_s
        assert rel_close(m.latency_s(bw), want, 1e-7)


def small() -> nx.DiGraph:
    g = nx.DiGraph(model="m", fingerprint="f" * 32, inputs=["x"])
    g.add_node("x", op="placeholder", edge_time_s=0.0, cloud_time_s=0.0, output_bytes=150_000,
               codecs=[{"name": "png", "bytes": 100_000, "encode_s": 0.003, "decode_s": 0.001,
                        "lossy": False},
                       {"name": "jpeg90", "bytes": 20_000, "encode_s": 0.001, "decode_s": 0.001,
                        "lossy": True}])
    g.add_node("y", op="conv2d", edge_time_s=2.0, cloud_time_s=0.01, output_bytes=4000)
    g.add_edge("x", "y")
    return g


def test_the_policy_decides_what_may_be_traded() -> None:
    g = small()
    bw = 1e6  # 150 kB raw: 1.2 s; png 0.8 s; jpeg 0.16 s
    assert partition.dsl(g, bw, codecs="none").codecs == {}
    assert partition.dsl(g, bw).codecs == {"x": "png"}  # lossless by default
    assert partition.dsl(g, bw, codecs="all").codecs == {"x": "jpeg90"}
    assert partition.dsl(g, bw, codecs=["jpeg90"]).codecs == {"x": "jpeg90"}
    plan = partition.dsl(g, bw, codecs="all")
    assert plan.transfer_bytes == 20_000
    assert plan.predicted.edge_s == pytest.approx(0.001)  # the encode runs on the edge
    assert plan.predicted.cloud_s == pytest.approx(0.011)  # the decode on the cloud
    doc = json.loads(json.dumps(plan.to_json()))
    assert doc["codecs"] == {"x": "jpeg90"}
    assert partition.Plan.from_json(doc) == plan
    assert "codecs" not in partition.dsl(g, bw, codecs="none").to_json()
    with pytest.raises(CostGraphError, match="codec policy"):
        partition.dsl(g, bw, codecs="whatever")


@pytest.mark.parametrize("entries,match", [
    ("png", "list of objects"),
    ([{"name": "raw", "bytes": 1, "encode_s": 0, "decode_s": 0, "lossy": False}], "twice"),
    ([{"name": "png", "bytes": -1, "encode_s": 0, "decode_s": 0, "lossy": False}], ">= 0"),
    ([{"name": "png", "bytes": 1, "encode_s": 0, "lossy": False}], "lacks 'decode_s'"),
    ([{"name": "png", "bytes": 1, "encode_s": 0, "decode_s": 0}], "lossy"),
])
def test_bad_codec_entries_are_clear_errors(entries: object, match: str) -> None:
    g = small()
    g.nodes["y"]["codecs"] = entries
    with pytest.raises(CostGraphError, match=match):
        costgraph.validate(g)
