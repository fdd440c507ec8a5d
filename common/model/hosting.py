"""Hosting the served model on a device: build, trace, profile; and what a result says (top-k)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import torch

from common.model.exits import load_accuracy, mark_exits
from common.model.graph import ModelGraph, trace
from common.model.models import input_shape_for, load_served, synthetic_frame
from common.model.profiler import cached_profile, load_cached, predicted_profile, resolve_device
from common.planning.predict import Predictor
from common.planning.profile import Profile, scaled

__all__ = ["Hosted", "host_model", "measure_profile", "remeasure", "top_k"]

TOP_K = 5


@dataclass
class Hosted:
    graph: ModelGraph  # the served model (normalisation inside), traced on a uint8 frame
    profile: Profile  # this device's, cached
    device: torch.device
    shape: tuple[int, ...]  # the input frame's


def host_model(args: argparse.Namespace) -> Hosted:
    """Build, trace and profile the served model on this device (blocking: run it in a thread).

    With a predictor (`args.predictor`, from `dads predict --save-predictor`) and no cached
    profile, the profile is predicted from the model's shapes instead of measured, so the
    service can start at once; `measure_profile` then measures the real one.
    """
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    shape = input_shape_for(args.model)
    graph = trace(load_served(args.model, args.weights, args.seed), synthetic_frame(0, shape),
                  name=args.model)
    mark_exits(graph.dag, graph.outputs, load_accuracy(args.weights))  # early exits, if trained
    predictor = getattr(args, "predictor", None)
    profile = load_cached(graph, device)
    if profile is None and predictor:
        profile = predicted_profile(graph, device, Predictor.load(predictor))
    if profile is None:
        profile = measure_profile(graph, device, args)
    graph.module.to(device)
    return Hosted(graph, profile, device, shape)


def measure_profile(graph: ModelGraph, device: torch.device, args: argparse.Namespace) -> Profile:
    """Measure (and cache) the served model's profile on this device."""
    return cached_profile(graph, str(device), progress=False, repeats=args.profile_repeats)


def remeasure(predicted: Profile, graph: ModelGraph, device: torch.device,
              args: argparse.Namespace, slowdown: float = 1.0) -> Profile:
    """The measured profile that replaces a predicted one: as the planner must see it (an
    emulated slower device's), with the codec table the predicted one carried."""
    measured = measure_profile(graph, device, args)
    if slowdown > 1:
        measured = scaled(measured, 1.0 / slowdown)
    return replace(measured, codecs=predicted.codecs)


def top_k(output: object, k: int = TOP_K) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The k most likely classes of the first output, with their softmax scores."""
    out = output[0] if isinstance(output, (tuple, list)) else output
    assert isinstance(out, torch.Tensor)
    probs = torch.softmax(out.reshape(out.shape[0], -1)[0].float(), dim=0)
    scores, classes = probs.topk(min(k, probs.numel()))
    return tuple(int(c) for c in classes), tuple(float(s) for s in scores)
