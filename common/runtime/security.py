"""Who may talk to whom: ZeroMQ CURVE keys, per role, on every TCP socket (the "Ironhouse" pattern).

Every service has a key pair; servers (broker, planner) are known to their clients by public key,
so a client talks only to the real server, and every server checks each client's public key
against the keys of the roles that socket serves — before any handler sees a byte:

| socket (domain) | server | clients allowed |
| --- | --- | --- |
| broker frontend (`edge`) | broker | edge keys |
| broker backend (`worker`) | broker | worker keys |
| planner inbox (`planner-in`) | planner | edge, worker, broker, operator keys; and per message: profiles and telemetry only from edges, cloud profiles only from workers, stats only from the broker, `Control` only from operators |
| planner plans (`planner-out`) | planner | edge, worker, operator keys |

A key directory (`dads keys init DIR`) holds `ROLE.key` (public) and `ROLE.key_secret` files
(zmq's certificate format); more clients of a role are `ROLE-NAME.key` (`dads keys add`). A
machine needs only its own secret and the public keys of the others (README, "Trust model").
Refused handshakes are counted by role (`dads_auth_failures_total`) from the socket's monitor.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import recv_monitor_message

from common.errors import DadsError

__all__ = ["ROLES", "DOMAINS", "KeysError", "Keys", "init_keys", "add_key", "Guard",
           "handshake_monitor", "watch_handshakes", "handshake_trouble", "watch_all_handshakes", "HANDSHAKE_FAILURES", "role_allowed", "from_options",
           "client_socket", "curve_client"]

log = logging.getLogger("security")

ROLES = ("edge", "worker", "operator", "broker", "planner")
#: ZAP domain of each server socket -> the client roles it admits
DOMAINS: dict[str, tuple[str, ...]] = {
    "edge": ("edge",),
    "worker": ("worker",),
    "planner-in": ("edge", "worker", "broker", "operator"),
    "planner-out": ("edge", "worker", "operator"),
}
HANDSHAKE_FAILURES = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                      | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class KeysError(DadsError):
    """A key directory that lacks what this service needs; the message says what to do."""


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise KeysError(f"unknown role {role!r}: one of {', '.join(ROLES)}")


def _read_only(d: Path) -> bool:
    return bool(os.statvfs(d).f_flag & os.ST_RDONLY)


def _check_directory(d: Path) -> bool:
    """The key directory decides who is admitted (every ROLE*.key in it is a trusted client):
    one that others may write to (on a writable mount) is refused; one they may read or list,
    warned about (700 is asked for: a listing tells which cameras and workers exist). Whether
    it is a read-only mount (a Kubernetes Secret), which the secrets' own check needs too."""
    mode = d.stat().st_mode
    read_only = _read_only(d)
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not read_only:
        raise KeysError(f"key directory {d} is writable by others (mode {oct(mode & 0o777)}): "
                        f"anyone who can add a key there is admitted; chmod 700 {d}")
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and not read_only:
        log.warning("key directory %s is open to others (mode %s): chmod 700 %s", d,
                    oct(mode & 0o777), d)
    return read_only


def init_keys(directory: str | os.PathLike[str], force: bool = False) -> list[Path]:
    """One key pair per role in `directory` (mode 0700; secrets 0600)."""
    out = Path(directory)
    if out.exists() and any(out.glob("*.key_secret")) and not force:
        raise KeysError(f"{out} already holds keys; use --force to replace them")
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(stat.S_IRWXU)
    return [add_key(out, role) for role in ROLES]


def add_key(directory: str | os.PathLike[str], role: str, name: str = "") -> Path:
    """A new key pair `ROLE.key` (or `ROLE-NAME.key`): another edge, worker or operator."""
    _check_role(role)
    if name and not name.replace("_", "").replace("-", "").isalnum():
        raise KeysError(f"key name {name!r}: letters, digits, - and _ only")
    stem = f"{role}-{name}" if name else role
    public, secret = zmq.auth.create_certificates(str(directory), stem)
    Path(secret).chmod(stat.S_IRUSR | stat.S_IWUSR)
    return Path(public)


@dataclass(frozen=True)
class Keys:
    """What one service holds: its own pair, the servers' public keys, the clients' by role."""

    directory: Path
    role: str
    public: bytes
    secret: bytes
    servers: dict[str, bytes]  # "broker", "planner" -> public key (z85)
    clients: dict[bytes, str]  # public key (z85) -> role
    names: dict[bytes, str] = field(default_factory=dict)  # public key -> "ROLE[-NAME]"

    @classmethod
    def load(cls, directory: str | os.PathLike[str], role: str, name: str = "") -> Keys:
        _check_role(role)
        d = Path(directory)
        if not d.is_dir():
            raise KeysError(f"no key directory {d}: create one with `dads keys init {d}`")
        read_only = _check_directory(d)
        stem = name or role
        secret_file = d / f"{stem}.key_secret"
        if not secret_file.is_file():
            raise KeysError(f"{secret_file} is missing: this {role} needs its secret key "
                            f"(`dads keys init` makes one per role)")
        mode = secret_file.stat().st_mode
        # a read-only mount (a Kubernetes Secret: root-owned, readable by the pod's fsGroup)
        # may grant its group; anywhere else a secret is its owner's alone
        if mode & stat.S_IRWXO or (mode & stat.S_IRWXG and not read_only):
            raise KeysError(f"{secret_file} is readable by others (mode {oct(mode & 0o777)}): "
                            f"chmod 600 it")
        public, secret = zmq.auth.load_certificate(str(secret_file))
        assert secret is not None
        servers = {}
        for server in ("broker", "planner"):
            f = d / f"{server}.key"
            if f.is_file():
                servers[server] = zmq.auth.load_certificate(str(f))[0]
        clients: dict[bytes, str] = {}
        names: dict[bytes, str] = {}
        for f in sorted(d.glob("*.key")):
            owner = f.stem.split("-", 1)[0]
            if owner in ROLES:
                key = zmq.auth.load_certificate(str(f))[0]
                clients[key], names[key] = owner, f.stem
        return cls(d, role, public, secret, servers, clients, names)

    def server_key(self, server: str) -> bytes:
        key = self.servers.get(server)
        if key is None:
            raise KeysError(f"{self.directory / (server + '.key')} is missing: the {self.role} "
                            f"needs the {server}'s public key to know it is talking to the real one")
        return key

    def role_of(self, user_id: str) -> str | None:
        """The role of an authenticated peer (its User-Id is its public key, z85)."""
        return self.clients.get(user_id.encode())

    def name_of(self, user_id: str) -> str | None:
        """The key name of an authenticated peer ("edge", "edge-cam1"): a bounded label, since
        only keys in the directory are admitted."""
        return self.names.get(user_id.encode())


