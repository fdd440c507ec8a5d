"""A device that has not profiled yet: the services start on a predicted profile, the planner
plans with it, and the measured one replaces it when it comes (logs and metrics say so)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from common.planning import predict
from tests.system import metric, shared_cache_system

pytestmark = pytest.mark.timeout(600)
MODEL = "digits_exits"  # small: profiled in seconds, so the measured profile comes soon


def test_planned_on_a_prediction_until_measured(tmp_path_factory: pytest.TempPathFactory) -> None:
    rng = np.random.default_rng(0)
    samples = [(kind, {"macs": m, "in_elems": m / 10, "out_elems": m / 10, "param_bytes": 0.0},
                1e-6 + 1e-10 * m) for kind in ("conv2d", "relu", "linear")
               for m in rng.uniform(1e4, 1e8, 20)]
    path = predict.fit(samples, device="cpu").save(tmp_path_factory.mktemp("p") / "pred.json")
    extra = ["--predictor", str(path)]
    slow = ["--profile-repeats", "400"]  # measuring takes seconds, as on a real device
    with shared_cache_system(tmp_path_factory, workers=1, model=MODEL,
                             worker_args=[*extra, *slow], fresh=True) as s:
        s.wait_log("worker-0", "profile measured")
        # two threads: another device than the worker's, so the edge finds no cached profile
        # (a tiny model is measured in under a second, before the socket is even up: with
        # few passes the prediction would never need to be sent)
        lines = s.stream("edge-predicted", frames=8, fps=2,
                         extra=[*extra, "--threads", "2", *slow, "--name", "cam"])
        assert len(lines) == 8 and not any(x["dropped"] for x in lines)
        deadline = time.monotonic() + 60
        while "edge cam measured its profile" not in s.log("planner"):
            assert time.monotonic() < deadline, s.log("planner")[-3000:]
            time.sleep(0.2)
        planner = s.log("planner")
        text = s.scrape(s.ports.metrics_base + 1)
    assert "worker worker-0 has not profiled yet: planning with its predicted profile" in planner
    assert "worker worker-0 measured its profile: it replaces the predicted one" in planner
    assert "edge cam has not profiled yet" in planner
    assert metric(text, "dads_profiles_predicted", side="cloud") == 0
    assert metric(text, "dads_profiles_predicted", side="edge") == 0
