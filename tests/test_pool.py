"""Many edges, one pool: the shared plan against brute force over every edge's cuts."""

from __future__ import annotations

import math

import networkx as nx
from hypothesis import given
from hypothesis import strategies as st

from common.planning import dag, pool
from tests.strategies import bandwidths, cost_graphs
from tests.test_partition import PROPS


@st.composite
def fleets(draw: st.DrawFn, max_edges: int = 3) -> tuple[list[pool.EdgeLoad], int]:
    """Edges on different uplinks at different rates (one model or several), and a pool."""
    n = draw(st.integers(1, max_edges))
    same = draw(st.booleans())
    first = draw(cost_graphs(min_nodes=2, max_nodes=6))
    loads = [pool.EdgeLoad(f"edge{i}", first if same else draw(cost_graphs(2, 6)),
                           draw(bandwidths), draw(st.floats(0.0, 200.0)))
             for i in range(n)]
    return loads, draw(st.integers(1, 3))


def every_cut(g: nx.DiGraph, bw: float) -> list[pool.Option]:
    return [pool._option(g, cut, bw) for cut in dag.closed_sets(g)]


@PROPS
@given(fleets())
def test_shared_plan_is_the_brute_force_optimum_over_every_cut(fleet) -> None:
    loads, k = fleet
    opts = {x.name: pool.all_options(x.g, x.bandwidth_bps) for x in loads}
    want = pool.brute_force(loads, {x.name: every_cut(x.g, x.bandwidth_bps) for x in loads}, k)
    got = pool.share(loads, opts, k)
    if math.isinf(want):
        assert got.overloaded
        return
    assert not got.overloaded
    assert math.isclose(got.worst_latency_s, want, rel_tol=1e-9, abs_tol=1e-12)
    assert got.demand <= got.capacity + 1e-9
    assert all(got.choice[x.name].keeps_up(x.fps) for x in loads)


@PROPS
@given(fleets())
def test_the_price_sweep_never_beats_the_optimum_and_idles_into_dsl(fleet) -> None:
    """The heuristic options: a valid plan, no better than the exact one (a gap, measured in
    bench.many_edges); with nothing to share (no frames) every edge gets its own DSL."""
    loads, k = fleet
    exact = pool.share(loads, {x.name: pool.all_options(x.g, x.bandwidth_bps) for x in loads}, k)
    got = pool.share(loads, {x.name: pool.options(x.g, x.bandwidth_bps) for x in loads}, k)
    if not got.overloaded:
        assert got.demand <= got.capacity + 1e-9
        assert not exact.overloaded and got.worst_latency_s >= exact.worst_latency_s - 1e-12
    idle = [pool.EdgeLoad(x.name, x.g, x.bandwidth_bps, 0.0) for x in loads]
    alone = pool.independent(idle)
    shared = pool.share(idle, {x.name: pool.options(x.g, x.bandwidth_bps) for x in idle}, k)
    for x in idle:
        assert math.isclose(shared.choice[x.name].latency_s, alone[x.name].latency_s,
                            rel_tol=1e-9, abs_tol=1e-12)


def three_nodes() -> nx.DiGraph:
    """x -> a -> b: a cheap conv that shrinks the frame, then a heavier head."""
    g = nx.DiGraph(model="m", fingerprint="f" * 32, inputs=["x"])
    g.add_node("x", op="in", edge_time_s=0.0, cloud_time_s=0.0, output_bytes=1000)
    g.add_node("a", op="conv", edge_time_s=0.02, cloud_time_s=0.01, output_bytes=100)
    g.add_node("b", op="fc", edge_time_s=0.05, cloud_time_s=0.05, output_bytes=10)
    g.add_edge("x", "a")
    g.add_edge("a", "b")
    return g


def test_a_busy_pool_moves_work_back_to_the_edges() -> None:
    """Three edges, one model: alone each would send everything to the pool (DSL), together
    they would need more than it has, so the shared plan keeps part of the work on them."""
    g = three_nodes()
    loads = [pool.EdgeLoad(f"cam{i}", g, bw, 8.0) for i, bw in enumerate((1e8, 1e7, 1e6))]
    alone = pool.independent(loads)
    assert sum(o.demand(8.0) for o in alone.values()) > pool.HEADROOM * 1  # 1.44 > 0.9
    shared = pool.share(loads, {x.name: pool.options(g, x.bandwidth_bps) for x in loads}, 1)
    assert not shared.overloaded and shared.demand <= 0.9 + 1e-9
    assert any(len(o.edge_nodes) > 1 for o in shared.choice.values())
    want = pool.brute_force(loads, {x.name: every_cut(g, x.bandwidth_bps) for x in loads}, 1)
    assert math.isclose(shared.worst_latency_s, want)


@PROPS
@given(fleets())
def test_an_overloaded_fleet_gets_the_least_overload(fleet) -> None:
    """Nothing keeps up: the choice minimises the overload (the pool's demand over capacity,
    or an edge's own load), the brute-force minimum over every edge's options."""
    import itertools

    loads, k = fleet
    loads = [pool.EdgeLoad(x.name, x.g, x.bandwidth_bps, x.fps * 50 + 50) for x in loads]
    opts = {x.name: pool.all_options(x.g, x.bandwidth_bps) for x in loads}
    cap = pool.HEADROOM * k
    want = min(max(sum(o.demand(x.fps) for o, x in zip(c, loads, strict=True)) / cap,
                   max(x.fps * o.own_s for o, x in zip(c, loads, strict=True)))
               for c in itertools.product(*(opts[x.name] for x in loads)))
    rho, choice = pool.least_overload(loads, opts, cap)
    got = max(sum(o.demand(x.fps) for x in loads for o in [choice[x.name]]) / cap,
              max(x.fps * choice[x.name].own_s for x in loads))
    assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    assert got <= rho + 1e-12
    if want > 1 + 1e-9:
        assert pool.share(loads, opts, k).overloaded


def test_an_edge_no_plan_keeps_up_with_does_not_sink_the_others() -> None:
    """A camera too fast for its own device and link, whatever the plan, gets its fastest
    plan; the others share what the pool has left, as they would without it."""
    g = three_nodes()
    calm = [pool.EdgeLoad(f"cam{i}", g, bw, 8.0) for i, bw in enumerate((1e8, 1e7))]
    wild = pool.EdgeLoad("wild", g, 1e3, 100.0)  # 1 kbit/s at 100 fps: hopeless
    opts = {x.name: pool.options(g, x.bandwidth_bps) for x in [*calm, wild]}
    both = pool.share([*calm, wild], opts, 2)
    assert both.overloaded and "wild" in both.reason
    assert both.choice["wild"].own_s == min(o.own_s for o in opts["wild"])
    left = 2 - both.choice["wild"].demand(100.0) / pool.HEADROOM
    alone = pool.share(calm, opts, left)
    assert {n: both.choice[n] for n in ("cam0", "cam1")} == alone.choice
