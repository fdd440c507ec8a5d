"""Defaults of every service setting, in one place; each can be set by an environment variable.

The command-line flags of the services take their defaults from here, so `docker compose` (env
vars) and a shell (flags) configure the same things. `ENV` documents every variable.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["ENV", "env", "env_int", "endpoint", "add_model_arguments",
           "add_planner_arguments", "add_security_arguments", "CONTROL_TIMEOUT_S"]

#: how long an operator waits for the planner's answer to a control (`dads ctl --timeout`)
CONTROL_TIMEOUT_S = 10.0

#: variable -> (default, meaning). The README's settings table is generated from this.
ENV: dict[str, tuple[str, str]] = {
    "DADS_MODEL": ("googlenet", "model: a zoo name or package.module:factory"),
    "DADS_WEIGHTS": ("", "local .pth weights (empty: seeded random weights)"),
    "DADS_SEED": ("0", "seed of the random weights (must match on edge and cloud)"),
    "DADS_BROKER_HOST": ("127.0.0.1", "where edge agents and workers find the broker"),
    "DADS_FRONTEND_PORT": ("5555", "broker port for edge agents (ROUTER)"),
    "DADS_BACKEND_PORT": ("5556", "broker port for cloud workers (ROUTER)"),
    "DADS_PLANNER_HOST": ("127.0.0.1", "where services find the planner"),
    "DADS_PLAN_PORT": ("5557", "planner port publishing plans (PUB)"),
    "DADS_TELEMETRY_PORT": ("5558", "planner port taking profiles, telemetry and operator controls, which it "
                            "answers (ROUTER)"),
    "DADS_BIND_HOST": ("*", "interface the broker and planner bind"),
    "DADS_METRICS_PORT": ("", "Prometheus /metrics port (default per service: broker 9101, "
                          "planner 9102, worker 9103, edge 9104; 0 = any free port)"),
    "DADS_DEVICE": ("auto", "torch device of the worker/edge: auto, cpu, cuda"),
    "DADS_THREADS": ("0", "torch CPU threads (0: torch's default)"),
    "DADS_UPLINK": ("", "edge: emulate an uplink of this rate in the sender (e.g. 4g, 5mbit; "
                    "or a schedule: wifi,3g@15)"),
    "DADS_SOURCE": ("synthetic", "edge: frames from 'synthetic', an image folder, a video file, "
                    "a stream URL (rtsp://, http://, ...: the newest frame, reconnected when it "
                    "breaks), or camera:N"),
    "DADS_EDGE_NAME": ("", "edge: its name at the planner, which plans for each edge (default "
                       "the host name)"),
    "DADS_LOOP": ("", "edge: 1 repeats a folder of images or a video file when it ends"),
    "DADS_FPS": ("10", "edge: frames per second read from the source (0: as fast as possible; "
                 "or a schedule: 2,15@40)"),
    "DADS_TIER": ("cloud", "worker: its tier in plans over tiers (Scission), e.g. edge or cloud"),
    "DADS_NEXT_BROKER": ("", "worker of a middle tier: the next tier's broker frontend, e.g. "
                         "tcp://cloud:5555"),
    "DADS_NEXT_KEYS": ("", "worker of a middle tier: keys toward the next tier (default "
                       "DADS_KEYS): an edge key and the next broker's public key"),
    "DADS_NEXT_KEY_NAME": ("", "worker of a middle tier: its edge key toward the next tier "
                           "(default edge)"),
    "DADS_TIERS": ("", "planner: plan over these tiers, e.g. device,edge,cloud (empty: the "
                   "edge and one pool)"),
    "DADS_LINKS": ("", "planner: with DADS_TIERS, the rates of the links after the first "
                   "(the first is probed), e.g. 1gbit"),
    "DADS_INITIAL_BANDWIDTH": ("4g", "planner: bandwidth assumed before any measurement"),
    "DADS_CALIBRATE": ("1", "planner: 0 plans with the profiles' times as they are; 1 scales them "
                       "by each edge's measured / predicted stage times"),
    "DADS_PREDICTOR": ("", "edge/worker: a latency predictor (`dads predict --save-predictor`): "
                       "with no cached profile, start on a predicted one and measure meanwhile"),
    "DADS_CODEC_FRAMES": ("1", "edge/worker: frames to measure every codec on at start (the "
                          "edge's first real frames; 0: no codecs, raw tensors only)"),
    "DADS_CODECS": ("auto", "planner: codecs a plan may use: auto (all the fidelity policy "
                    "allows), none, or a list, e.g. png,zstd"),
    "DADS_FIDELITY": ("lossless", "planner: what codecs may trade: lossless (bit-exact "
                      "results), any, top1:0.99 or error:0.01 (with DADS_FIDELITY_TABLE)"),
    "DADS_LATENCY_GOAL": ("", "planner: with an early-exit model, the most accurate exit whose "
                          "best cut meets this latency (e.g. 200ms; empty: the most accurate)"),
    "DADS_FIDELITY_TABLE": ("", "planner: the fidelity of each codec, from `dads codecs`"),
    "DADS_MAX_PAYLOAD_BYTES": (str(256 * 2**20), "largest tensor payload of one message"),
    "DADS_KEYS": ("", "directory of CURVE keys (`dads keys init DIR`); required unless insecure"),
    "DADS_KEY_NAME": ("", "this service's key in DADS_KEYS, if not its role's (e.g. edge-cam2)"),
    "DADS_INSECURE": ("", "1: plaintext sockets without authentication (logged as a warning)"),
    "DADS_METRICS_HOST": ("0.0.0.0", "interface the Prometheus /metrics server binds"),
    "DADS_CACHE": ("", "profile cache directory (empty: ~/.cache/dads; the image: /var/cache/dads)"),
}


def env(name: str) -> str:
    return os.environ.get(name, ENV[name][0])


def env_int(name: str) -> int:
    try:
        return int(env(name) or 0)
    except ValueError:
        raise SystemExit(f"{name}={env(name)!r} is not a whole number") from None


def endpoint(host_var: str, port_var: str, bind: bool = False) -> str:
    host = env("DADS_BIND_HOST") if bind else env(host_var)
    return f"tcp://{host}:{env(port_var)}"


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=env("DADS_MODEL"), help="env DADS_MODEL")
    p.add_argument("--weights", default=env("DADS_WEIGHTS") or None, help="env DADS_WEIGHTS")
    p.add_argument("--seed", type=int, default=env_int("DADS_SEED"), help="env DADS_SEED")
    p.add_argument("--device", default=env("DADS_DEVICE"),
                   help="auto, cpu, cuda (env DADS_DEVICE)")
    p.add_argument("--threads", type=int, default=env_int("DADS_THREADS"),
                   help="torch CPU threads (env DADS_THREADS; 0: torch's default)")
    p.add_argument("--profile-repeats", type=int, default=5, help="profiling passes (default 5)")
    p.add_argument("--predictor", default=env("DADS_PREDICTOR") or None, metavar="FILE",
                   help="with no cached profile, plan with one predicted from the model's shapes "
                   "while the real one is measured (env DADS_PREDICTOR)")
    p.add_argument("--codec-frames", type=int, default=env_int("DADS_CODEC_FRAMES"), metavar="N",
                   help="measure every codec on N frames at start (0: raw tensors only; env "
                   "DADS_CODEC_FRAMES, default 1)")


def add_planner_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plans", default=endpoint("DADS_PLANNER_HOST", "DADS_PLAN_PORT"),
                   help="planner's plan feed (env DADS_PLANNER_HOST, DADS_PLAN_PORT)")
    p.add_argument("--telemetry", default=endpoint("DADS_PLANNER_HOST", "DADS_TELEMETRY_PORT"),
                   help="planner's telemetry input (env DADS_TELEMETRY_PORT)")


def add_security_arguments(p: argparse.ArgumentParser) -> None:
    """Keys (CURVE, by role) or an explicit --insecure; and where /metrics listens."""
    p.add_argument("--keys", default=env("DADS_KEYS") or None, metavar="DIR",
                   help="CURVE key directory from `dads keys init` (env DADS_KEYS)")
    p.add_argument("--insecure", action="store_true", default=env("DADS_INSECURE") == "1",
                   help="plaintext, unauthenticated sockets (env DADS_INSECURE=1); for trusted "
                   "networks only")
    p.add_argument("--metrics-host", default=env("DADS_METRICS_HOST"), metavar="ADDR",
                   help="interface /metrics binds (env DADS_METRICS_HOST, default 0.0.0.0)")