class Guard:
    """The ZAP handler of a server process: admits each domain's roles, refuses the rest."""

    def __init__(self, keys: Keys, ctx: zmq.asyncio.Context) -> None:
        self.keys = keys
        self.auth = AsyncioAuthenticator(ctx, log=logging.getLogger("zap"))
        self.auth.start()
        for domain in DOMAINS:
            self.auth.configure_curve_callback(domain, credentials_provider=self)

    def callback(self, domain: str, key: bytes) -> bool:
        role = self.keys.clients.get(key)
        return role is not None and role in DOMAINS.get(domain, ())

    def stop(self) -> None:
        self.auth.stop()


def handshake_monitor(sock: zmq.asyncio.Socket) -> zmq.asyncio.Socket:
    """The monitor of a server socket's handshake failures, made when the socket is opened:
    before any other thread may drive the socket (zmq sockets are not thread-safe)."""
    return sock.get_monitor_socket(HANDSHAKE_FAILURES)


async def watch_handshakes(monitor: zmq.asyncio.Socket, on_failure: Callable[[], None]) -> None:
    """Count refused handshakes (no key, a wrong key, a role not admitted) on a server socket,
    from its monitor (`handshake_monitor`)."""
    try:
        while True:
            event = await recv_monitor_message(monitor)
            if event["event"] & HANDSHAKE_FAILURES:
                on_failure()
    finally:
        monitor.close(linger=0)


def watch_all_handshakes(monitors: Iterable[tuple[str, zmq.asyncio.Socket]],
                          count: Callable[[str], None]) -> list[asyncio.Task[None]]:
    """One watcher task per (domain, monitor) of a server socket, named by its domain;
    `count(domain)` per refusal."""
    return [asyncio.create_task(watch_handshakes(monitor, functools.partial(count, domain)),
                                name=f"auth-{domain}") for domain, monitor in monitors]


def handshake_trouble(event: int, server: str, endpoint: str) -> str | None:
    """What a client socket's failed handshake says, in words (None for any other event).

    The client sees a refusal by the server's authenticator (its key is not admitted, or not for
    this socket) as HANDSHAKE_FAILED_AUTH; a server key that is not the server's, or plaintext
    against CURVE, as a handshake that fails without detail or by protocol."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (f"the {server} at {endpoint} refused this key: it does not admit it (a key from "
                f"another `dads keys init`, or a role it does not take on this socket)")
    if event in (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
        return (f"the handshake with the {server} at {endpoint} failed: the {server}.key held "
                f"here is not that {server}'s (keys from another `dads keys init`?), or one side "
                "runs --insecure and the other does not")
    return None


def role_allowed(keys: Keys | None, user: str, roles: Iterable[str]) -> bool:
    """Per-message check behind a shared socket; always true without keys (--insecure)."""
    return keys is None or keys.role_of(user) in set(roles)


def curve_client(sock: zmq.Socket, keys: Keys | None, server: str) -> None:
    """Make `sock` a CURVE client as `keys`' role that trusts `server`'s public key only (as
    it is, in plaintext, without keys: --insecure). Before it connects."""
    if keys is not None:
        sock.curve_secretkey = keys.secret
        sock.curve_publickey = keys.public
        sock.curve_serverkey = keys.server_key(server)


def client_socket(ctx: zmq.Context, kind: int, endpoint: str, keys: Keys | None,
                  server: str) -> zmq.Socket:
    """A plain (blocking) socket that connects as `keys`' role, for tools and tests."""
    sock = ctx.socket(kind)
    curve_client(sock, keys, server)
    sock.connect(endpoint)
    return sock


def from_options(keys_dir: str | None, insecure: bool, role: str) -> Keys | None:
    """The keys a service runs with, from its --keys / --insecure options (env DADS_KEYS,
    DADS_INSECURE, DADS_KEY_NAME); None means plaintext, which is only ever chosen explicitly."""
    if insecure:
        log.warning("--insecure: plaintext sockets without authentication; anyone who can reach "
                    "them is trusted (use keys: `dads keys init DIR`, then --keys DIR)")
        return None
    if not keys_dir:
        raise KeysError(f"the {role} has no keys: create them with `dads keys init DIR` and give "
                        f"--keys DIR (env DADS_KEYS), or run plaintext with --insecure")
    return Keys.load(keys_dir, role, os.environ.get("DADS_KEY_NAME", ""))
