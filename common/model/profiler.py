"""Measure each node's latency on the local device (CPU or CUDA).

Every pass runs the whole graph node by node in execution order, so each op sees realistic inputs
and caches; a node's time is the median over the repeated passes, after warm-up passes. On CUDA the
device is synchronised around each node, so a node's time includes its launch and its kernels,
which is what running that node inside one split part costs.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
from tqdm import tqdm

from common.model.graph import ModelGraph
from common.planning.profile import DeviceInfo, Profile, cache_path

__all__ = ["resolve_device", "describe_device", "profile_graph", "cached_profile"]


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was asked for but torch sees no GPU here: use --device cpu")
    return dev


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: torch.device) -> DeviceInfo:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return DeviceInfo(device.type, name, torch.get_num_threads(), torch.__version__.split("+")[0])


def _runner(gm: fx.GraphModule, n: fx.Node) -> Callable[..., Any]:
    if n.op == "call_module":
        return gm.get_submodule(str(n.target))
    if n.op == "call_function":
        return n.target  # type: ignore[return-value]
    if n.op == "call_method":
        name = str(n.target)
        return lambda self, *a, **k: getattr(self, name)(*a, **k)
    if n.op == "get_attr":
        obj: Any = gm
        for part in str(n.target).split("."):
            obj = getattr(obj, part)
        return lambda: obj
    raise ValueError(n.op)


def _timed_pass(
    gm: fx.GraphModule, inputs: tuple[torch.Tensor, ...], sync: Callable[[], None]
) -> dict[str, float]:
    env: dict[fx.Node, Any] = {}
    times: dict[str, float] = {}
    feed = iter(inputs)
    last_use = _last_uses(gm)
    for n in gm.graph.nodes:
        if n.op == "output":
            break
        if n.op == "placeholder":
            env[n] = next(feed)
            times[n.name] = 0.0
            continue
        fn = _runner(gm, n)
        args = fx.map_arg(n.args, env.__getitem__)
        kwargs = fx.map_arg(n.kwargs, env.__getitem__)
        sync()
        t0 = time.perf_counter()
        env[n] = fn(*args, **kwargs)
        sync()
        times[n.name] = time.perf_counter() - t0
        for dead in last_use.get(n, ()):  # free as the real forward does: allocator reuse
            del env[dead]
    return times


def _last_uses(gm: fx.GraphModule) -> dict[fx.Node, list[fx.Node]]:
    """For each node, the values whose last reader it is (fx's own codegen frees them there)."""
    last: dict[fx.Node, fx.Node] = {}
    for n in gm.graph.nodes:
        for a in n.all_input_nodes:
            last[a] = n
    out: dict[fx.Node, list[fx.Node]] = {}
    for value, reader in last.items():
        if reader.op != "output":
            out.setdefault(reader, []).append(value)
    return out


def profile_graph(
    graph: ModelGraph,
    device: str = "auto",
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = None,
    progress: bool = True,
) -> Profile:
    """Median per-node and whole-model latency of `graph` on `device`."""
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    if threads is not None:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    gm = graph.module if dev.type == "cpu" else copy.deepcopy(graph.module).to(dev)
    inputs = tuple(x.to(dev) for x in graph.example_inputs)
    sync: Callable[[], None] = (
        (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    )
    samples: dict[str, list[float]] = {name: [] for name in graph.nodes}
    totals: list[float] = []
    bar = tqdm(
        total=warmup + 2 * repeats,
        desc=f"profiling {graph.name} on {dev.type}",
        unit="pass",
        disable=not progress,
        leave=False,
    )
    with torch.no_grad(), bar:
        for _ in range(warmup):
            gm(*inputs)
            sync()
            bar.update()
        for _ in range(repeats):
            for name, t in _timed_pass(gm, inputs, sync).items():
                samples[name].append(t)
            bar.update()
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            gm(*inputs)
            sync()
            totals.append(time.perf_counter() - t0)
            bar.update()
    return Profile(
        model=graph.name,
        fingerprint=graph.fingerprint,
        device=describe_device(dev),
        input_shapes=[list(x.shape) for x in graph.example_inputs],
        node_times_s={name: statistics.median(ts) for name, ts in samples.items()},
        total_s=statistics.median(totals),
        warmup=warmup,
        repeats=repeats,
        host_load=_host_load(),
    )


def _host_load() -> float | None:
    """The host's 1-minute load average per CPU, as the profile is taken (None where unknown)."""
    try:
        return round(os.getloadavg()[0] / (os.cpu_count() or 1), 3)
    except OSError:
        return None


def load_cached(graph: ModelGraph, dev: torch.device) -> Profile | None:
    """This model's profile on this device from the cache, if one is there and readable."""
    path = cache_path(graph.name, graph.fingerprint, describe_device(dev))
    if not path.is_file():
        return None
    try:
        prof = Profile.load(path)
        prof.check(graph.fingerprint)
        return prof
    except (ValueError, KeyError, TypeError):
        return None  # unreadable or stale cache: measure again


def predicted_profile(graph: ModelGraph, dev: torch.device, predictor: Any) -> Profile:
    """This device's profile of `graph` predicted from its shapes (`predict.Predictor`)."""
    from common.model.features import node_features
    from common.planning.predict import as_profile

    return as_profile(graph.name, graph.fingerprint, describe_device(dev),
                      [list(x.shape) for x in graph.example_inputs],
                      predictor.predict(node_features(graph)))


def cached_profile(
    graph: ModelGraph,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    **kwargs: Any,
) -> Profile:
    """The cached profile of this model on this device, measuring (and caching) it if missing."""
    if threads is not None:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    prof = load_cached(graph, dev)
    if prof is not None:
        return prof
    path = cache_path(graph.name, graph.fingerprint, describe_device(dev))
    prof = profile_graph(graph, str(dev), progress=progress, **kwargs)
    prof.save(path)
    return prof
