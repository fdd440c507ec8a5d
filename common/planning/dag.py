"""Cuts of a DAG, as plain graph facts: no torch, no costs.

A *cut* is the edge side E: a set of nodes closed under predecessors that holds every input
(`G.graph["inputs"]`). The model graph (for splitting) and the cost graph (for planning) are both
networkx DiGraphs in the same node order, so one definition of "valid cut" and of "which tensors
cross" serves both, and a cut written by one tool means the same nodes to every other.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

import networkx as nx

from common.errors import InvalidCut

__all__ = ["inputs_of", "check_cut", "transfer", "ancestors_cut", "layer_order", "random_cut",
           "closed_sets", "needed_by", "exits"]


def inputs_of(g: nx.DiGraph) -> list[str]:
    return list(g.graph.get("inputs", []))


def check_cut(g: nx.DiGraph, edge_nodes: Iterable[str]) -> frozenset[str]:
    """Return `edge_nodes` as a frozenset, or raise InvalidCut naming the first offending node."""
    edge = frozenset(edge_nodes)
    for v in sorted(edge):
        if v not in g:
            raise InvalidCut(f"unknown node {v!r} in the edge set", node=v)
    for v in inputs_of(g):
        if v not in edge:
            raise InvalidCut(f"input {v!r} must run on the edge", node=v)
    for v in g:  # graph order: the first offender in execution order
        if v in edge:
            for u in g.predecessors(v):
                if u not in edge:
                    raise InvalidCut(
                        f"node {v!r} is on the edge but its input {u!r} is on the cloud "
                        "(data never flows back from cloud to edge)",
                        node=v,
                    )
    return edge


def transfer(g: nx.DiGraph, edge: frozenset[str] | set[str]) -> list[str]:
    """Nodes on the edge whose output a cloud node consumes, in graph order (= wire order)."""
    return [v for v in g if v in edge and any(w not in edge for w in g.successors(v))]


def ancestors_cut(g: nx.DiGraph, nodes: Iterable[str]) -> frozenset[str]:
    """The smallest cut holding `nodes`: them, their ancestors and the inputs."""
    edge = set(inputs_of(g))
    for v in nodes:  # ancestor sets are transitively closed, inputs have none
        edge.add(v)
        edge |= nx.ancestors(g, v)
    return frozenset(edge)


def layer_order(g: nx.DiGraph) -> list[str]:
    """The chain view's order: inputs first, then a topological order that follows the graph's
    own node order (the order the layers were traced in). Its prefixes are the single cut points
    of Neurosurgeon-style planners."""
    position = {v: i for i, v in enumerate(g)}
    order = list(nx.lexicographical_topological_sort(g, key=position.__getitem__))
    inputs = set(inputs_of(g))
    return [v for v in order if v in inputs] + [v for v in order if v not in inputs]


def random_cut(g: nx.DiGraph, rng: random.Random) -> frozenset[str]:
    """A random valid cut: a random-length prefix of a random topological order.

    Growing the prefix by a uniformly chosen ready node reaches cuts whose frontier holds several
    tensors (parallel branches), not only the single-tensor cuts of a chain view.
    """
    indeg = {v: g.in_degree(v) for v in g}
    ready = [v for v in g if indeg[v] == 0]
    order: list[str] = []
    while ready:
        v = ready.pop(rng.randrange(len(ready)))
        order.append(v)
        for w in g.successors(v):
            indeg[w] -= 1
            if indeg[w] == 0:
                ready.append(w)
    edge = set(inputs_of(g))
    edge |= set(order[: rng.randint(0, len(order))])
    return ancestors_cut(g, edge)


def closed_sets(g: nx.DiGraph) -> Iterator[frozenset[str]]:
    """Every valid cut, once each (exponential: for brute force on small graphs only)."""
    order = list(nx.topological_sort(g))
    inputs = set(inputs_of(g))
    preds = {v: list(g.predecessors(v)) for v in order}

    def rec(i: int, chosen: set[str]) -> Iterator[frozenset[str]]:
        if i == len(order):
            yield frozenset(chosen)
            return
        v = order[i]
        can_take = all(u in chosen for u in preds[v])
        if can_take:
            chosen.add(v)
            yield from rec(i + 1, chosen)
            chosen.discard(v)
        if v not in inputs:
            yield from rec(i + 1, chosen)

    yield from rec(0, set())


def needed_by(g: nx.DiGraph, node: str) -> nx.DiGraph:
    """The sub-DAG `node` needs: it and its ancestors, attributes and graph attributes kept
    (`inputs` only those it reads). An early exit's plan runs only this."""
    if node not in g:
        raise InvalidCut(f"{node!r} is not a node of the graph", node)
    keep = nx.ancestors(g, node) | {node}
    sub = g.subgraph(keep).copy()
    sub.graph["inputs"] = [v for v in g.graph.get("inputs", []) if v in keep]
    return sub


def exits(g: nx.DiGraph) -> list[tuple[str, float]]:
    """(node, accuracy) of every early exit the cost graph marks, most accurate first."""
    marked = [(v, float(d["exit"])) for v, d in g.nodes(data=True) if d.get("exit") is not None]
    return sorted(marked, key=lambda e: (-e[1], e[0]))
