"""The fidelity policy: which codecs a plan may use, from what the operator will trade.

`lossless` (the default) keeps results bit-exact: only lossless codecs. `any` allows every
codec. A budget allows a lossy codec only if its measured fidelity (`dads codecs MODEL
--images DIR`, the table below) is within it: `top1:0.99` — the model's top-1 class agrees with
the lossless pipeline's on at least 99% of the images, on every cut measured; `error:0.01` —
the output's relative error stays within 1%. A lossy codec the table does not cover is not used.

Table (JSON, written by `dads codecs`): {"model", "fingerprint", "images", "codecs": {name:
{"lossy", "top1_agreement", "rel_error", "cuts"}}}: the worst over the cuts measured.
Plain data: no torch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import DadsError

__all__ = ["check", "Budget", "parse", "parse_codecs", "load_table", "permitted", "select"]

METRICS = {"top1": "top1_agreement", "error": "rel_error"}


@dataclass(frozen=True)
class Budget:
    kind: str  # lossless, any, top1, error
    value: float = 0.0

    def admits(self, entry: dict[str, Any]) -> bool:
        """Whether a lossy codec's measured fidelity is within this budget."""
        if self.kind == "any":
            return True
        if self.kind == "lossless":
            return False
        measured = entry.get(METRICS[self.kind])
        if not isinstance(measured, (int, float)) or not math.isfinite(measured):
            return False
        return measured >= self.value if self.kind == "top1" else measured <= self.value

    def __str__(self) -> str:
        return self.kind if self.kind in ("lossless", "any") else f"{self.kind}:{self.value:g}"


def parse(text: str) -> Budget:
    text = text.strip().lower()
    if text in ("lossless", "any"):
        return Budget(text)
    kind, _, value = text.partition(":")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if kind not in METRICS or not math.isfinite(number) or number < 0 or (
            kind == "top1" and number > 1):
        raise DadsError(f"fidelity {text!r}: lossless, any, top1:A (agreement 0..1, e.g. "
                        "top1:0.99) or error:E (relative output error, e.g. error:0.01)")
    return Budget(kind, number)


def parse_codecs(text: str, known: Collection[str]) -> str | frozenset[str]:
    """`--codecs`: auto, none, or a comma-separated list of `known` codec names."""
    text = text.strip()
    if text in ("auto", "none"):
        return text
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    if not names or names - frozenset(known):
        raise DadsError(f"--codecs {text!r}: auto, none or a list of {', '.join(sorted(known))}")
    return names


def load_table(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DadsError(f"cannot read the fidelity table {str(path)!r}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("codecs"), dict):
        raise DadsError(f"{path}: not a fidelity table (from `dads codecs MODEL --images DIR`)")
    return doc


def permitted(budget: Budget, lossy: Collection[str], table: dict[str, Any] | None,
              fingerprint: str | None = None) -> frozenset[str]:
    """The lossy codecs this budget admits (lossless ones are always admitted). A table
    measured on another model (fingerprint) admits nothing."""
    if budget.kind == "any":
        return frozenset(lossy)
    if budget.kind == "lossless" or table is None:
        return frozenset()
    if fingerprint and table.get("fingerprint") not in (None, fingerprint):
        return frozenset()
    entries = table["codecs"]
    return frozenset(n for n in lossy if isinstance(entries.get(n), dict) and budget.admits(entries[n]))


def check(budget: Budget, wanted: str | Collection[str], has_table: bool,
          lossy: Collection[str]) -> None:
    """Refuse a policy that would silently plan otherwise than asked: a measured budget with no
    table to measure against (it would admit no lossy codec, i.e. plan lossless), or lossy codecs
    named under the lossless budget (they would be dropped)."""
    if budget.kind in METRICS and not has_table:
        raise DadsError(f"fidelity {budget.kind}:{budget.value:g} is judged on measurements: give "
                        "the model's fidelity table (--fidelity-table, from `dads codecs`)")
    named = frozenset() if isinstance(wanted, str) else frozenset(wanted) & frozenset(lossy)
    if named and budget.kind == "lossless":
        raise DadsError(f"--codecs {','.join(sorted(named))}: lossy, and fidelity lossless (the "
                        "default) never sends a lossy codec; allow it with --fidelity any, or "
                        "top1:A / error:E with a fidelity table")


def select(present: Collection[str], lossy: Collection[str], wanted: str | Collection[str],
           budget: Budget, table: dict[str, Any] | None = None,
           fingerprint: str | None = None) -> frozenset[str]:
    """The codecs a plan may use: of those the cost graph lists (`present`, `lossy` among
    them), the `wanted` ones ("auto": all, "none": none, or names), within the budget."""
    present = frozenset(present)
    if wanted == "none":
        return frozenset()
    names = present if wanted == "auto" else present & frozenset(wanted)
    lossy = frozenset(lossy) & names
    return (names - lossy) | permitted(budget, lossy, table, fingerprint)
