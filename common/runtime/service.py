"""What every service process shares: one run skeleton, logging, uvloop, signals, torch work off
the event loop.

`Service` is the shape of all four services (STYLE §4): `start()` loads and opens sockets,
`tasks()` names the long-lived tasks (receive loops through one `{message type: handler}` table,
periodic work), `run()` supervises them and closes everything in one order. A service adds
only what is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from common.errors import DadsError, as_command
from common.runtime.metrics import serve
from common.runtime.security import (
    Guard,
    Keys,
    handshake_monitor,
    handshake_trouble,
    role_allowed,
    watch_all_handshakes,
)
from common.runtime.transport import Channel, Envelope, context
from common.runtime.wire import WireError, clip

__all__ = ["setup_logging", "run_service", "entry", "Compute", "periodic", "supervise", "sent_first", "Service",
           "Handler"]

T = TypeVar("T")


def setup_logging(name: str, level: str = "INFO") -> logging.Logger:
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    return logging.getLogger(name)


def run_service(main: Callable[[asyncio.Event], Awaitable[int | None]]) -> int:
    """Run `main(stop)` on uvloop; SIGINT/SIGTERM set `stop` so the service closes cleanly.

    A DadsError (bad options, a model or source that cannot be opened) is a user's error: one
    clear line and exit 2, not a traceback.
    """
    import uvloop

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        return int(await main(stop) or 0)

    try:
        return uvloop.run(runner())
    except DadsError as exc:
        logging.getLogger().error("%s", exc)
        return 2


def entry(prog: str, module: Any, argv: list[str] | None = None) -> int:
    """A service's own command line (`python -m services.X`, what containers and the launcher
    run): the module's `add_arguments` and `main`, and nothing of the `dads` command line.
    Bad options or inputs are one line and exit 2, as under `dads`."""
    doc = (module.__doc__ or prog).strip().split("\n\n")[0]
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    return as_command(prog, lambda: module.main(args))


class Compute:
    """The one way torch work leaves the event loop: a single worker thread, in order."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compute")

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def periodic(interval_s: float, fn: Callable[[], Awaitable[None]], stop: asyncio.Event,
                   log: logging.Logger, wake: asyncio.Event | None = None) -> None:
    """Call `fn` every `interval_s` until `stop`, and at once whenever `wake` is set (news
    that should not wait for the next period); an exception is logged, never fatal."""
    while not stop.is_set():
        if wake is not None:
            wake.clear()  # what set it is seen by this call
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("periodic task failed; continuing")
        with contextlib.suppress(asyncio.TimeoutError):
            if wake is None:
                await asyncio.wait_for(stop.wait(), interval_s)
            else:  # stopping cancels this task
                await asyncio.wait_for(wake.wait(), interval_s)


async def supervise(stop: asyncio.Event, tasks: Iterable[asyncio.Task[Any]],
                    log: logging.Logger, beat: Callable[[], None] | None = None) -> int:
    """Wait for `stop`, or for one of a service's long-lived tasks to end; return the exit code.

    Such a task never ends on its own: one that returns or raises leaves the service half
    alive (a receive loop gone, nobody reading a socket). So it is logged, `stop` is set, and
    the process exits 1, for its supervisor (compose's restart policy, systemd) to restart it.
    `beat` is called from the loop every second (the healthcheck's proof of a live loop).
    """
    watched = set(tasks)
    if beat is not None:
        async def beating() -> None:
            while not stop.is_set():
                beat()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

        watched.add(asyncio.create_task(beating(), name="loop-beat"))
    stopper = asyncio.create_task(stop.wait(), name="stop")
    done, _ = await asyncio.wait({stopper, *watched}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    # a task may return because `stop` was set (periodic loops do): that is the normal way out
    ended = [t for t in done if t is not stopper
             and (t.cancelled() or t.exception() is not None or not stop.is_set())]
    for t in ended:
        exc = None if t.cancelled() else t.exception()
        log.error("task %s %s: stopping the service (exit 1) so that it is restarted",
                  t.get_name(), f"failed with {type(exc).__name__}: {exc}" if exc else "ended",
                  exc_info=exc)
    if ended:
        stop.set()
        return 1
    return 0


class _Metrics(Protocol):
    """What the base needs of a service's metrics (common.runtime.metrics has one per service)."""

    registry: Any
    errors: Any
    loop_beat: Any


#: a handler of one message type; may be a plain function or a coroutine function
Handler = Callable[[Envelope], Awaitable[None] | None]


#: what a connecting socket's monitor reports (`Service.open`'s `on_link` sees these)
LINK_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
               | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
               | zmq.EVENT_DISCONNECTED | zmq.EVENT_MONITOR_STOPPED)


