"""Split execution is exact: for every valid cut, cloud_part(*edge_part(x)) == model(x)."""

from __future__ import annotations

import random

import pytest
import torch

from common.errors import InvalidCut
from common.model.graph import trace
from common.model.models import ZOO, example_input, load_model
from common.model.split import check_cut, cloud_part, split, split_graph, stage_part
from common.planning import dag
from tests.toy_models import Branchy, TwoInputs

TOL = 1e-5
MULTI_TENSOR = {"googlenet", "densenet121", "shufflenet_v2_x1_0", "inception_v3"}


def _tuple_cuts(graph) -> list[frozenset[str]]:
    """Cuts that put a tuple-output node on the edge and one of its readers on the cloud."""
    out = []
    for info in graph.nodes.values():
        if info.spec.kind in ("tuple", "list") and any(True for _ in graph.dag.successors(info.name)):
            out.append(dag.ancestors_cut(graph.dag, [info.name]))
    return out[:3]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_model_splits_exactly(name: str) -> None:
    graph = trace(load_model(name), example_input(name), name)
    x = graph.example_inputs
    with torch.no_grad():
        ref = graph.module(*x)
    rng = random.Random(1234)
    cuts = [frozenset(graph.inputs), frozenset(graph.nodes)]
    cuts += [dag.random_cut(graph.dag, rng) for _ in range(6)]
    cuts += _tuple_cuts(graph)
    widest = 0
    for edge in cuts:
        err = check_cut(graph, edge, x, ref)
        assert err <= TOL, f"{name}: cut of {len(edge)} nodes off by {err:.3g}"
        widest = max(widest, len(dag.transfer(graph.dag, edge)))
    if name in MULTI_TENSOR:
        assert widest >= 2, f"{name}: no checked cut carried several tensors"
    if name == "shufflenet_v2_x1_0":
        assert _tuple_cuts(graph), "shufflenet's chunk nodes must give tuple-crossing cuts"


def test_every_cut_of_a_small_dag_model_is_exact() -> None:
    model = TwoInputs().eval()
    x = (torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8))
    graph = trace(model, x, "two_inputs")
    with torch.no_grad():
        ref = model(*x)
    count = 0
    for edge in dag.closed_sets(graph.dag):
        assert check_cut(graph, edge, x, ref) <= TOL
        count += 1
    assert count == 35  # every closed set of this graph (test_dag checks the enumeration)


def test_a_workers_cloud_part_alone_is_the_same_cloud_part() -> None:
    model = TwoInputs().eval()
    x = (torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8))
    graph = trace(model, x, "two_inputs")
    with torch.no_grad():
        ref = model(*x)
    for edge in dag.closed_sets(graph.dag):
        e, c = split_graph(graph, edge)
        alone = cloud_part(graph, edge)
        assert alone.receives == c.receives == e.sends
        torch.testing.assert_close(alone(*e(*x)), ref, rtol=0, atol=0)
    with pytest.raises(InvalidCut):
        cloud_part(graph, ["nope"])


def test_every_pair_of_nested_cuts_runs_exactly_over_three_tiers() -> None:
    """Scission's middle tier: device part, stage part, cloud part, for every nested pair of
    cuts of a small DAG (tensors made on the device that the cloud reads pass through)."""
    model = TwoInputs().eval()
    x = (torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8))
    graph = trace(model, x, "two_inputs")
    with torch.no_grad():
        ref = model(*x)
    cuts = list(dag.closed_sets(graph.dag))
    pairs = 0
    for before in cuts:
        for upto in cuts:
            if not before <= upto:
                continue
            edge, _ = split_graph(graph, before)
            stage = stage_part(graph, before, upto)
            assert stage.receives == edge.sends
            with torch.no_grad():
                out = cloud_part(graph, upto)(*stage(*edge(*x)))
            torch.testing.assert_close(out, ref, rtol=0, atol=0)
            pairs += 1
    assert pairs > len(cuts)
    a, b = next((a, b) for a in cuts for b in cuts if not a <= b)
    with pytest.raises(InvalidCut, match="not nested"):
        stage_part(graph, a, b)


@pytest.mark.slow
def test_googlenet_over_three_tiers_is_exact() -> None:
    name = "googlenet"
    graph = trace(load_model(name), example_input(name), name)
    x = graph.example_inputs
    with torch.no_grad():
        ref = graph.module(*x)
    rng = random.Random(7)
    for _ in range(4):
        a, b = dag.random_cut(graph.dag, rng), dag.random_cut(graph.dag, rng)
        before, upto = a & b, a | b  # closed sets are closed under both
        edge, _ = split_graph(graph, before)
        with torch.no_grad():
            out = cloud_part(graph, upto)(*stage_part(graph, before, upto)(*edge(*x)))
        assert (out - ref).abs().max().item() <= TOL * max(1.0, ref.abs().max().item())


def test_tuple_output_crosses_as_one_tensor_per_element() -> None:
    model = TwoInputs().eval()
    x = (torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8))
    graph = trace(model, x, "two_inputs")
    edge = dag.ancestors_cut(graph.dag, ["chunk"])
    edge_part, cloud_part = split_graph(graph, edge)
    assert edge_part.sends == ("chunk",)
    sent = edge_part(*x)
    assert len(sent) == 2 and all(t.shape == (1, 4, 8, 8) for t in sent)
    torch.testing.assert_close(cloud_part(*sent), model(*x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="expects 2 tensors"):
        cloud_part(sent[0])


def test_scalars_cross_as_tensors() -> None:
    model = TwoInputs().eval()
    x = (torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8))
    graph = trace(model, x, "two_inputs")
    edge = dag.ancestors_cut(graph.dag, ["size", "chunk"])
    edge_part, cloud_part = split_graph(graph, edge)
    sent = edge_part(*x)
    assert all(isinstance(t, torch.Tensor) for t in sent)
    assert any(t.dtype == torch.int64 and t.dim() == 0 and int(t) == 3 for t in sent)
    torch.testing.assert_close(cloud_part(*sent), model(*x), rtol=0, atol=0)


def test_edge_only_and_cloud_only_with_tuple_results() -> None:
    model = Branchy().eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
    for edge in (["x"], None):
        graph = trace(model, x, "branchy")
        e, c = split(model, x, edge if edge is not None else list(graph.nodes))
        out = c(*e(x))
        assert isinstance(out, tuple)
        for a, b in zip(out, ref, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_invalid_cuts_are_rejected_with_the_node() -> None:
    model = Branchy().eval()
    x = torch.randn(1, 3, 16, 16)
    graph = trace(model, x, "branchy")
    with pytest.raises(InvalidCut) as err:
        split_graph(graph, ["x", "b1"])
    assert err.value.node == "b1" and "'relu'" in str(err.value)
    with pytest.raises(InvalidCut, match="input 'x'"):
        split_graph(graph, [])
    with pytest.raises(InvalidCut, match="unknown node"):
        split_graph(graph, ["x", "nope"])
