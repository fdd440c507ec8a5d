"""What the edge agent and the cloud worker share: the model they serve and how they host it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from common import config
from common.graph import ModelGraph, trace
from common.models import input_shape_for, load_served, synthetic_frame
from common.profile import Profile
from common.profiler import cached_profile, resolve_device

__all__ = ["Hosted", "host_model", "top_k", "add_model_arguments", "add_planner_arguments"]

TOP_K = 5


@dataclass
class Hosted:
    graph: ModelGraph  # the served model (normalisation inside), traced on a uint8 frame
    profile: Profile  # this device's, cached
    device: torch.device
    shape: tuple[int, ...]  # the input frame's


def host_model(args: argparse.Namespace) -> Hosted:
    """Build, trace and profile the served model on this device (blocking: run it in a thread)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    shape = input_shape_for(args.model)
    graph = trace(load_served(args.model, args.weights, args.seed), synthetic_frame(0, shape),
                  name=args.model)
    profile = cached_profile(graph, str(device), progress=False, repeats=args.profile_repeats)
    graph.module.to(device)
    return Hosted(graph, profile, device, shape)


def top_k(output: object, k: int = TOP_K) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The k most likely classes of the first output, with their softmax scores."""
    out = output[0] if isinstance(output, (tuple, list)) else output
    assert isinstance(out, torch.Tensor)
    probs = torch.softmax(out.reshape(out.shape[0], -1)[0].float(), dim=0)
    scores, classes = probs.topk(min(k, probs.numel()))
    return tuple(int(c) for c in classes), tuple(float(s) for s in scores)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=config.env("DADS_MODEL"), help="env DADS_MODEL")
    p.add_argument("--weights", default=config.env("DADS_WEIGHTS") or None, help="env DADS_WEIGHTS")
    p.add_argument("--seed", type=int, default=config.env_int("DADS_SEED"), help="env DADS_SEED")
    p.add_argument("--device", default=config.env("DADS_DEVICE"),
                   help="auto, cpu, cuda (env DADS_DEVICE)")
    p.add_argument("--threads", type=int, default=config.env_int("DADS_THREADS"),
                   help="torch CPU threads (env DADS_THREADS; 0: torch's default)")
    p.add_argument("--profile-repeats", type=int, default=5, help="profiling passes (default 5)")


def add_planner_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plans", default=config.endpoint("DADS_PLANNER_HOST", "DADS_PLAN_PORT"),
                   help="planner's plan feed (env DADS_PLANNER_HOST, DADS_PLAN_PORT)")
    p.add_argument("--telemetry", default=config.endpoint("DADS_PLANNER_HOST", "DADS_TELEMETRY_PORT"),
                   help="planner's telemetry input (env DADS_TELEMETRY_PORT)")