class Service:
    """The run skeleton of every service: metrics served, sockets opened, tasks supervised.

    Why one base: each service used to repeat the same skeleton (serve metrics, open sockets,
    start tasks, supervise, cancel, close), and each receive loop the same error handling; the
    copies drifted (one loop counted a bad message, another also logged it whole). Here:

    - `start()` (override): load what the service needs, open its sockets with `open()`, which
      keeps them for closing and, for a bound CURVE socket, starts the ZAP guard and has its
      refused handshakes counted (`dads_auth_failures_total{role}`).
    - `tasks()` (override): the long-lived tasks by name. None of them ends on its own; one
      that does stops the service with exit 1 (`supervise`), for its supervisor to restart it.
    - `main()`: what runs while they do; by default, waiting for `stop`. The edge agent
      overrides it (its stream can end by itself).
    - `close()` (extend): cancel what the service started on its own, then `super().close()`.
    """

    name = "service"
    close_linger_ms = 0  # how long closing waits to flush what is queued to send (0: drop it)

    def __init__(self, metrics: _Metrics, keys: Keys | None, metrics_port: int,
                 metrics_host: str = "0.0.0.0") -> None:
        self.metrics = metrics
        self.keys = keys
        self.metrics_port, self.metrics_host = metrics_port, metrics_host
        self.log = logging.getLogger(self.name)
        self.compute = Compute()
        self.stop = asyncio.Event()
        self.channels: list[Channel] = []
        self.guard: Guard | None = None
        # bound CURVE sockets: (domain, the socket's handshake monitor)
        self._served: list[tuple[str, zmq.asyncio.Socket]] = []
        self._links: set[asyncio.Task[None]] = set()  # connecting sockets' handshake watchers

    # -- the skeleton --
    async def run(self, stop: asyncio.Event) -> int:
        self.stop = stop
        port = serve(self.metrics.registry, self.metrics_port, self.metrics_host)
        self.log.info("metrics on :%d", port)
        try:
            await self.start()
            tasks = [asyncio.create_task(coro, name=name) for name, coro in self.tasks().items()]
            if self._served:
                tasks += watch_all_handshakes(self._served, self._auth_failed)
            try:
                rc = await self.main(tasks)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await self.close()
        self.log.info("stopped")
        return rc

    async def start(self) -> None:
        """Load, open sockets (override)."""

    def tasks(self) -> dict[str, Coroutine[Any, Any, None]]:
        """The long-lived tasks, by name (override)."""
        return {}

    async def main(self, tasks: list[asyncio.Task[Any]]) -> int:
        return await self.supervise(tasks)

    async def supervise(self, tasks: list[asyncio.Task[Any]]) -> int:
        return await supervise(self.stop, tasks, self.log, self.metrics.loop_beat.set_to_current_time)

    async def close(self) -> None:
        for task in self._links:
            task.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)
        for ch in self.channels:
            ch.close(self.close_linger_ms)
        if self.guard is not None:
            self.guard.stop()
        self.compute.close()

    # -- helpers for subclasses --
    def open(self, kind: int, endpoint: str, *, bind: bool, domain: str | None = None,
             server: str | None = None, identity: bytes | None = None,
             on_link: Callable[[int], None] | None = None) -> Channel:
        """A channel of this service, closed with it; CURVE with the service's keys. A
        connecting one's handshakes are watched (`_watch_server`); `on_link` sees each of its
        monitor events (LINK_EVENTS). Called from the event loop (start(), or later)."""
        if bind and self.keys is not None and self.guard is None:
            self.guard = Guard(self.keys, context())  # admits each socket's roles only
        ch = Channel.open(kind, endpoint, bind=bind, keys=self.keys, domain=domain, server=server,
                          identity=identity)
        self.channels.append(ch)
        if bind and self.keys is not None and domain is not None:
            self._served.append((domain, handshake_monitor(ch.sock)))
        if not bind:
            monitor = ch.sock.get_monitor_socket(LINK_EVENTS)
            task = asyncio.get_running_loop().create_task(
                self._watch_server(server or "server", endpoint, ch.sock, monitor, on_link),
                name=f"link-{server}")
            self._links.add(task)
            task.add_done_callback(self._links.discard)
        return ch

    async def _watch_server(self, server: str, endpoint: str, sock: zmq.asyncio.Socket,
                            monitor: zmq.asyncio.Socket, on_link: Callable[[int], None] | None
                            ) -> None:
        """A refused handshake is said once, plainly, with what to check, and counted
        (`dads_errors_total{kind="handshake"}`), not once per retry; a success after it is
        said too. Without this a wrong key shows only as a link that comes and goes."""
        refused = False
        try:
            while True:
                event = (await recv_monitor_message(monitor))["event"]
                if event == zmq.EVENT_MONITOR_STOPPED:
                    return
                trouble = handshake_trouble(event, server, endpoint)
                if trouble:
                    self.metrics.errors.labels("handshake").inc()
                    if not refused:
                        self.log.error("%s; retrying (said once until it succeeds)", trouble)
                    refused = True
                elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED and refused:
                    refused = False
                    self.log.info("the %s at %s: handshake succeeded", server, endpoint)
                if on_link is not None:
                    on_link(event)
        finally:
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
            monitor.close(linger=0)

    def forget(self, ch: Channel) -> None:
        """Close a channel before the service closes (a reconnect replaces it)."""
        ch.close()
        if ch in self.channels:
            self.channels.remove(ch)

    def every(self, interval_s: float, fn: Callable[[], Awaitable[None]],
              wake: asyncio.Event | None = None) -> Coroutine[Any, Any, None]:
        return periodic(interval_s, fn, self.stop, self.log, wake)

    async def receive(self, ch: Channel, handlers: Mapping[type, Handler], *,
                      senders: Mapping[type, tuple[str, ...]] | None = None,
                      other: Handler | None = None,
                      refused: Callable[[WireError], Awaitable[None] | None] | None = None
                      ) -> None:
        """A receive loop: each message to `deliver`, an async handler's work awaited in turn."""
        while True:
            pending = self.deliver(ch, await ch.recv_parts(), handlers, senders=senders,
                                   other=other, refused=refused)
            if pending is not None:
                await pending

    def deliver(self, ch: Channel, parts: list[Any], handlers: Mapping[type, Handler], *,
                senders: Mapping[type, tuple[str, ...]] | None = None,
                other: Handler | None = None,
                refused: Callable[[WireError], Awaitable[None] | None] | None = None
                ) -> Awaitable[None] | None:
        """One received message to the handler of its type; returns an async handler's work.

        A message that does not decode is counted (and given to `refused`, which may answer it);
        one of a type without a handler goes to `other`, else it is counted as unexpected;
        with `senders`, a message whose sender's role may not send its type is refused and
        counted. A handler that raises (content a peer made up) is counted and logged in one
        bounded line: nothing a peer sends ends the loop. Synchronous so that a plain poll
        loop (the broker's) delivers through the same checks as the asyncio services.
        """
        try:
            env = ch.parse(parts)
        except WireError as exc:
            self.metrics.errors.labels(exc.code).inc()
            if refused is not None:
                return refused(exc)
            self.log.warning("refused a message: %s", exc)
            return None
        kind = type(env.msg)
        if senders is not None and not self._admitted(env, senders.get(kind, ())):
            return None
        handler = handlers.get(kind, other)
        if handler is None:
            self.metrics.errors.labels("unexpected").inc()
            return None
        try:
            result = handler(env)
        except Exception as exc:
            self._bad_input(kind, exc)
            return None
        return None if result is None else self._guarded(kind, result)

    async def _guarded(self, kind: type, work: Awaitable[None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._bad_input(kind, exc)

    def _bad_input(self, kind: type, exc: Exception) -> None:
        self.metrics.errors.labels("bad_input").inc()
        self.log.warning("ignored %s: %s: %s", kind.__name__, type(exc).__name__, clip(exc))

    def _admitted(self, env: Envelope, roles: tuple[str, ...]) -> bool:
        if role_allowed(self.keys, env.user, roles):
            return True
        role = self.keys.role_of(env.user) if self.keys else None
        self._auth_failed("/".join(roles) or "none")
        self.log.warning("refused a %s from a %s key: only %s may send it",
                         type(env.msg).__name__, role, " or ".join(roles) or "nobody")
        return False

    def _auth_failed(self, role: str) -> None:
        failures = getattr(self.metrics, "auth_failures", None)
        if failures is not None:
            failures.labels(role).inc()


async def sent_first(sent: Callable[[], bool], limit_s: float = 15.0) -> None:
    """Wait (a little) until `sent()`: e.g. a predicted profile has gone out before the measured
    one replaces it (a small model measures before a socket is even up)."""
    deadline = time.monotonic() + limit_s
    while not sent() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
