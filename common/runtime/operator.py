"""The operator's side of a `Control`: send it to the planner and wait for its answer.

Why one place: `dads ctl`, the test bed, the benchmarks and the tests all steer a running
planner, and each must learn whether a control was applied (and which plans it made) or why it
was refused, not assume so. What cannot be answered is told apart, in words a person can act
on: nothing listening at the address, a handshake the planner refused (this operator's key is
not one it admits), a handshake that failed (the planner key held here is not that planner's),
or a planner that took the control and said nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from common.errors import DadsError
from common.runtime.config import CONTROL_TIMEOUT_S
from common.runtime.security import Keys, curve_client, handshake_trouble
from common.runtime.wire import Control, ControlReply, WireError, decode, encode

__all__ = ["Operator", "ControlError", "ControlRefused"]

_EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
           | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)


class ControlError(DadsError):
    """The control's fate is unknown: no answer, or no way to talk to the planner."""


class ControlRefused(DadsError):
    """The planner answered: not applied, and why."""


class Operator:
    """A connection to one planner's inbox, as an operator; `control` sends and waits."""

    def __init__(self, endpoint: str, keys: Keys | None,
                 ctx: zmq.Context | None = None) -> None:
        self.endpoint = endpoint
        self.sock = (ctx or zmq.Context.instance()).socket(zmq.DEALER)
        curve_client(self.sock, keys, "planner")
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 100)
        self.monitor = self.sock.get_monitor_socket(_EVENTS)  # before connecting: every event
        self.sock.connect(endpoint)
        self.connected = False
        self.ids = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def control(self, msg: Control, timeout_s: float = CONTROL_TIMEOUT_S) -> ControlReply:
        """Send `msg`; its answer when applied. Raises ControlRefused with the planner's reason,
        ControlError when no answer comes in `timeout_s` (saying what it knows of why)."""
        control_id = next(self.ids)
        self.sock.send_multipart(encode(dataclasses.replace(msg, control_id=control_id)))
        deadline = time.monotonic() + timeout_s
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        while (left := deadline - time.monotonic()) > 0:
            ready = dict(poller.poll(left * 1000))
            if self.monitor in ready:
                self._event(recv_monitor_message(self.monitor)["event"])
            if self.sock in ready:
                try:
                    reply, _ = decode(self.sock.recv_multipart())
                except WireError:
                    continue  # not ours to read; the planner's answer may still come
                if isinstance(reply, ControlReply) and reply.control_id == control_id:
                    if not reply.applied:
                        raise ControlRefused(f"the planner refused it: {reply.detail}")
                    return reply
        if not self.connected:
            raise ControlError(f"nothing answered at {self.endpoint} in {timeout_s:g} s: is the "
                               "planner running, and is this its telemetry address (--planner; "
                               "env DADS_PLANNER_HOST, DADS_TELEMETRY_PORT)?")
        raise ControlError(f"the planner at {self.endpoint} took the control but did not answer "
                           f"in {timeout_s:g} s (busy, or older than this dads?)")

    def _event(self, event: int) -> None:
        trouble = handshake_trouble(event, "planner", self.endpoint)
        if trouble:
            raise ControlError(trouble)
        self.connected = self.connected or event == zmq.EVENT_CONNECTED

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)

    def __enter__(self) -> Operator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
