"""The small exception hierarchy every layer raises; each carries the data a caller needs, and
how one reaches a user of a command (`as_command`)."""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = [
    "as_command",
    "DadsError",
    "ModelLoadError",
    "TraceError",
    "InvalidCut",
    "CostGraphError",
    "ProfileMismatch",
]


class DadsError(Exception):
    """Base of every error this project raises on purpose."""


class ModelLoadError(DadsError):
    """A model name, import path or weights file could not be turned into a module."""


class TraceError(DadsError):
    """A model that torch.fx cannot trace, or that fails on the example input."""


class InvalidCut(DadsError, ValueError):
    """An edge set that is not a valid cut; `node` names the offending node."""

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node

    def __repr__(self) -> str:
        return f"InvalidCut({str(self)!r}, node={self.node!r})"


class CostGraphError(DadsError, ValueError):
    """A cost graph (DESIGN §3) that is malformed: missing fields, bad costs, cycles."""


class ProfileMismatch(DadsError, ValueError):
    """A profile measured on a different model (fingerprint) than the one in hand."""


def as_command(prog: str, body: Callable[[], int | None]) -> int:
    """A command's exit code: a user's error (bad options, a model or a file that cannot be
    used) is one line on stderr and exit 2, not a traceback; Ctrl-C is exit 130. `dads` and
    each service's own entry (`python -m services.X`) say errors alike."""
    try:
        return int(body() or 0)
    except (DadsError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
