"""The dependency rule of the code's layers, checked on the source (AST), so a stray import fails here.

planning: no torch, zmq, asyncio or prometheus, and no other layer of common;
codec: numpy-level encodings under both model and runtime, so neither of them nor torch;
model: no zmq/asyncio and not the runtime layer; runtime: not the model layer;
services: never each other (the four services share only common/ and the CLI/launcher modules).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("broker", "cloud_worker", "edge_agent", "planner")

#: package -> module prefixes its files must not import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "common/planning": ("torch", "torchvision", "zmq", "asyncio", "uvloop", "prometheus_client",
                        "common.model", "common.runtime", "services"),
    "common/codec": ("torch", "torchvision", "zmq", "asyncio", "uvloop", "prometheus_client",
                     "common.model", "common.runtime", "common.planning", "services"),
    "common/model": ("zmq", "asyncio", "uvloop", "prometheus_client", "common.runtime", "services"),
    "common/runtime": ("common.model", "services"),
    "common": ("services",),
    **{f"services/{s}": tuple(f"services.{o}" for o in SERVICES if o != s) for s in SERVICES},
}


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports (absolute names; this project uses no relative imports)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            found.append((node.lineno, node.module or ""))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def violations(package: str, banned: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in imports(path):
            for ban in banned:
                if name == ban or name.startswith(ban + "."):
                    out.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_rule(package: str) -> None:
    assert (ROOT / package).is_dir(), f"{package} is gone: update the layer rule"
    assert violations(package, FORBIDDEN[package]) == []


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import torch.nn\nfrom common.runtime import wire\nfrom common import errors\n")
    names = [n for _, n in imports(bad)]
    assert "torch.nn" in names and "common.runtime.wire" in names and "common.errors" in names


def test_common_has_only_the_layers() -> None:
    """A new module lands in one of the layers, not loose in common/."""
    loose = sorted(p.name for p in (ROOT / "common").glob("*.py"))
    assert loose == ["__init__.py", "errors.py"]
