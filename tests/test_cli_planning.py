"""`dads plan` (DSL, DSH, exits, tiers), `bwmap`, `costgraph` (cli/planning.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli import main

TOY = "tests.toy_models:branchy"


@pytest.fixture
def costs_file(tmp_path: Path) -> Path:
    from common.planning import costgraph
    from tests.test_partition import chain_loses_graph

    return costgraph.save(chain_loses_graph(), tmp_path / "costs.json")


def test_plan_json_is_the_design_plan(costs_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--graph", str(costs_file), "--bandwidth", "1mbit", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["algorithm"] == "dsl" and plan["transfer"] == ["s", "a2"]
    assert plan["edge_nodes"] == ["a1", "a2", "s", "x"] and plan["bandwidth_bps"] == 1e6
    assert plan["created_at"] > 0


@pytest.mark.parametrize("algorithm", ["dsl", "dsh", "exact", "neurosurgeon", "edge_only",
                                       "cloud_only", "brute"])
def test_plan_table_for_every_algorithm(algorithm: str, costs_file: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--graph", str(costs_file), "--bandwidth", "4g", "--algorithm", algorithm,
                 "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{algorithm.upper()} plan at 5.85 Mbit/s, 2 cloud worker(s)" in out
    assert "latency" in out and "vs " in out


def test_plan_with_load_and_plot(costs_file: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    fig = tmp_path / "cut.png"
    assert main(["plan", "--graph", str(costs_file), "--bandwidth", "1mbit", "--fps", "1000",
                 "--plot", str(fig)]) == 0
    out = capsys.readouterr().out
    assert "DSH plan" in out and "overloaded" in out
    assert fig.stat().st_size > 5_000


def test_bwmap_table_json_and_plot(costs_file: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bwmap", "--graph", str(costs_file), "--plot", str(tmp_path / "m.png")]) == 0
    out = capsys.readouterr().out
    assert "optimal cuts between 10 kbit/s and 10 Gbit/s" in out
    assert (tmp_path / "m.png").stat().st_size > 10_000
    assert main(["bwmap", "--graph", str(costs_file), "--json", "--min", "cat1", "--max", "wifi"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["segments"][0]["min_bps"] == pytest.approx(0.13e6)


def test_plan_errors(costs_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["plan", "--graph", str(costs_file), "--bandwidth", "fast"])
    assert "not understood" in capsys.readouterr().err
    assert main(["plan", "--bandwidth", "4g"]) == 2
    assert "say what to plan" in capsys.readouterr().err
    assert main(["plan", "--graph", str(costs_file) + ".missing", "--bandwidth", "4g"]) == 2
    assert "cannot read cost graph" in capsys.readouterr().err


def test_plan_a_model_profiles_it_once(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["plan", TOY, "--input-shape", "1,3,16,16", "--bandwidth", "100mbit", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0  # second run reads the cached profile
    assert json.loads(capsys.readouterr().out)["fingerprint"] == first["fingerprint"]


def test_tiers_rank_placements_and_honour_constraints(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    shape = ["--input-shape", "1,3,32,32"]
    edge = tmp_path / "edge.json"
    assert main(["benchmark", TOY, *shape, "--tier", "edge", "--device", "cpu", "--repeats", "2",
                 "--warmup", "1", "--out", str(edge)]) == 0
    assert "tier 'edge' profile written" in capsys.readouterr().out
    base = ["plan", TOY, *shape, "--tiers", "device,edge,cloud", "--links", "1mbit,100mbit",
            "--tier-profile", f"edge={edge}", "--tier-speedup", "device=0.01",
            "--tier-speedup", "cloud=50", "--top", "5"]
    assert main([*base, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ranks = doc["placements"]
    assert [r["rank"] for r in ranks] == [1, 2, 3, 4, 5]
    lat = [r["latency_s"] for r in ranks]
    assert lat == sorted(lat)
    assert len({json.dumps(r["tiers"], sort_keys=True) for r in ranks}) == 5  # distinct
    assert doc["binding"] == [] and all("frame" in r["tiers"]["device"] for r in ranks)
    assert main([*base, "--exclude", "edge", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert all(not r["tiers"]["edge"] for r in doc["placements"])
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "best placement(s) over device -> edge -> cloud" in out and "binding: nothing" in out
    assert main([*base, "--pin", "nope=edge"]) == 2
    assert "no node 'nope'" in capsys.readouterr().err
    assert main([*base, "--throughput", "--workers", "2", "--json"]) == 0
    fast = json.loads(capsys.readouterr().out)
    assert fast["throughput_fps"] == pytest.approx(1.0 / fast["bottleneck_s"])
    assert fast["bottleneck_s"] <= ranks[0]["latency_s"] + 1e-12  # a stage is at most the sum
    assert sorted(v for vs in fast["placement"].values() for v in vs) == sorted(
        v for vs in ranks[0]["tiers"].values() for v in vs)  # every node placed once


def test_tiers_with_codecs_on_the_first_link(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--images: the first link's tensors may cross encoded (lossless by default: PNG frames,
    zstd activations), never slower than raw; `--codecs none` plans raw as before."""
    from tests.test_codec_runtime import smooth_images

    images = smooth_images(tmp_path / "img", 4)
    base = ["plan", TOY, "--input-shape", "1,3,32,32", "--tiers", "device,edge,cloud",
            "--links", "10kbit,100mbit", "--tier-speedup", "device=0.0001", "--images",
            str(images), "--top", "3", "--json"]
    plans = {}
    for policy in ("lossless", "none"):
        assert main([*base, *(["--codecs", "none"] if policy == "none" else [])]) == 0
        plans[policy] = json.loads(capsys.readouterr().out)["placements"][0]
    assert plans["none"]["codecs"] == {}
    assert set(plans["lossless"]["codecs"].values()) - {"raw"} <= {"png", "zstd"}
    # a slow device, a 10 kbit/s uplink: the frame crosses encoded (about 2x inside the window
    # where it does: device compute vs the frame's transfer, encode time vs the bytes it saves)
    assert plans["lossless"]["codecs"]
    assert plans["lossless"]["latency_s"] < plans["none"]["latency_s"]
    assert plans["lossless"]["link_bytes"][0] < plans["none"]["link_bytes"][0]
    assert main(base[:-1]) == 0
    assert "encoded: " in capsys.readouterr().out


