from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.fx as fx

from common.errors import ModelLoadError
from common.model.graph import trace
from common.model.models import ZOO, example_input, load_model
from common.model.split import split
from common.planning.costgraph import describe_mismatch
from tests.toy_models import TwoInputs


def toy_graph():
    m = TwoInputs().eval()
    return trace(m, (torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)), name="two_inputs")


def test_nodes_are_the_fx_names_with_sizes() -> None:
    g = toy_graph()
    fx_names = [n.name for n in fx.symbolic_trace(TwoInputs()).graph.nodes if n.op != "output"]
    assert list(g.nodes) == fx_names
    assert g.inputs == ["a", "b"]
    conv = g.nodes["conv_a"]
    assert conv.op == "conv2d" and conv.spec.shape == (2, 8, 8, 8)
    assert conv.output_bytes == 2 * 8 * 8 * 8 * 4
    chunk = g.nodes["chunk"]
    assert chunk.spec.kind == "tuple" and chunk.spec.num_tensors == 2
    assert chunk.output_bytes == conv.output_bytes
    assert g.nodes["scale"].op == "get_attr"
    assert g.nodes["size"].spec.kind == "int" and g.nodes["size"].output_bytes == 8
    add = g.nodes["add"]
    assert set(add.inputs) == {"relu", "conv_b"}  # several inputs
    assert set(g.dag.predecessors("add")) == {"relu", "conv_b"}
    assert g.dag.graph["inputs"] == ["a", "b"] and g.dag.graph["fingerprint"] == g.fingerprint


def test_fingerprint_covers_structure_and_weights() -> None:
    a = trace(load_model("resnet18", seed=0), example_input("resnet18"), "resnet18")
    b = trace(load_model("resnet18", seed=0), example_input("resnet18", seed=3), "resnet18")
    assert a.fingerprint == b.fingerprint  # input values don't matter
    w = trace(load_model("resnet18", seed=7), example_input("resnet18"), "resnet18")
    assert w.fingerprint != a.fingerprint  # weights' values do: a worker must refuse the edge
    assert w.fingerprint[:16] == a.fingerprint[:16]  # ...and can say it is only the weights
    assert "--seed" in describe_mismatch(a.fingerprint, w.fingerprint)
    c = trace(load_model("resnet18"), example_input("resnet18", (1, 3, 160, 160)), "resnet18")
    assert c.fingerprint[:16] != a.fingerprint[:16]  # activation shapes do: costs differ
    d = trace(load_model("resnet50"), example_input("resnet50"), "resnet50")
    assert d.fingerprint != a.fingerprint
    assert "--model" in describe_mismatch(a.fingerprint, d.fingerprint)


class MakesConstants(torch.nn.Module):
    """Creates a tensor inside forward: fx stores it on the root as `_tensor_constantN`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tensor([2.0]) + torch.tensor([1.0])


def test_tracing_twice_names_nodes_alike() -> None:
    model = MakesConstants()
    x = torch.randn(1, 3)
    first, second = trace(model, x), trace(model, x)
    assert list(first.nodes) == list(second.nodes)
    assert any(n.startswith("_tensor_constant") for n in first.nodes)
    assert first.fingerprint == second.fingerprint
    assert not [k for k in vars(model) if k.startswith("_tensor_constant")]  # left as found
    edge = [n for n in first.nodes if n in ("x", "_tensor_constant0", "mul")]
    split(model, x, edge)  # a cut taken from one trace is valid for a split of another
    assert torch.equal(second.module(x), model(x))


def test_random_weights_are_reproducible() -> None:
    a, b = load_model("squeezenet1_0"), load_model("squeezenet1_0")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = load_model("squeezenet1_0", seed=1)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_weights_from_a_local_file(tmp_path: Path) -> None:
    src = load_model("googlenet", seed=3)
    state = src.state_dict()
    state["aux1.conv.conv.weight"] = torch.zeros(1)  # checkpoints carry the training heads
    path = tmp_path / "g.pth"
    torch.save({"state_dict": state}, path)
    got = load_model("googlenet", weights=str(path))
    assert all(torch.equal(p, q) for p, q in zip(src.parameters(), got.parameters(), strict=True))
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_model("googlenet", weights=str(tmp_path / "bad.pth"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model("googlenet", weights=str(tmp_path / "missing.pth"))


def test_user_model_by_import_path() -> None:
    m = load_model("tests.toy_models:branchy")
    assert type(m).__name__ == "Branchy" and not m.training
    with pytest.raises(ModelLoadError, match="cannot import"):
        load_model("tests.toy_models:nope")
    with pytest.raises(ModelLoadError, match="unknown model"):
        load_model("resnet19")


def test_zoo_lists_the_required_models() -> None:
    required = {"alexnet", "vgg16", "resnet18", "resnet50", "googlenet", "inception_v3",
                "mobilenet_v2", "mobilenet_v3_large", "densenet121", "efficientnet_b0",
                "regnet_y_400mf", "shufflenet_v2_x1_0", "squeezenet1_0", "convnext_tiny",
                "vit_b_16", "swin_t"}
    assert required <= set(ZOO)
