from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx
import pytest
import torch

from common.errors import CostGraphError, ProfileMismatch
from common.model.graph import trace
from common.model.profiler import profile_graph
from common.planning import costgraph
from common.planning.profile import Profile, cache_path, scaled
from tests.toy_models import Branchy


@pytest.fixture(scope="module")
def graph():
    return trace(Branchy().eval(), torch.randn(1, 3, 32, 32), "branchy")


@pytest.fixture(scope="module")
def profile(graph) -> Profile:
    return profile_graph(graph, "cpu", warmup=1, repeats=3, progress=False)


def test_profile_times_every_node(graph, profile: Profile) -> None:
    assert list(profile.node_times_s) == list(graph.nodes)
    assert all(t >= 0 for t in profile.node_times_s.values())
    assert profile.node_times_s["x"] == 0.0
    assert profile.node_times_s["b3"] > 0 and profile.total_s > 0
    assert profile.device.kind == "cpu" and profile.device.threads >= 1
    assert profile.input_shapes == [[1, 3, 32, 32]]


def test_profile_round_trips_and_refuses_other_models(graph, profile: Profile, tmp_path: Path) -> None:
    path = profile.save(tmp_path / "p.json")
    back = Profile.load(path)
    assert back == profile
    back.check(graph.fingerprint)
    with pytest.raises(ProfileMismatch, match="re-profile"):
        back.check("0" * 32)
    assert cache_path("a/b", "f" * 32, profile.device).name.startswith(f"a_b-{'f' * 32}-cpu-")
    with pytest.raises(ValueError, match="dads-profile/1"):
        Profile.from_json({"format": "other"})


def test_cost_graph_is_the_design_format(graph, profile: Profile, tmp_path: Path) -> None:
    g = costgraph.build(graph.dag, profile, profile, input_bytes=1234)
    doc = json.loads(costgraph.save(g, tmp_path / "c.json").read_text())
    assert doc["graph"]["model"] == "branchy"
    assert doc["graph"]["fingerprint"] == graph.fingerprint
    assert doc["graph"]["inputs"] == ["x"]
    assert "edges" in doc and "links" not in doc
    node = {n["id"]: n for n in doc["nodes"]}
    assert node["x"]["output_bytes"] == 1234  # the encoded frame, not the tensor
    assert node["stem"]["output_bytes"] == 6 * 32 * 32 * 4 and node["stem"]["op"] == "conv2d"
    assert node["b2"]["edge_time_s"] == profile.node_times_s["b2"]
    back = costgraph.load(tmp_path / "c.json")
    assert list(back) == list(g) and set(back.edges) == set(g.edges)
    other = Profile(**{**profile.__dict__, "fingerprint": "x" * 32})
    with pytest.raises(ProfileMismatch):
        costgraph.build(graph.dag, profile, other)


def _good() -> dict:
    g = nx.DiGraph(model="m", fingerprint="f", inputs=["x"])
    for v in "xab":
        g.add_node(v, op="conv2d", edge_time_s=1.0, cloud_time_s=0.5, output_bytes=10)
    g.add_edges_from([("x", "a"), ("a", "b")])
    return costgraph.to_json(g)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["nodes"][1].update(edge_time_s=-1.0), "finite and >= 0"),
        (lambda d: d["nodes"][1].update(cloud_time_s=math.nan), "finite and >= 0"),
        (lambda d: d["nodes"][1].update(output_bytes="big"), "must be a number"),
        (lambda d: d["nodes"][2].pop("edge_time_s"), "lacks 'edge_time_s'"),
        (lambda d: d["edges"].append({"source": "b", "target": "a"}), "cycle"),
        (lambda d: d["graph"].update(inputs=[]), "'inputs'"),
        (lambda d: d["graph"].update(inputs=["q"]), "not a node"),
        (lambda d: d["graph"].update(inputs=["a"]), "has predecessors"),
        (lambda d: d.update(directed=False), "directed"),
        (lambda d: d.pop("nodes"), "node-link"),
        (lambda d: d["edges"].append({"source": "b"}), "malformed"),
    ],
)
def test_bad_cost_graphs_get_clear_errors(mutate, message: str) -> None:
    doc = _good()
    costgraph.from_json(doc)
    mutate(doc)
    with pytest.raises(CostGraphError, match=message):
        costgraph.from_json(doc)


def test_digest_follows_the_numbers_not_the_clock() -> None:
    """A restarted edge with another --edge-slowdown must be planned anew (same created_at)."""
    g = trace(Branchy().eval(), torch.randn(1, 3, 16, 16), "branchy")
    prof = profile_graph(g, "cpu", warmup=1, repeats=3, progress=False)
    slower = scaled(prof, 1 / 8)
    assert slower.created_at == prof.created_at and slower.digest != prof.digest
    assert scaled(prof, 1 / 8).digest == slower.digest
