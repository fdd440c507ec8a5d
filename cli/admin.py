"""Keys and health: `dads keys` (CURVE key pairs per role) and `dads health` (a healthcheck)."""

from __future__ import annotations

import argparse
import sys
import time


def cmd_keys(args: argparse.Namespace) -> int:
    from common.runtime.security import add_key, init_keys

    if args.action == "init":
        made = init_keys(args.dir, force=args.force)
        print(f"{len(made)} key pairs in {args.dir}: {', '.join(p.stem for p in made)}")
        print("cloud machine: the whole directory. edge machine: edge.key_secret, edge.key, "
              "broker.key, planner.key. operator: operator.key_secret + planner.key.")
    else:
        made = [add_key(args.dir, args.role, args.name)]
        print(f"{made[0].with_suffix('.key_secret')} created; copy {made[0].name} to the cloud "
              f"machine's key directory and restart broker and planner to admit it")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    import urllib.request

    from common.runtime.metrics import LOOP_BEAT

    try:
        with urllib.request.urlopen(f"http://{args.host}:{args.port}/metrics", timeout=3) as r:
            text = r.read().decode()
    except OSError as exc:
        print(f"unhealthy: no metrics on {args.host}:{args.port} ({exc})", file=sys.stderr)
        return 1
    beats = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(LOOP_BEAT)]
    if not beats:
        print(f"unhealthy: {LOOP_BEAT} not exported (not a dads service?)", file=sys.stderr)
        return 1
    age = time.time() - beats[0]
    if age > args.max_age:
        print(f"unhealthy: the event loop last beat {age:.0f} s ago", file=sys.stderr)
        return 1
    print(f"healthy: the event loop beat {age:.1f} s ago")
    return 0


def register(sub: argparse._SubParsersAction, command: str | None) -> None:
    """This group's commands and their options."""
    p = sub.add_parser("keys", help="create CURVE keys: one pair per role (edge, worker, ...)",
                       description="Create the key pairs every socket authenticates with "
                       "(README, 'Trust model'): `init DIR` makes one per role; `add DIR ROLE NAME` "
                       "another edge, worker or operator (ROLE-NAME.key).")
    keys_sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    k = keys_sub.add_parser("init", help="one key pair per role in DIR (secrets mode 600)")
    k.add_argument("dir", metavar="DIR")
    k.add_argument("--force", action="store_true", help="replace the keys DIR holds")
    k = keys_sub.add_parser("add", help="another key pair of a role, e.g. a second camera")
    k.add_argument("dir", metavar="DIR")
    k.add_argument("role", choices=["edge", "worker", "operator"])
    k.add_argument("name", help="letters, digits, - and _ (the file is ROLE-NAME.key)")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("health", help="is a service's event loop alive? (for healthchecks)",
                       description="Read a service's /metrics and check that its event loop beat "
                       "recently: exit 0 if so, 1 with the reason if not.")
    p.add_argument("--port", type=int, required=True, help="the service's metrics port")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    p.add_argument("--max-age", type=float, default=10.0, metavar="S",
                   help="the loop's last beat may be at most S s old (default 10)")
    p.set_defaults(func=cmd_health)
