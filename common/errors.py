"""The small exception hierarchy every layer raises; each carries the data a caller needs."""

from __future__ import annotations

__all__ = [
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
