"""Profiles: per-node latency of one model on one device, as a JSON document.

This module is plain data (no torch) so that the planner can read profiles without importing the
deep-learning stack; `common.model.profiler` measures them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from common.errors import DadsError, ProfileMismatch

__all__ = ["FORMAT", "DeviceInfo", "Profile", "cache_dir", "cache_path", "write_atomic", "scaled"]

FORMAT = "dads-profile/1"


@dataclass(frozen=True)
class DeviceInfo:
    kind: str  # "cpu" or "cuda"
    name: str  # CPU model or GPU name
    threads: int  # torch intra-op threads the numbers were taken with
    torch: str

    @property
    def key(self) -> str:
        """A short file-name-safe id: profiles are keyed by fingerprint + this."""
        slug = re.sub(r"[^A-Za-z0-9]+", "_", self.name).strip("_")[:40]
        return f"{self.kind}-{slug}-{self.threads}t"


@dataclass
class Profile:
    model: str
    fingerprint: str
    device: DeviceInfo
    input_shapes: list[list[int]]
    node_times_s: dict[str, float]  # median per node, graph order
    total_s: float  # median of whole forward passes (not the sum: fusion and caching differ)
    warmup: int
    repeats: int
    created_at: float = field(default_factory=time.time)
    # per node, per codec: {"bytes", "encode_s", "decode_s", "lossy"} measured on this device
    # (on real frames at the edge: `common.model.codecprofile`); empty = raw only
    codecs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # predicted from the model's shapes (`common.planning.predict`), not measured: the planner
    # may plan with it until the device's measured profile arrives
    predicted: bool = False
    # how busy the host was while it was measured: its 1-minute load average per CPU (None:
    # not recorded); a profile taken on a busy host is slower than the device, and says so
    host_load: float | None = None

    @property
    def summed_s(self) -> float:
        return sum(self.node_times_s.values())

    @cached_property
    def digest(self) -> str:
        """What the numbers say, not when they were taken: two profiles with the same digest
        plan alike (a planner caches its cost graph by it; `scaled` keeps `created_at`)."""
        doc = [self.fingerprint, asdict(self.device), self.node_times_s, self.total_s]
        if self.codecs:
            doc.append(self.codecs)
        if self.predicted:
            doc.append("predicted")
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    def check(self, fingerprint: str) -> None:
        """Refuse a profile taken on a different model than the one in hand."""
        if self.fingerprint != fingerprint:
            raise ProfileMismatch(
                f"profile of {self.model!r} has fingerprint {self.fingerprint}, but the model in "
                f"hand has {fingerprint}: re-profile it (`dads profile`)"
            )

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["format"] = FORMAT
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Profile:
        if doc.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document (format={doc.get('format')!r})")
        body = {k: v for k, v in doc.items() if k != "format"}
        body["device"] = DeviceInfo(**body["device"])
        return cls(**body)

    def save(self, path: str | os.PathLike[str]) -> Path:
        return write_atomic(path, json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Profile:
        """A profile file; one that is missing, not JSON or not a profile is an error that
        names it (a user passes these by hand: --edge-profile, --tier-profile, ...)."""
        try:
            doc = json.loads(Path(path).read_text())
        except OSError as exc:
            raise DadsError(f"profile {str(path)!r}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise DadsError(f"profile {str(path)!r} is not JSON ({exc}): give a file that "
                            "`dads profile` or `dads benchmark` wrote") from None
        try:
            return cls.from_json(doc)
        except DadsError as exc:
            raise DadsError(f"profile {str(path)!r}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DadsError(f"{str(path)!r} is not a dads profile ({type(exc).__name__}: "
                            f"{exc}): give a file that `dads profile` or `dads benchmark` "
                            "wrote") from None


def cache_dir() -> Path:
    """Where profiles are cached: $DADS_CACHE, else ~/.cache/dads."""
    return Path(os.environ.get("DADS_CACHE") or Path.home() / ".cache" / "dads")


def cache_path(model: str, fingerprint: str, device: DeviceInfo, kind: str = "profiles",
               content: str = "") -> Path:
    """A cached measurement of a model on a device: its profile, or (`kind` "codecs") its codec
    table on frames whose digest is `content`."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model)
    middle = f"-{content}" if content else ""
    return cache_dir() / kind / f"{safe}-{fingerprint}{middle}-{device.key}.json"


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write a file whole or not at all: services sharing a cache never read half a file."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return out


def scaled(profile: Profile, speedup: float) -> Profile:
    """A modelled profile: every time divided by `speedup` (a cloud when none was measured)."""
    if not speedup > 0:
        raise ValueError("speedup must be > 0")
    return Profile(
        model=profile.model,
        fingerprint=profile.fingerprint,
        device=DeviceInfo("model", f"{profile.device.name} / {speedup:g}", profile.device.threads,
                          profile.device.torch),
        input_shapes=profile.input_shapes,
        node_times_s={k: v / speedup for k, v in profile.node_times_s.items()},
        total_s=profile.total_s / speedup,
        warmup=profile.warmup,
        repeats=profile.repeats,
        created_at=profile.created_at,
        codecs={v: {name: {**c, "encode_s": c["encode_s"] / speedup,
                           "decode_s": c["decode_s"] / speedup} for name, c in table.items()}
                for v, table in profile.codecs.items()},
        predicted=profile.predicted,
        host_load=profile.host_load,
    )