BAD_INPUTS = [  # (what a user types, the words that must say what is wrong)
    ("plan {toy} --bandwidth 4g --edge-profile {notjson}", "is not JSON"),
    ("plan {toy} --bandwidth 4g --edge-profile {missing}", "No such file"),
    ("plan --graph {notjson} --tiers a,b --links 3g", "give MODEL"),
    ("plan {toy} --bandwidth 4g --fidelity top1:0.99", "fidelity table"),
    ("plan {toy} --bandwidth 4g --codecs int8", "--codecs int8: lossy"),
    ("plan {toy} --bandwidth 5MB/sec", "not understood"),
    ("plan {toy} --tiers a,b --links 3g --tier-profile a={missing}", "No such file"),
    ("plan {toy} --tiers device,edge,cloud --links 3g,wifi --exclude device",
     "the first tier reads the camera's frame"),
    ("plan {toy} --tiers device,edge,cloud --links 3g,wifi --pin frame=edge",
     "it cannot be pinned to edge"),
    ("plan {toy} --bandwidth 4g --weights {missing}", "does not exist"),
    ("plan {toy} --bandwidth 4g --weights {notjson}", "not a torch checkpoint"),
    ("codecs {toy} --images {missing}", "no such folder"),
    ("codecs {toy} --input-shape 1,3,32,32 --images {corrupt}", "could be read"),
    ("edge-agent --model {toy} --source {missing} --insecure", "does not exist"),
    ("split-check {toy} --input-shape 1,7", "N,3,H,W"),
    ("up --link tc --uplink none", "give a rate" if os.geteuid() == 0 else "needs root"),
]


@pytest.mark.parametrize("line,words", BAD_INPUTS)
def test_bad_inputs_are_one_line_and_exit_2(line: str, words: str, tmp_path: Path) -> None:
    """As typed at a shell: no traceback, exit 2, the cause in one line that names it."""
    notjson = tmp_path / "notjson.txt"
    notjson.write_text("{")
    corrupt = tmp_path / "photos"
    corrupt.mkdir()
    (corrupt / "a.jpg").write_text("not a picture")
    args = line.format(toy=TOY, notjson=notjson, missing=tmp_path / "missing.json",
                       corrupt=corrupt).split()
    run = subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [x for x in run.stderr.splitlines() if "error:" in x]
    assert len(errors) == 1 and words in errors[0], run.stderr[-2000:]


def test_bytes_per_second_are_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from common.planning import costgraph
    from tests.test_partition import chain_loses_graph

    costs = costgraph.save(chain_loses_graph(), tmp_path / "costs.json")
    assert main(["plan", "--graph", str(costs), "--bandwidth", "5MB/s", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bandwidth_bps"] == 40e6


def test_a_dads_profile_file_is_a_tier_profile(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """One graph for every command: the profile `dads profile` writes times the served graph's
    nodes, so `--tier-profile` takes it as it is."""
    shape = ["--input-shape", "1,3,32,32"]
    prof = tmp_path / "p.json"
    assert main(["profile", TOY, *shape, "--device", "cpu", "--repeats", "2", "--warmup", "1",
                 "--out", str(prof)]) == 0
    capsys.readouterr()
    assert main(["plan", TOY, *shape, "--tiers", "camera,cloud", "--links", "3g",
                 "--tier-profile", f"camera={prof}", "--tier-speedup", "cloud=10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["placements"]


def test_explore_profiles_plans_and_maps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`dads explore` (README, `dads --help`): the plan for each DADS uplink, then the map."""
    assert main(["explore", "--model", TOY, "--out", str(tmp_path / "explore")]) == 0
    out = capsys.readouterr().out
    for uplink in ("cat1", "3g", "4g", "wifi"):
        assert f"  {uplink} " in out
    assert "optimal cuts between" in out
    assert (tmp_path / "explore" / f"{TOY}-bwmap.png").stat().st_size > 10_000
