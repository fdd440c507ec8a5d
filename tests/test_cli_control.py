"""`dads ctl` as an operator runs it, against a real planner: every control answered (applied,
with the plans it made; refused, with the planner's reason), and what cannot be answered told
apart (nothing there, a key the planner refuses, a planner key that is not the planner's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cli import main
from common.model.split import relative_error
from launch.up import free_base
from tests.system import System, read_lines, shared_cache_system, wait_lines, warm_cache


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory):
    with shared_cache_system(tmp_path_factory, workers=1,
                             planner_args=["--initial-bandwidth", "1gbit"]) as s:
        yield s


def dads(system: System | None, *args: str, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`dads ARGS` in a process of its own, as a user types it (the system's keys)."""
    extra = {} if system is None else system.env
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **extra, **(env or {})})


def test_a_plan_printed_by_dads_plan_is_pinned_as_it_is(
        system: System, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
        reference) -> None:
    """`dads plan MODEL --json` names the served graph's nodes, so the file pins as it is; the
    answer names the plan it made, and the camera's frames run it, exactly."""
    cache = {"DADS_CACHE": str(warm_cache(tmp_path_factory))}
    plan = dads(system, "plan", system.model, "--bandwidth", "10kbit", "--json", env=cache)
    assert plan.returncode == 0, plan.stderr
    doc = json.loads(plan.stdout)
    cut = tmp_path / "plan.json"
    cut.write_text(plan.stdout)
    want = len(doc["edge_nodes"])
    # the served graph's names (the frame in, the model's nodes under `model_`), as the
    # services run it; at 10 kbit/s no frame can cross in time: the whole model on the camera
    assert "frame" in doc["edge_nodes"] and "model_fc" in doc["edge_nodes"], doc["edge_nodes"]

    proc, out = system.start_edge("edge-ctl", frames=0, fps=2, extra=["--name", "edge-ctl"])
    try:
        wait_lines(system, "edge-ctl", out, proc, 2)
        ctl = ["ctl", "--planner", system.ports.telemetry]
        pinned = dads(system, *ctl, "--pin-cut", str(cut))
        assert pinned.returncode == 0, pinned.stderr
        assert f"cut pinned ({want} edge nodes): applied" in pinned.stdout, pinned.stdout
        line = next(x for x in pinned.stdout.splitlines() if x.strip().startswith("edge-ctl:"))
        assert f"pinned, {want} node(s) on the edge" in line, line
        plan_id = int(line.split("plan ")[1].split()[0])
        deadline = time.monotonic() + 60
        while not any(r["plan_id"] == plan_id for r in read_lines(out)):
            assert time.monotonic() < deadline, system.log("edge-ctl")[-2000:]
            time.sleep(0.2)
        # a refused control: non-zero, the planner's reason in one line, nothing changed
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"edge_nodes": ["frame", "avgpool"]}))  # a bare-graph name
        refused = dads(system, *ctl, "--pin-cut", str(bad))
        assert refused.returncode == 1
        assert "refused" in refused.stderr and "avgpool" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        nobody = dads(system, *ctl, "--edge", "no-such-camera", "--bandwidth", "3g")
        assert nobody.returncode == 1 and "no edge named 'no-such-camera'" in nobody.stderr
        goal = dads(system, *ctl, "--latency-goal", "30ms")  # googlenet has no early exit
        assert goal.returncode == 1 and "no edge's model has one" in goal.stderr, goal.stderr
        unpinned = dads(system, *ctl, "--unpin-cut")
        assert unpinned.returncode == 0 and "cut unpinned: applied" in unpinned.stdout
    finally:
        system.stop_edge("edge-ctl")
    served = [r for r in read_lines(out) if r["plan_id"] == plan_id and not r["dropped"]]
    assert served
    for r in served:
        assert relative_error(torch.tensor(r["output"]).reshape(1, -1),
                              reference(r["frame_id"])) <= 1e-5


def test_what_cannot_be_answered_is_told_apart(system: System, tmp_path: Path) -> None:
    """No planner at the address; keys from another `dads keys init` (the planner refuses the
    operator's key, and the planner key held is not the planner's): each a clear line, exit 2,
    without waiting out the timeout where the handshake already said why."""
    port = free_base(1)
    nothing = dads(system, "ctl", "--planner", f"tcp://127.0.0.1:{port}", "--algorithm", "dsl",
                   "--timeout", "2")
    assert nothing.returncode == 2
    assert "nothing answered at" in nothing.stderr and "is the planner running" in nothing.stderr

    other = tmp_path / "other-keys"
    assert main(["keys", "init", str(other)]) == 0
    t0 = time.monotonic()
    wrong = dads(system, "ctl", "--planner", system.ports.telemetry, "--keys", str(other),
                 "--algorithm", "dsl", "--timeout", "60")
    assert wrong.returncode == 2, wrong.stderr
    assert "handshake with the planner" in wrong.stderr and "failed" in wrong.stderr
    assert time.monotonic() - t0 < 30  # said when the handshake failed, not at the timeout

    mixed = tmp_path / "mixed-keys"  # the right planner key, an operator key it never admitted
    assert main(["keys", "init", str(mixed)]) == 0
    (mixed / "planner.key").write_bytes((Path(system.env["DADS_KEYS"]) / "planner.key").read_bytes())
    refused = dads(system, "ctl", "--planner", system.ports.telemetry, "--keys", str(mixed),
                   "--algorithm", "dsl", "--timeout", "60")
    assert refused.returncode == 2, refused.stderr
    assert "refused this key" in refused.stderr
    assert "Traceback" not in wrong.stderr + refused.stderr + nothing.stderr


def test_ctl_errors_say_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before anything is sent: nothing to send, a cut file that is missing, not JSON, or not
    a list of names: one line, exit 2."""
    ctl = ["ctl", "--planner", "tcp://127.0.0.1:1", "--insecure"]
    assert main(ctl) == 2
    assert "nothing to send" in capsys.readouterr().err
    assert main([*ctl, "--edge", "cam1", "--algorithm", "dsl"]) == 2
    assert "--edge sets one edge's --bandwidth" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    for content, words in ((None, "No such file"), ("{not json", "not JSON"),
                           (json.dumps({"edge_nodes": [1, 2]}), "list of node names")):
        if content is not None:
            bad.write_text(content)
        assert main([*ctl, "--pin-cut", str(bad)]) == 2
        assert words in capsys.readouterr().err


def test_dads_up_fails_with_the_cause_when_a_service_dies(tmp_path: Path) -> None:
    """A busy port kills the planner at start: `dads up` stops, exits 1 and says why in one
    line; the services it stopped while they were still loading leave no traceback."""
    import socket

    base = free_base(4)
    busy = socket.socket()
    busy.bind(("127.0.0.1", base + 3))  # the planner's inbox
    busy.listen()
    try:
        run = dads(None, "up", "--base-port", str(base), "--metrics-port", "0", "--workers", "1",
                   "--duration", "5", "--log-dir", str(tmp_path / "log"), "--insecure")
    finally:
        busy.close()
    assert run.returncode == 1, run.stderr
    assert "the planner exited (code 2): " in run.stderr, run.stderr
    assert f"cannot bind tcp://127.0.0.1:{base + 3}: Address already in use" in run.stderr
    for log in (tmp_path / "log").glob("*.log"):
        assert "Traceback" not in log.read_text(), log
