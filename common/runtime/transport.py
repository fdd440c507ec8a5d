"""A thin channel over ZeroMQ sockets: options set deliberately, in one place.

Services never touch socket options or the codec directly: they open a channel for a role and
`send`/`recv` typed messages. Socket options:
- LINGER 0: closing never blocks on unsent messages (the protocol retries what matters).
- SNDHWM/RCVHWM: bounded queues; the edge's own window bounds its traffic first.
- IMMEDIATE on connecting sockets: queue only to completed connections, so a message is not
  parked on a peer that is not there.
- ROUTER_MANDATORY on routers: sending to a vanished peer raises instead of dropping silently.
- ZMTP heartbeats: dead TCP peers are noticed by the transport as well as by our own heartbeats.
  libzmq counts only a *whole* received message as a sign of life, so the timeout must exceed
  the longest single transfer: a 150 KB frame takes 9 s on a DADS cat1 uplink (130 kbit/s), and
  a 3 s timeout cut such connections mid-message (found by bench.paper). Liveness of workers is
  our own heartbeat's job (broker --liveness); this one only reaps dead TCP peers.
- MAXMSGSIZE: a peer announcing a frame larger than the limits is disconnected before its bytes
  are buffered.
- CURVE (`keys`): a bound socket is a CURVE server in a ZAP domain (security.DOMAINS says which
  roles it admits); a connecting one trusts only the named server's public key. Messages from an
  authenticated peer carry its public key (`Envelope.user`), for checks per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio

from common.errors import DadsError
from common.runtime.security import DOMAINS, Keys
from common.runtime.wire import LIMITS, Limits, Message, WireError, decode, encode

__all__ = ["Envelope", "Channel", "Blocking", "context", "HWM"]

HWM = 1000
ZMTP_TIMEOUT_MS = 120_000  # > the longest one message may take on the slowest uplink (see above)


def context() -> zmq.asyncio.Context:
    return zmq.asyncio.Context.instance()


@dataclass
class Envelope:
    """One received message: who sent it (routers only), what, and its raw frames."""

    peer: bytes | None
    msg: Message
    frames: list[Any]  # tensor frames (zmq.Frame), not yet copied
    raw: list[Any]  # [kind, header, *frames] as received, to forward without re-encoding
    user: str = ""  # the sender's public key (z85) on an authenticated socket, else ""


def _configure(sock: zmq.asyncio.Socket, limits: Limits) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.MAXMSGSIZE, limits.max_message_bytes)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 5000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, ZMTP_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, ZMTP_TIMEOUT_MS)


class Channel:
    """One socket, typed messages. `recv` raises WireError for a bad message (count it, go on)."""

    def __init__(self, sock: zmq.asyncio.Socket, limits: Limits = LIMITS,
                 identified: bool = False) -> None:
        self.sock = sock
        self.limits = limits
        self.routed = sock.type == zmq.ROUTER
        self.identified = identified  # a CURVE server: ZAP stamps each message with its sender

    @classmethod
    def open(
        cls,
        kind: int,
        endpoint: str,
        *,
        bind: bool,
        identity: bytes | None = None,
        subscribe: bytes | None = None,
        limits: Limits = LIMITS,
        ctx: zmq.asyncio.Context | None = None,
        keys: Keys | None = None,
        domain: str | None = None,
        server: str | None = None,
    ) -> Channel:
        """A socket for one role. With `keys`: bound sockets serve CURVE in `domain`; connecting
        ones trust `server`'s ("broker", "planner") public key only."""
        sock = (ctx or context()).socket(kind)
        _configure(sock, limits)
        if keys is not None:
            sock.curve_secretkey = keys.secret
            sock.curve_publickey = keys.public
            if bind:
                if domain not in DOMAINS:
                    raise ValueError(f"a bound CURVE socket needs a domain of {sorted(DOMAINS)}")
                sock.curve_server = True
                sock.zap_domain = domain.encode()
            else:
                sock.curve_serverkey = keys.server_key(server or "")
        if identity is not None:
            sock.setsockopt(zmq.IDENTITY, identity)
        if kind == zmq.ROUTER:
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting peer takes its name back
        if kind == zmq.SUB:
            sock.setsockopt(zmq.SUBSCRIBE, subscribe or b"")
        if bind:
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:  # a busy port, an address not ours: one clear line
                sock.close(linger=0)
                why = str(exc.strerror).split(" (addr=")[0]
                raise DadsError(f"cannot bind {endpoint}: {why} (another process has "
                                "the port? set another with the service's option or its DADS_*_PORT "
                                "variable)") from None
        else:
            if kind in (zmq.DEALER, zmq.PUSH):
                sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.RECONNECT_IVL, 100)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
            sock.connect(endpoint)
        return cls(sock, limits, identified=keys is not None and bind)

    @property
    def endpoint(self) -> str:
        return self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    async def send(self, msg: Message, frames: Sequence[Any] = (), to: bytes | None = None,
                   nowait: bool = False) -> None:
        parts = encode(msg, frames)
        await self.send_raw(parts, to=to, nowait=nowait)

    async def send_raw(self, parts: list[Any], to: bytes | None = None, nowait: bool = False) -> None:
        flags = zmq.NOBLOCK if nowait else 0
        await self.sock.send_multipart(self.addressed(parts, to), flags=flags, copy=False)

    def addressed(self, parts: list[Any], to: bytes | None) -> list[Any]:
        """A message's frames as the socket sends them: a router's start with the peer's id."""
        if not self.routed:
            return parts
        if to is None:
            raise ValueError("a ROUTER channel needs a peer to send to")
        return [to, *parts]

    async def recv(self) -> Envelope:
        """The next valid message; a WireError carries `.peer` so a router can still answer."""
        return self.parse(await self.recv_parts())

    async def recv_parts(self) -> list[Any]:
        """The next message's frames as received (zmq.Frame), not yet decoded."""
        while True:
            try:
                return await self.sock.recv_multipart(copy=False)
            except zmq.Again:  # a spurious wake-up (seen on a CURVE socket as a peer
                await asyncio.sleep(0)  # reconnected): nothing to read yet, wait again

    def parse(self, parts: list[Any]) -> Envelope:
        """Decode and validate one received message (raises WireError, with `.peer`).

        Frames come as zmq.Frame (the asyncio receive) or, for a message's kind and header,
        as bytes (`Blocking.drain`); the sender's User-Id is read from its first frame, which
        is always a zmq.Frame."""
        first, peer = parts[0], None
        if self.routed:
            peer, parts = first.bytes, parts[1:]
        head = [p if type(p) is bytes else p.bytes for p in parts[:2]]
        try:
            msg, frames = decode(head + parts[2:], self.limits)
        except WireError as exc:
            exc.peer = peer  # type: ignore[attr-defined]
            raise
        user = first.get("User-Id") if self.identified else ""
        return Envelope(peer, msg, frames, parts, user)

    def blocking(self) -> Blocking:
        """This channel's socket for a plain poll loop in one thread (the broker's hot path)."""
        return Blocking(self)

    def close(self, linger_ms: int = 0) -> None:
        """Close now (0), or after up to `linger_ms` flushing what is queued to send."""
        self.sock.close(linger=linger_ms)


