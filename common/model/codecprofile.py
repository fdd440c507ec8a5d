"""Codec profiles: what each codec makes of each node's output, on real frames, on this device.

The planner weighs a codec by its encoded size and its encode and decode times; sizes depend on
the content (a photograph's JPEG is a tenth of noise's; ReLU zeros compress), so they are
measured on frames from the real source, not on noise: the edge measures on its first frame,
and later corrects the sizes with what it actually sends. Times are per device: the edge's
encode times, the worker's decode times (`costgraph.build` joins the two).

Only nodes whose output is one tensor and that something consumes (a tensor that can cross)
are measured; a codec that does not apply to a tensor is left out, and so is one that makes it
larger than raw (the planner would never pick it).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Collection, Sequence
from typing import Any

import torch
import torch.fx as fx
from tqdm import tqdm

from common.codec import codecs
from common.model.graph import ModelGraph
from common.planning.profile import DeviceInfo, cache_path, write_atomic

__all__ = ["crossing_candidates", "node_outputs", "measure", "cached_measure", "corrected",
           "run_with_codec", "probe_nodes", "fidelity"]

Table = dict[str, dict[str, dict[str, Any]]]


class _Keeper(fx.Interpreter):
    """Runs the graph once, keeping the outputs of the nodes asked for (on the CPU)."""

    def __init__(self, gm: fx.GraphModule, keep: Collection[str]) -> None:
        super().__init__(gm)
        self.keep = set(keep)
        self.outputs: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.keep and isinstance(out, torch.Tensor):
            self.outputs[n.name] = out.detach().to("cpu").contiguous()
        return out


def crossing_candidates(graph: ModelGraph) -> list[str]:
    """Nodes whose output is one tensor that another node consumes: the tensors that can cross."""
    dag = graph.dag
    return [v for v in dag if dag.out_degree(v) and graph.nodes[v].spec.kind == "tensor"]


def node_outputs(graph: ModelGraph, inputs: Sequence[torch.Tensor],
                 keep: Collection[str] | None = None) -> dict[str, torch.Tensor]:
    keep = crossing_candidates(graph) if keep is None else keep
    device = next((p.device for p in graph.module.parameters()), torch.device("cpu"))
    keeper = _Keeper(graph.module, keep)
    with torch.no_grad():
        keeper.run(*(x.to(device) for x in inputs))
    return keeper.outputs


def measure(graph: ModelGraph, frames: Sequence[Sequence[torch.Tensor]],
            names: Collection[str] | None = None, repeats: int = 1,
            progress: bool = False) -> Table:
    """{node: {codec: {"bytes", "encode_s", "decode_s", "lossy"}}}: mean bytes over `frames`,
    median times over frames x `repeats`."""
    wanted = [c for c in codecs.CODECS.values()
              if c.name != codecs.RAW and (names is None or c.name in names)]
    samples: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for inputs in frames:
        outputs = node_outputs(graph, inputs)
        items = tqdm(outputs.items(), desc="codecs", unit="node", disable=not progress,
                     leave=False)
        for v, t in items:
            array = t.numpy()
            for codec in wanted:
                if not codec.applies(array.dtype.name, array.shape):
                    continue
                for _ in range(max(1, repeats)):
                    t0 = time.perf_counter()
                    data = codec.encode(array)
                    t1 = time.perf_counter()
                    codec.decode(data, array.dtype.name, array.shape)
                    t2 = time.perf_counter()
                    samples.setdefault((v, codec.name), []).append((len(data), t1 - t0, t2 - t1))
    table: Table = {}
    for (v, name), runs in samples.items():
        size = round(statistics.fmean(r[0] for r in runs))
        if size >= graph.nodes[v].output_bytes:
            continue  # larger than raw: never worth it
        table.setdefault(v, {})[name] = {
            "bytes": size,
            "encode_s": statistics.median(r[1] for r in runs),
            "decode_s": statistics.median(r[2] for r in runs),
            "lossy": codecs.get(name).lossy,
        }
    return table


def cached_measure(graph: ModelGraph, frames: Sequence[Sequence[torch.Tensor]],
                   device: DeviceInfo) -> Table:
    """`measure` on these frames, cached like a profile: keyed by the model's fingerprint, the
    device and a digest of the frames themselves, so the same model on the same source's first
    frames (a synthetic source, a folder, a restarted edge) is measured once, and other
    content is always measured anew (sizes depend on it)."""
    digest = hashlib.sha256()
    for inputs in frames:
        for x in inputs:
            digest.update(str((x.dtype, tuple(x.shape))).encode())
            digest.update(x.detach().cpu().contiguous().numpy().tobytes())
    path = cache_path(graph.name, graph.fingerprint, device, "codecs", digest.hexdigest()[:16])
    try:
        return json.loads(path.read_text())["table"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not cached, or unreadable: measure
    table = measure(graph, frames)
    write_atomic(path, json.dumps({"measured_at": time.time(), "frames": len(frames),
                                   "device": device.key, "table": table}))
    return table


def corrected(table: Table, sent: dict[tuple[str, str], float], drift: float) -> Table | None:
    """The table with the sizes actually sent where any drifted more than `drift` (a fraction)
    from the table's; None when none did. Frames change (a scene, the light): what the edge
    sends is the truth the planner should plan with."""
    moved = {(v, name): size for (v, name), size in sent.items()
             if name in table.get(v, {})
             and abs(size - table[v][name]["bytes"]) > drift * table[v][name]["bytes"]}
    if not moved:
        return None
    out = {v: {name: dict(c) for name, c in row.items()} for v, row in table.items()}
    for (v, name), size in moved.items():
        out[v][name]["bytes"] = round(size)
    return out


class _Perturbed(fx.Interpreter):
    """Runs the graph with one node's output passed through a codec (encode, then decode):
    what the cloud computes when that tensor crosses in that codec."""

    def __init__(self, gm: fx.GraphModule, node: str, codec: codecs.Codec) -> None:
        super().__init__(gm)
        self.node, self.codec = node, codec

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.name == self.node:
            array = out.detach().to("cpu").contiguous().numpy()
            back = self.codec.decode(self.codec.encode(array), array.dtype.name, array.shape)
            out = torch.from_numpy(back.copy()).to(out.device)
        return out


def run_with_codec(graph: ModelGraph, node: str, codec: codecs.Codec,
                   inputs: Sequence[torch.Tensor]) -> Any:
    """The model's output when `node`'s tensor crosses in `codec` (encoded, then decoded)."""
    device = next((p.device for p in graph.module.parameters()), torch.device("cpu"))
    with torch.no_grad():
        return _Perturbed(graph.module, node, codec).run(*(x.to(device) for x in inputs))


def probe_nodes(graph: ModelGraph, count: int) -> list[str]:
    """`count` activations spread along the model (by layer order), where a cut may fall."""
    candidates = [v for v in crossing_candidates(graph)
                  if v not in graph.inputs and graph.nodes[v].spec.dtype == "float32"]
    if len(candidates) <= count:
        return candidates
    step = len(candidates) / count
    return [candidates[int(i * step + step / 2)] for i in range(count)]


def fidelity(graph: ModelGraph, frames: Sequence[torch.Tensor], names: Collection[str] | None = None,
             nodes: int = 6, progress: bool = False) -> dict[str, Any]:
    """Each lossy codec's fidelity on this model and these frames (the `dads codecs` table).

    A frame codec is applied to the input; an activation codec to each of `nodes` activations
    spread along the model, one at a time. Per codec: `top1_agreement` — the share of frames
    whose top-1 class equals the lossless pipeline's, at the worst node; `rel_error` — the
    largest relative output error seen; `cuts` — the nodes measured, each with its own numbers.
    Lossless codecs are exact by construction (checked here too: a codec that is not fails).
    """
    from common.model.split import relative_error

    wanted = [c for c in codecs.CODECS.values()
              if c.name != codecs.RAW and (names is None or c.name in names)]
    spread = probe_nodes(graph, nodes)
    device = next((p.device for p in graph.module.parameters()), torch.device("cpu"))
    with torch.no_grad():
        refs = [graph.module(f.to(device)) for f in frames]
    table: dict[str, Any] = {}
    work = [(c, v) for c in wanted for v in (graph.inputs if c.image else spread)
            if c.applies(graph.nodes[v].spec.dtype, graph.nodes[v].spec.shape)]
    for codec, v in tqdm(work, desc="fidelity", unit="cut", disable=not progress):
        agree, worst = 0, 0.0
        for frame, ref in zip(frames, refs, strict=True):
            out = run_with_codec(graph, v, codec, (frame,))
            err = relative_error(out, ref)
            worst = max(worst, err)
            first_out = out[0] if isinstance(out, (tuple, list)) else out
            first_ref = ref[0] if isinstance(ref, (tuple, list)) else ref
            agree += int(first_out.reshape(-1).argmax() == first_ref.reshape(-1).argmax())
        entry = table.setdefault(codec.name, {"lossy": codec.lossy, "top1_agreement": 1.0,
                                              "rel_error": 0.0, "cuts": {}})
        share = agree / max(len(frames), 1)
        entry["cuts"][v] = {"top1_agreement": share, "rel_error": worst}
        entry["top1_agreement"] = min(entry["top1_agreement"], share)
        entry["rel_error"] = max(entry["rel_error"], worst)
    return {"model": graph.name, "fingerprint": graph.fingerprint, "images": len(frames),
            "codecs": table}
