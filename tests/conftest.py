from __future__ import annotations

import os

import pytest


# Keep the profile cache of test runs out of the user's home.
@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DADS_CACHE", str(tmp_path_factory.getbasetemp() / "dads-cache"))


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
