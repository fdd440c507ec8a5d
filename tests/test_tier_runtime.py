"""Scission's middle tier, for real: device -> edge server -> cloud, each frame exact.

Real processes on loopback: the planner plans over three tiers (`--tiers device,edge,cloud`);
the edge agent (the device) sends to the edge tier's broker; a worker of the edge tier
(`--tier edge --next-broker ...`) runs its nodes and forwards what crosses the next link to
the cloud tier's broker, where a cloud worker finishes the frame. Every placement, the
planner's own and the operator's pins (several tensors on each link, an empty middle tier, an
empty cloud tier), answers every frame exactly as the unsplit model does.
"""

from __future__ import annotations

import time
from pathlib import Path

import networkx as nx
import pytest
import zmq

from common.model.graph import trace
from common.model.models import input_shape_for, load_served, synthetic_frame
from common.planning.dag import transfer
from common.planning.partition import Plan
from common.runtime.wire import PlanMsg, decode
from launch.up import Ports, free_base, start_service, stop_system
from tests.system import MODEL, System, assert_exact, read_lines, shared_cache

pytestmark = pytest.mark.timeout(600)


class ThreeTiers(System):
    """System's broker, planner (over three tiers) and one edge-tier worker, plus the cloud
    tier: its own broker and one cloud worker."""

    def __init__(self, tmp: Path) -> None:
        self.cloud = Ports(free_base(2), free_base(4))
        super().__init__(tmp, workers=0, planner_args=[
            "--tiers", "device,edge,cloud", "--links", "1gbit", "--tick", "0.2",
            "--initial-bandwidth", "100mbit"])
        p, c = self.ports, self.cloud
        self.procs["broker-cloud"] = start_service(
            "broker", ["--frontend", c.frontend, "--backend", c.backend, "--planner", p.telemetry,
                       "--metrics-port", str(c.metrics_base)], tmp / "broker-cloud.log", env=self.env)
        common = ["--model", MODEL, "--threads", "1", "--plans", p.plans, "--telemetry", p.telemetry]
        self.procs["worker-e"] = start_service(
            "cloud_worker", [*common, "--broker", p.backend, "--id", "worker-e", "--tier", "edge",
                             "--next-broker", c.frontend, "--metrics-port",
                             str(c.metrics_base + 1)], tmp / "worker-e.log", env=self.env)
        self.procs["worker-c"] = start_service(
            "cloud_worker", [*common, "--broker", c.backend, "--id", "worker-c", "--tier", "cloud",
                             "--metrics-port", str(c.metrics_base + 2)],
            tmp / "worker-c.log", env=self.env)
        for name in ("worker-e", "worker-c"):
            self.wait_log(name, "ready on")
        self.plans = self.socket(zmq.SUB, p.plans, "operator", "planner")
        self.plans.setsockopt(zmq.SUBSCRIBE, b"")

    latest = 0  # the newest plan a pin returned: the set republished each second holds older

    def pin(self, edge_nodes: set[str], tier_nodes: list[set[str]], timeout: float = 60) -> Plan:
        """Pin a placement; the planner's (new) plan for it."""
        self.control_tiers(tuple(sorted(edge_nodes)), tuple(tuple(sorted(t)) for t in tier_nodes))
        want = (tuple(sorted(edge_nodes)), tuple(tuple(sorted(t)) for t in tier_nodes))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.plans.poll(500):
                msg, _ = decode(self.plans.recv_multipart())
                if isinstance(msg, PlanMsg):
                    plan = Plan.from_json(msg.plan)
                    if (plan.edge_nodes, plan.tier_nodes) == want and plan.plan_id > self.latest:
                        self.latest = plan.plan_id
                        return plan
        raise AssertionError(self.log("planner")[-3000:])

    def control_tiers(self, edge_nodes: tuple[str, ...], tier_nodes: tuple[tuple[str, ...], ...]
                      ) -> None:
        from common.runtime.wire import Control

        self.operate(Control(edge_nodes=edge_nodes, tier_nodes=tier_nodes))

    def close(self) -> None:
        self.plans.close(linger=0)
        stop_system(self.procs)


@pytest.fixture(scope="module")
def tiers(tmp_path_factory: pytest.TempPathFactory):
    with shared_cache(tmp_path_factory):
        system = ThreeTiers(tmp_path_factory.mktemp("tiers"))
        try:
            yield system
        finally:
            system.close()