class Blocking:
    """A channel's socket driven without asyncio: non-blocking sends and batched receives.

    Why: the asyncio socket wraps every send and receive in futures and loop callbacks, which
    cost more than the ZeroMQ call itself; a forwarding loop that only polls, reads what is
    there and writes it on is several times cheaper per message (bench.transport measures it).
    The sockets stay the channel's (options, CURVE, monitors, closing): this is a second,
    synchronous handle on the same socket (`zmq.Socket.shadow`), to be used from one thread
    while the asyncio handle rests. Sends never wait: a peer whose queue is full (HWM) or that
    is gone raises zmq.ZMQError, and the caller decides (a request is retried elsewhere, a
    result to a vanished edge is dropped and counted).
    """

    def __init__(self, ch: Channel) -> None:
        self.ch = ch
        self.sock = zmq.Socket.shadow(ch.sock.underlying)

    def send(self, msg: Message, frames: Sequence[Any] = (), to: bytes | None = None) -> None:
        self.send_raw(encode(msg, frames), to=to)

    def send_raw(self, parts: list[Any], to: bytes | None = None) -> None:
        """Frame by frame: a zmq.Frame (a tensor as received) is handed on without a copy,
        bytes (ids, kinds, headers: small) are copied, which for small frames is cheaper than
        tracking a buffer zero-copy (pyzmq's own COPY_THRESHOLD rule, applied here because the
        poll loop calls the backend's send without pyzmq's Python-level wrapper)."""
        parts = self.ch.addressed(parts, to)
        sock, last = self.sock, len(parts) - 1
        for i, part in enumerate(parts):
            _send(sock, part, _MORE_NOW if i < last else _NOW,
                  type(part) is not zmq.Frame and len(part) < _COPY_BELOW, False)

    def drain(self, most: int) -> list[list[Any]]:
        """Up to `most` messages that have arrived, without waiting: [routing id (a router's),
        kind, header] as the first frames, the kind and header as bytes, the rest (tensors) as
        zmq.Frame, not copied.

        Asks the socket whether more is there (ZMQ_EVENTS) rather than reading until zmq.Again
        is raised (an exception per batch); frame by frame, with plain int flags and the
        backend's calls: pyzmq's multipart helpers build flag enums per frame, 3x the cost of
        the calls, and receiving a small frame as bytes costs half of receiving it as a
        zmq.Frame (measured: 20 -> 3.5 µs to send and receive a 3-frame request)."""
        batch = []
        sock = self.sock
        small = 3 if self.ch.routed else 2  # [id,] kind, header
        while len(batch) < most and _get(sock, _EVENTS) & _POLLIN:
            frame = _recv(sock, _NOW, False, False)  # a Frame: its metadata names the sender
            parts = [frame]
            more = frame.more
            while more:  # a message arrives whole: the rest is there
                if len(parts) < small:
                    parts.append(_recv(sock, _NOW, True, False))
                    more = _get(sock, _RCVMORE)
                else:
                    frame = _recv(sock, _NOW, False, False)
                    parts.append(frame)
                    more = frame.more
            batch.append(parts)
        return batch


# zmq's flags as plain ints for the poll loop's per-frame calls (see `Blocking.drain`)
_NOW, _MORE_NOW = int(zmq.NOBLOCK), int(zmq.NOBLOCK | zmq.SNDMORE)
_EVENTS, _POLLIN, _RCVMORE = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.RCVMORE)
_COPY_BELOW = zmq.COPY_THRESHOLD
_send, _recv, _get = zmq.backend.Socket.send, zmq.backend.Socket.recv, zmq.backend.Socket.get  # unwrapped
