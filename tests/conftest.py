from __future__ import annotations

import os

import pytest


# Keep the profile cache of test runs out of the user's home.
@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DADS_CACHE", str(tmp_path_factory.getbasetemp() / "dads-cache"))


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):  # test processes side by side (make test): ports of its own each
        from launch import up

        index, count = int(worker[2:]), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        lo, hi = up.PORT_RANGE
        span = (hi - lo) // max(count, 1)
        up.PORT_RANGE = (lo + index * span, lo + (index + 1) * span)


@pytest.fixture(scope="module")
def reference():
    """The served model, run whole here: what every frame's result must equal."""
    import torch

    from common.model.graph import trace
    from common.model.models import input_shape_for, load_served, synthetic_frame
    from tests.system import MODEL

    model = load_served(MODEL).eval()
    shape = input_shape_for(MODEL)
    trace(model, synthetic_frame(0, shape), MODEL)  # the same graph the services run

    def ref(frame_id: int) -> torch.Tensor:
        with torch.no_grad():
            return model(synthetic_frame(frame_id, shape))

    return ref
