"""Latency predictors (Edgent): per op kind, a regression of a node's time on its shape features.

Fitted from profiles the project already measures (any models, one device), they predict a
profile for a model that device has not run, so the planner can plan before (or without)
profiling it. Per op kind with enough samples, non-negative least squares of time on
(1, macs, in_elems, out_elems, param_bytes): every term is work that cannot make a node
faster, so no coefficient may be negative (which also keeps a prediction far outside the
training range from going below zero). The squares are of relative errors (each row weighed by
1 / its time): node times span four orders of magnitude, and plain least squares fits the few
big convolutions and leaves the many small nodes 2-5x off (measured: leave-one-model-out node
error median 17-69% plain, 12-48% relative). Kinds seen too rarely fall back to one regression
over every node. Plain data and numpy: no torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from common.planning.profile import DeviceInfo, Profile

__all__ = ["Sample", "Predictor", "fit", "as_profile", "FORMAT"]

FORMAT = "dads-predictor/1"
FEATURES = ("macs", "in_elems", "out_elems", "param_bytes")
MIN_SAMPLES = 6
MIN_TIME_S = 1e-6  # below the timer's resolution: weighed as if it took this long
ANY = "*"

#: (op kind, features, seconds)
Sample = tuple[str, Mapping[str, float], float]


def _row(features: Mapping[str, float]) -> np.ndarray:
    return np.array([1.0, *(float(features.get(f, 0.0)) for f in FEATURES)])


def _solve(rows: np.ndarray, times: np.ndarray) -> list[float]:
    """NNLS of relative errors, on columns scaled to [0, 1] (raw, they span 12 orders)."""
    scale = np.abs(rows).max(axis=0)
    scale[scale == 0] = 1.0
    weight = 1.0 / np.maximum(times, MIN_TIME_S)
    coef, _ = nnls(rows / scale * weight[:, None], times * weight)
    return (coef / scale).tolist()


@dataclass
class Predictor:
    device: str  # the device key of the profiles it was fitted on
    coefficients: dict[str, list[float]]  # op kind (or "*") -> [intercept, per feature...]
    samples: dict[str, int] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)  # what it was fitted on

    def node_time(self, kind: str, features: Mapping[str, float]) -> float:
        coef = self.coefficients.get(kind, self.coefficients[ANY])
        return max(0.0, float(np.dot(coef, _row(features))))

    def predict(self, nodes: Mapping[str, tuple[str, Mapping[str, float]]]) -> dict[str, float]:
        """node -> predicted seconds; inputs and attribute reads cost nothing (as profiled)."""
        return {v: 0.0 if kind in ("input", "get_attr") else self.node_time(kind, feats)
                for v, (kind, feats) in nodes.items()}

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "features": list(FEATURES), "device": self.device,
                "coefficients": self.coefficients, "samples": self.samples, "models": self.models}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Predictor:
        if doc.get("format") != FORMAT or doc.get("features") != list(FEATURES):
            raise ValueError(f"not a {FORMAT} document")
        return cls(doc["device"], doc["coefficients"], doc.get("samples", {}),
                   doc.get("models", []))

    def save(self, path: str | os.PathLike[str]) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_json(), indent=1))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Predictor:
        return cls.from_json(json.loads(Path(path).read_text()))


def fit(samples: Iterable[Sample], device: str = "", models: Iterable[str] = (),
        min_samples: int = MIN_SAMPLES) -> Predictor:
    by_kind: dict[str, list[tuple[np.ndarray, float]]] = {}
    everything: list[tuple[np.ndarray, float]] = []
    for kind, feats, seconds in samples:
        if kind in ("input", "get_attr"):
            continue
        pair = (_row(feats), float(seconds))
        by_kind.setdefault(kind, []).append(pair)
        everything.append(pair)
    if not everything:
        raise ValueError("no samples to fit a predictor on")
    coefficients, counts = {}, {}
    for kind, pairs in [*by_kind.items(), (ANY, everything)]:
        if kind != ANY and len(pairs) < min_samples:
            continue
        rows = np.stack([p[0] for p in pairs])
        times = np.array([p[1] for p in pairs])
        coefficients[kind] = _solve(rows, times)
        counts[kind] = len(pairs)
    return Predictor(device, coefficients, counts, sorted(set(models)))


def as_profile(model: str, fingerprint: str, device: DeviceInfo, input_shapes: list[list[int]],
               times: Mapping[str, float]) -> Profile:
    """A profile in the measured ones' format, marked `predicted`."""
    total = float(sum(times.values()))
    return Profile(model=model, fingerprint=fingerprint, device=device,
                   input_shapes=input_shapes, node_times_s={v: float(t) for v, t in times.items()},
                   total_s=total, warmup=0, repeats=0, predicted=True)
