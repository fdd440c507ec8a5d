"""Latency predictors (Edgent): shape features, the per-kind regressions, predicted profiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common.model.features import node_features
from common.model.graph import trace
from common.planning import predict
from tests.toy_models import branchy


def test_features_are_the_shapes_edgent_uses() -> None:
    graph = trace(branchy(), torch.randn(1, 3, 32, 32), "branchy")
    feats = node_features(graph)
    assert set(feats) == set(graph.nodes)
    modules = dict(graph.module.named_modules())
    fx_nodes = {n.name: n for n in graph.module.graph.nodes}
    convs = [v for v, (kind, _) in feats.items() if kind == "conv2d"]
    assert convs
    for v in convs:
        conv = modules[str(fx_nodes[v].target)]
        out = math.prod(graph.nodes[v].spec.shape)
        k = math.prod(conv.kernel_size)
        assert feats[v][1]["macs"] == out * conv.in_channels // conv.groups * k
        assert feats[v][1]["param_bytes"] == sum(p.numel() * 4 for p in conv.parameters())
        assert feats[v][1]["out_elems"] == out


def _samples(rng: np.random.Generator, n: int) -> list[predict.Sample]:
    """Times that follow a known law per kind (plus 5% noise): conv ~ macs, relu ~ elements."""
    out = []
    for _ in range(n):
        macs, elems = rng.uniform(1e5, 1e9), rng.uniform(1e3, 1e7)
        noise = rng.uniform(0.95, 1.05)
        out.append(("conv2d", {"macs": macs, "in_elems": elems, "out_elems": elems,
                               "param_bytes": 4e4}, (2e-6 + 1e-10 * macs) * noise))
        out.append(("relu", {"macs": elems, "in_elems": elems, "out_elems": elems,
                             "param_bytes": 0.0}, (1e-6 + 2e-10 * elems) * noise))
    out.append(("rare", {"macs": 1e6, "in_elems": 1e6, "out_elems": 1e6, "param_bytes": 0}, 1e-4))
    return out


def test_fit_recovers_the_law_and_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(0)
    pred = predict.fit(_samples(rng, 60), device="cpu-x", models=["a", "b"])
    assert set(pred.coefficients) == {"conv2d", "relu", predict.ANY}  # "rare": too few samples
    conv = {"macs": 5e8, "in_elems": 1e5, "out_elems": 1e5, "param_bytes": 4e4}
    assert pred.node_time("conv2d", conv) == pytest.approx(2e-6 + 5e-2, rel=0.08)
    assert pred.node_time("relu", {"in_elems": 1e6, "out_elems": 1e6, "macs": 1e6}) == \
        pytest.approx(1e-6 + 2e-4, rel=0.08)
    assert pred.node_time("rare", conv) >= 0  # an unseen kind: the overall regression
    assert all(c >= 0 for coef in pred.coefficients.values() for c in coef)
    back = predict.Predictor.load(pred.save(tmp_path / "p.json"))
    assert back == pred
    times = back.predict({"x": ("input", {}), "c": ("conv2d", conv)})
    assert times["x"] == 0.0 and times["c"] > 0


def test_fit_refuses_nothing_to_learn_from() -> None:
    with pytest.raises(ValueError, match="no samples"):
        predict.fit([("input", {}, 0.0)])
    with pytest.raises(ValueError, match="dads-predictor"):
        predict.Predictor.from_json({"format": "something else"})
