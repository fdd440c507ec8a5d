"""Early exits (Edgent): exit selection against brute force, exact split for one exit, and the
trained digits example."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from common.model import exits
from common.model.graph import trace
from common.model.models import Preprocess, load_model, load_served
from common.model.split import split_graph
from common.planning import dag, partition
from common.planning.costgraph import validate
from tests.strategies import bandwidths, cost_graphs
from tests.test_partition import PROPS


@st.composite
def exit_graphs(draw: st.DrawFn) -> nx.DiGraph:
    """Random cost graphs with 1-3 of their nodes marked as exits, each with an accuracy."""
    g = draw(cost_graphs(min_nodes=3, max_nodes=11))
    candidates = [v for v in g if v not in g.graph["inputs"]]
    marked = draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=3, unique=True))
    for v in marked:
        g.nodes[v]["exit"] = draw(st.floats(0.5, 1.0))
    return g


def brute_edgent(g: nx.DiGraph, bw: float, goal: float) -> tuple[str, float] | None:
    """Independently: every exit, most accurate first; every cut of what it needs."""
    for node, _ in sorted(((v, d["exit"]) for v, d in g.nodes(data=True) if "exit" in d),
                          key=lambda e: (-e[1], e[0])):
        sub = dag.needed_by(g, node)
        best = min(partition.evaluate(sub, cut, bw).latency_s for cut in dag.closed_sets(sub))
        if best <= goal:
            return node, best
    return None


@PROPS
@given(exit_graphs(), bandwidths, st.floats(0.001, 0.2))
def test_edgent_is_the_brute_force_choice(g: nx.DiGraph, bw: float, goal: float) -> None:
    validate(g)
    plan = partition.edgent(g, bw, goal)
    want = brute_edgent(g, bw, goal)
    if want is None:
        assert plan is None
        fast = partition.fastest_exit(g, bw)
        assert fast.predicted.latency_s > goal
        return
    assert plan is not None and plan.exit == want[0]
    assert math.isclose(plan.predicted.latency_s, want[1], rel_tol=1e-7, abs_tol=1e-12)
    sub = dag.needed_by(g, plan.exit)
    assert set(plan.edge_nodes) <= set(sub) and dag.check_cut(sub, plan.edge_nodes)
    assert plan.extra["accuracy"] == g.nodes[plan.exit]["exit"]
    doc = plan.to_json()
    assert doc["exit"] == plan.exit and partition.Plan.from_json(doc).exit == plan.exit


def test_a_goal_nothing_meets_and_bad_goals() -> None:
    g = nx.DiGraph(model="m", fingerprint="f" * 32, inputs=["x"])
    g.add_node("x", op="input", edge_time_s=0.0, cloud_time_s=0.0, output_bytes=1000)
    g.add_node("a", op="conv", edge_time_s=0.5, cloud_time_s=0.05, output_bytes=10, exit=0.8)
    g.add_node("b", op="conv", edge_time_s=1.0, cloud_time_s=0.1, output_bytes=10, exit=0.9)
    g.add_edges_from([("x", "a"), ("a", "b")])
    assert partition.edgent(g, 1e3, 0.1) is None  # 1000 B at 1 kbit/s: 8 s; edge: 0.5 s
    assert partition.fastest_exit(g, 1e3).exit == "a"
    assert partition.edgent(g, 1e9, 10.0).exit == "b"  # the most accurate fits: take it
    assert partition.edgent(g, 1e3, 0.6).exit == "a"  # only the early exit, on the edge
    with pytest.raises(ValueError, match="latency goal"):
        partition.edgent(g, 1e9, -1.0)
    g.remove_node("b")
    g.nodes["a"].pop("exit")
    with pytest.raises(ValueError, match="no early exit"):
        partition.edgent(g, 1e9, 1.0)


def test_split_for_an_exit_is_exact_and_runs_only_what_it_needs() -> None:
    import random

    model = load_served("digits_exits").eval()
    x = torch.randint(0, 256, (1, 3, exits.SIDE, exits.SIDE), dtype=torch.uint8)
    graph = trace(model, x, "digits_exits")
    assert len(graph.outputs) == 3
    with torch.no_grad():
        refs = model(x)
    rng = random.Random(0)
    for i, node in enumerate(graph.outputs):
        sub = dag.needed_by(graph.dag, node)
        others = set(graph.outputs) - {node} - set(sub)
        cuts = [frozenset(graph.inputs), frozenset(sub)] + [dag.random_cut(sub, rng)
                                                             for _ in range(6)]
        for cut in cuts:
            edge, cloud = split_graph(graph, cut, node)
            ran = {n.name for n in cloud.gm.graph.nodes} | {n.name for n in edge.gm.graph.nodes}
            assert not ran & others  # another exit's head never runs
            with torch.no_grad():
                assert torch.equal(cloud(*edge(x)), refs[i])


def test_trained_exits_are_accurate_and_load_as_served(tmp_path) -> None:
    trained = exits.train(epochs=6)
    acc = trained.exit_accuracy
    assert len(acc) == 3 and all(0.5 < a <= 1.0 for a in acc), acc  # real digits, 10 classes
    assert acc[2] >= acc[0]  # the deeper exit is the better one
    path = exits.save(trained, tmp_path / "d.pth")
    assert exits.load_accuracy(path) == pytest.approx(acc)
    served = load_served("digits_exits", str(path))
    frames, labels = exits.digits_frames()
    _, test = exits.split_indices(len(labels))
    assert exits.exit_accuracy(served, frames[test], labels[test]) == pytest.approx(acc)
    bare = load_model("digits_exits", str(path))
    assert isinstance(Preprocess(bare).model, exits.DigitsExits)
    graph = trace(served, frames[:1], "digits_exits")
    exits.mark_exits(graph.dag, graph.outputs, acc)
    assert dag.exits(graph.dag)[0] == (graph.outputs[2], pytest.approx(acc[2]))
