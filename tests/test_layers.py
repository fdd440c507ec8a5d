"""The dependency rule of the code's layers, checked on the source (AST), so a stray import fails here.

planning: no torch, zmq, asyncio or prometheus, and no other layer of common;
codec: numpy-level encodings under both model and runtime, so neither of them nor torch;
model: no zmq/asyncio and not the runtime layer; runtime: not the model layer;
services: never each other, the command line (cli/) or the launcher (launch/): they share only
common/. And no module of the project imports itself through others (no import circles, lazy
imports inside functions included: a circle is a design knot even where Python tolerates it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("broker", "cloud_worker", "edge_agent", "planner")
PACKAGES = ("common", "services", "cli", "launch", "bench")

#: package -> module prefixes its files must not import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "common/planning": ("torch", "torchvision", "zmq", "asyncio", "uvloop", "prometheus_client",
                        "common.model", "common.runtime", "services"),
    "common/codec": ("torch", "torchvision", "zmq", "asyncio", "uvloop", "prometheus_client",
                     "common.model", "common.runtime", "common.planning", "services"),
    "common/model": ("zmq", "asyncio", "uvloop", "prometheus_client", "common.runtime", "services"),
    "common/runtime": ("common.model", "services"),
    "common": ("services",),
    **{f"services/{s}": (*(f"services.{o}" for o in SERVICES if o != s), "cli", "launch")
       for s in SERVICES},
    "services": ("cli", "launch", "bench"),
    "launch": ("cli", "bench"),
    "cli": ("bench",),
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


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> nx.DiGraph:
    """Module -> the project modules it imports (`from a.b import c` imports a.b.c when that is
    a module, else a.b)."""
    files = {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    g = nx.DiGraph()
    g.add_nodes_from(files)
    for name, path in files.items():
        for _, target in imports(path):
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                g.add_edge(name, target)  # (a package's own __init__ is not a circle)
    return g


def test_no_import_circles() -> None:
    cycles = sorted(sorted(c) for c in nx.simple_cycles(import_graph()))
    assert cycles == [], f"import circles: {cycles[:5]}"


def test_the_circle_check_catches_a_circle(tmp_path: Path) -> None:
    pkg = tmp_path / "common"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from common.b import thing\n")
    (pkg / "b.py").write_text("def f():\n    from common import a\n")
    assert list(nx.simple_cycles(import_graph(tmp_path, ("common",)))) != []


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import torch.nn\nfrom common.runtime import wire\nfrom common import errors\n")
    names = [n for _, n in imports(bad)]
    assert "torch.nn" in names and "common.runtime.wire" in names and "common.errors" in names


def test_common_has_only_the_layers() -> None:
    """A new module lands in one of the layers, not loose in common/."""
    loose = sorted(p.name for p in (ROOT / "common").glob("*.py"))
    assert loose == ["__init__.py", "errors.py"]
