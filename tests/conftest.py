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
        # one torch thread each: two processes of two threads on two cores spin against each
        # other (in-process model tests ran 4-7x slower side by side than alone)
        import torch

        torch.set_num_threads(1)


#: modules that start real services, slowest first: a test process starts on them at once, so
#: the two processes end together instead of one running the last big module alone
HEAVY = ("test_runtime", "test_faults", "test_tier_runtime", "test_codec_runtime",
         "test_exit_runtime", "test_predicted_runtime", "test_security", "test_fairness",
         "test_cli_control")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.module.__name__.rpartition(".")[2] if item.module else ""
        return HEAVY.index(name) if name in HEAVY else len(HEAVY)

    items.sort(key=rank)  # stable: tests keep their order inside a module


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
