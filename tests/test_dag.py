from __future__ import annotations

import contextlib
import itertools
import random

import networkx as nx
import pytest

from common.errors import InvalidCut
from common.planning import dag


def diamond() -> nx.DiGraph:
    g = nx.DiGraph(inputs=["x"])
    g.add_edges_from([("x", "a"), ("x", "b"), ("a", "c"), ("b", "c"), ("c", "d")])
    return g


def test_check_cut_names_the_offending_node() -> None:
    g = diamond()
    assert dag.check_cut(g, ["x", "a"]) == {"x", "a"}
    with pytest.raises(InvalidCut, match="'c'.*'b'") as err:
        dag.check_cut(g, ["x", "a", "c"])
    assert err.value.node == "c"
    with pytest.raises(InvalidCut, match="input 'x'"):
        dag.check_cut(g, ["a"])
    with pytest.raises(InvalidCut, match="unknown node 'zz'"):
        dag.check_cut(g, ["x", "zz"])


def test_transfer_is_in_graph_order_and_pays_each_tensor_once() -> None:
    g = diamond()
    assert dag.transfer(g, {"x"}) == ["x"]  # x feeds a and b: one crossing
    assert dag.transfer(g, {"x", "b", "a"}) == ["a", "b"]
    assert dag.transfer(g, set(g)) == []


def brute_closed(g: nx.DiGraph) -> set[frozenset[str]]:
    nodes = list(g)
    out = set()
    for r in range(len(nodes) + 1):
        for combo in itertools.combinations(nodes, r):
            with contextlib.suppress(InvalidCut):
                out.add(dag.check_cut(g, combo))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_closed_sets_enumerates_every_cut_once(seed: int) -> None:
    rng = random.Random(seed)
    g = nx.gn_graph(9, seed=seed).reverse()  # a random DAG with one sink
    g = nx.DiGraph(g)
    sources = [v for v in g if g.in_degree(v) == 0]
    g.graph["inputs"] = sources[:1]
    for s in sources[1:]:
        g.add_edge(sources[0], s)
    listed = list(dag.closed_sets(g))
    assert len(listed) == len(set(listed))
    assert set(listed) == brute_closed(g)
    for _ in range(20):
        assert dag.random_cut(g, rng) in set(listed)
