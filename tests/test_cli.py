from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import main

TOY = "tests.toy_models:branchy"


def test_help_reads_well() -> None:
    out = subprocess.run([sys.executable, "-m", "services.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for word in ("profile", "split-check", "costgraph", "examples:"):
        assert word in out


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
    assert json.loads(costs.read_text())["graph"]["inputs"] == ["x"]
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
    assert "does not fit the model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["profile", "resnet18", "--input-shape", "1,a"])
    assert "is not a shape" in capsys.readouterr().err
