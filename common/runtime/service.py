"""What every service process shares: logging, uvloop, signals, torch work off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from common.errors import DadsError

__all__ = ["setup_logging", "run_service", "Compute", "periodic", "supervise"]

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


class Compute:
    """The one way torch work leaves the event loop: a single worker thread, in order."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compute")

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def periodic(interval_s: float, fn: Callable[[], Awaitable[None]], stop: asyncio.Event,
                   log: logging.Logger) -> None:
    """Call `fn` every `interval_s` until `stop`; an exception is logged, never fatal."""
    while not stop.is_set():
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("periodic task failed; continuing")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


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