def placements() -> dict[str, tuple[set[str], list[set[str]]]]:
    """Nested prefixes of googlenet's graph order: several tensors on both links; the
    middle tier empty; the cloud tier empty."""
    graph = trace(load_served(MODEL).eval(), synthetic_frame(0, input_shape_for(MODEL)), MODEL)
    order = list(nx.topological_sort(graph.dag))
    wide = [i for i in range(1, len(order)) if len(transfer(graph.dag, set(order[:i]))) >= 2]
    a, b = wide[len(wide) // 4], wide[3 * len(wide) // 4]
    assert b > a
    return {"both links carry several tensors": (set(order[:a]), [set(order[a:b])]),
            "nothing on the edge server": (set(order[:a]), [set()]),
            "nothing in the cloud": (set(order[:a]), [set(order[a:])])}


def test_three_tiers_every_placement_exact(tiers: ThreeTiers, reference) -> None:
    """The planner's own placement first, then each pin in turn, while one edge streams (until
    three frames have been answered under the last pin)."""
    # one frame a second: what the slowest placement keeps up with (every frame is kept, and a
    # backlog behind a slower one could outlive its deadline)
    proc, out = tiers.start_edge("device", frames=0, fps=1, extra=["--no-shed", "--queue", "64"])
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 240

    def wait_for(plan_id: int, count: int) -> None:
        while sum(1 for x in read_lines(out) if x["plan_id"] == plan_id) < count:
            assert time.monotonic() < deadline and proc.poll() is None, (
                tiers.log("device")[-2000:] + tiers.log("worker-e")[-2000:])
            time.sleep(0.1)

    while not any(x["algorithm"] == "tiers" for x in read_lines(out)):  # the planner's own
        assert time.monotonic() < deadline and proc.poll() is None, tiers.log("planner")[-3000:]
        time.sleep(0.1)
    for name, (device, middle) in placements().items():
        plan = tiers.pin(device, middle)
        assert plan.tiers == ("device", "edge", "cloud") and plan.algorithm == "pinned"
        wait_for(plan.plan_id, 3)
        seen[name] = plan.plan_id
    assert tiers.stop_edge("device") == 0, tiers.log("device")[-3000:]
    lines = read_lines(out)
    assert_exact(lines, reference, len(lines))
    by_plan = {x["plan_id"]: x["worker"] for x in lines}
    assert by_plan[seen["both links carry several tensors"]] == "worker-e>worker-c"
    assert by_plan[seen["nothing on the edge server"]] == "worker-e>worker-c"  # passed through
    assert by_plan[seen["nothing in the cloud"]] == "worker-e"  # the edge server answers
    assert "pinned over device->edge->cloud" in tiers.log("planner")


def test_codecs_on_the_first_link_stay_exact_through_three_tiers(tiers: ThreeTiers,
                                                                 reference) -> None:
    """On a slow first link (as the operator states it) the placement's tensors cross it
    encoded (lossless: ReLU outputs are full of zeros, zstd shrinks them), the edge server
    decodes them, runs its nodes and forwards raw to the cloud: every frame still exact."""
    tiers.control(bandwidth_bps=2e6)
    try:  # the camera streams until three frames have crossed under the pin
        # a frame every two seconds: the 2 Mbit/s link takes 1.5 s a frame under the pin
        proc, out = tiers.start_edge("device-z", frames=0, fps=0.5,
                                     extra=["--no-shed", "--queue", "64"])
        device, middle = placements()["both links carry several tensors"]
        plan = tiers.pin(device, middle, timeout=120)
        encoded = {v: c for v, c in plan.codecs.items() if c != "raw"}
        assert encoded, plan.codecs  # some tensor crosses the first link encoded
        assert set(plan.codecs) == set(plan.transfer)  # named for the first link's tensors only
        deadline = time.monotonic() + 240
        # (a later plan id may carry the same pin: re-issued when the edge's codec table came)
        while sum(x.get("plan_id", 0) >= plan.plan_id for x in read_lines(out)) < 3:
            assert time.monotonic() < deadline and proc.poll() is None, tiers.log("device-z")[-3000:]
            time.sleep(0.1)
        assert tiers.stop_edge("device-z") == 0, tiers.log("device-z")[-3000:]
        lines = read_lines(out)
        assert_exact(lines, reference, len(lines))
        pinned = [x for x in lines if x["plan_id"] >= plan.plan_id]
        assert pinned and all(x["worker"] == "worker-e>worker-c" for x in pinned)
    finally:
        tiers.control(bandwidth_bps=0.0)


def test_heavy_load_over_tiers_spreads_the_model_over_both_workers(tiers: ThreeTiers,
                                                                   reference) -> None:
    """A camera faster than the latency placement's slowest stage (one worker computing all):
    heavy load, and the throughput placement (`tiers_dsh`) shares the model between the edge
    server's worker and the cloud's, a pipeline; every frame still exact."""
    tiers.control_tiers((), ())  # no pin: the planner's own placements again
    frames = 60
    proc, out = tiers.start_edge("device-h", frames=frames, fps=20,
                                 extra=["--no-shed", "--queue", "256", "--edge-slowdown", "1"])
    proc.wait(400)
    assert proc.returncode == 0, tiers.log("device-h")[-3000:]
    lines = read_lines(out)
    assert_exact(lines, reference, frames)
    heavy = [x for x in lines if x["algorithm"] == "tiers_dsh"]
    assert heavy, tiers.log("planner")[-3000:]
    assert any(x["worker"] == "worker-e>worker-c" for x in heavy)  # both tiers compute
    assert "heavy load: the throughput placement" in tiers.log("planner")


def test_each_tier_runs_its_stage_of_the_plan() -> None:
    """The stage each tier runs, from the plan alone (no tier of the plan: a clear error)."""
    from services.cloud_worker.service import stage_of

    plan = Plan("t", "", ("a",), (), None, 1.0, tiers=("device", "edge", "cloud"),  # type: ignore[arg-type]
                tier_nodes=(("b",),))
    everything = frozenset("abc")
    assert stage_of(plan, "edge", everything) == (frozenset("a"), frozenset("ab"))
    assert stage_of(plan, "cloud", everything) == (frozenset("ab"), None)
    assert stage_of(plan, "edge", frozenset("ab")) == (frozenset("a"), None)  # nothing after
    with pytest.raises(ValueError, match="this worker's tier is 'fog'"):
        stage_of(plan, "fog", everything)
    two = Plan("t", "", ("a",), (), None, 1.0)  # type: ignore[arg-type]
    assert stage_of(two, "anything", everything) == (frozenset("a"), None)
