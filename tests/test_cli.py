from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli import main

TOY = "tests.toy_models:branchy"


def test_help_reads_well() -> None:
    out = subprocess.run([sys.executable, "-m", "cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for word in ("profile", "split-check", "costgraph", "examples:", "cloud-worker", "testbed"):
        assert word in out


def test_help_and_ctl_start_without_torch() -> None:
    """Only the chosen service's options are built: `dads --help` and `dads ctl` stay light."""
    probe = ("import sys; import cli\n"
             "for argv in (['--help'], ['ctl', '--help'], ['planner', '--help']):\n"
             "    try: cli.main(argv)\n"
             "    except SystemExit: pass\n"
             "    print(argv[0], 'torch' in sys.modules, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stderr.split("\n")[:2] == ["--help False", "ctl False"]
    assert "--tick" in out.stdout  # the chosen service's own options are all there


def test_profile_plot_and_costgraph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prof = tmp_path / "p.json"
    assert main(["profile", TOY, "--input-shape", "1,3,32,32", "--device", "cpu", "--repeats", "2",
                 "--warmup", "1", "--out", str(prof), "--plot", str(tmp_path / "fig")]) == 0
    assert json.loads(prof.read_text())["format"] == "dads-profile/1"
    figs = sorted(p.name for p in (tmp_path / "fig").iterdir())
    assert figs == ["tests.toy_models:branchy-latency.png", "tests.toy_models:branchy-output-size.png"]
    assert all((tmp_path / "fig" / f).stat().st_size > 10_000 for f in figs)
    costs = tmp_path / "c.json"
    assert main(["costgraph", TOY, "--input-shape", "1,3,32,32", "--edge", str(prof),
                 "--cloud", str(prof), "--out", str(costs)]) == 0
    assert json.loads(costs.read_text())["graph"]["inputs"] == ["frame"]  # the served graph
    # the same profile refused for a model of another input shape
    assert main(["costgraph", TOY, "--input-shape", "1,3,16,16", "--edge", str(prof),
                 "--cloud", str(prof)]) == 2
    assert "re-profile" in capsys.readouterr().err


def test_split_check_reports_every_cut(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["split-check", TOY, "--input-shape", "1,3,16,16", "--cuts", "5"]) == 0
    out = capsys.readouterr().out
    assert "cloud-only" in out and "edge-only" in out and "7/7 cuts exact" in out


def test_errors_say_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["split-check", "resnet19"]) == 2
    assert "unknown model 'resnet19'" in capsys.readouterr().err
    assert main(["split-check", "resnet18", "--input-shape", "1,7"]) == 2
    assert "N,3,H,W" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["profile", "resnet18", "--input-shape", "1,a"])
    assert "is not a shape" in capsys.readouterr().err


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


def test_codecs_fidelity_table_and_plans_with_codecs(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_codec_runtime import smooth_images

    images = smooth_images(tmp_path / "img", 4)
    table = tmp_path / "fid.json"
    shape = ["--input-shape", "1,3,32,32"]
    assert main(["codecs", TOY, *shape, "--images", str(images), "--nodes", "2",
                 "--out", str(table)]) == 0
    out = capsys.readouterr().out
    assert "png" in out and "weak signal" in out
    doc = json.loads(table.read_text())
    assert doc["images"] == 4
    assert doc["codecs"]["png"]["rel_error"] == 0.0  # lossless is exact
    assert doc["codecs"]["zstd"]["top1_agreement"] == 1.0
    assert doc["codecs"]["jpeg75"]["lossy"] and len(doc["codecs"]["int8"]["cuts"]) == 2
    base = ["plan", TOY, *shape, "--images", str(images), "--bandwidth", "50kbit", "--edge-slowdown", "1000",
            "--cloud-speedup", "100", "--json"]
    plans = {}
    for policy in (["--fidelity", "lossless"], ["--fidelity", "any"], ["--codecs", "none"],
                   ["--fidelity", "top1:0.99", "--fidelity-table", str(table)]):
        assert main(base + policy) == 0
        plans[policy[1]] = json.loads(capsys.readouterr().out)
    assert set(plans["lossless"].get("codecs", {}).values()) <= {"raw", "png", "zstd"}
    assert "codecs" not in plans["none"]
    assert set(plans["any"]["codecs"].values()) - {"raw"}  # something crosses encoded
    admitted = {n for n, row in doc["codecs"].items() if row["top1_agreement"] >= 0.99}
    assert set(plans["top1:0.99"].get("codecs", {}).values()) <= admitted | {"raw"}
    assert plans["lossless"]["predicted"]["latency_s"] <= plans["none"]["predicted"]["latency_s"]


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
            "--links", "20kbit,100mbit", "--tier-speedup", "device=0.0001", "--images",
            str(images), "--top", "3", "--json"]
    plans = {}
    for policy in ("lossless", "none"):
        assert main([*base, *(["--codecs", "none"] if policy == "none" else [])]) == 0
        plans[policy] = json.loads(capsys.readouterr().out)["placements"][0]
    assert plans["none"]["codecs"] == {}
    assert set(plans["lossless"]["codecs"].values()) - {"raw"} <= {"png", "zstd"}
    assert plans["lossless"]["codecs"]  # a slow device, a 20 kbit/s uplink: the frame crosses encoded
    assert plans["lossless"]["latency_s"] < plans["none"]["latency_s"]
    assert plans["lossless"]["link_bytes"][0] < plans["none"]["link_bytes"][0]
    assert main(base[:-1]) == 0
    assert "encoded: " in capsys.readouterr().out
