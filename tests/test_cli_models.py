"""`dads profile`, `split-check`, `codecs` (cli/models.py): as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import main

TOY = "tests.toy_models:branchy"


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


def test_predict_a_profile_from_others(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`dads predict`: fitted on a profiled model, a profile of the served graph, marked
    predicted, that covers every node."""
    out = tmp_path / "predicted.json"
    assert main(["predict", TOY, "--from", TOY, "--out", str(out)]) == 0
    assert f"{TOY}: predicted" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["predicted"] is True and "frame" in doc["node_times_s"]
