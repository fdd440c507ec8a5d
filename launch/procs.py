"""Starting and stopping the services as processes: what `dads up`, the test bed, the tests
and the benchmarks share (the test bed runs them under `ip netns exec`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["start_service", "wait_log", "security_env", "stop_system"]


def start_service(name: str, args: list[str], log: Path, stdout: Any = "log",
                  env: dict[str, str] | None = None, prefix: list[str] | None = None
                  ) -> subprocess.Popen[bytes]:
    """Start `python -m services.NAME`; stderr to `log`, stdout too unless given (None: ours).

    `prefix` runs it under another command, e.g. `ip netns exec NS` in the test bed.
    """
    cmd = [*(prefix or []), sys.executable, "-m", f"services.{name}", *args]
    with open(log, "ab") as err:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, stdout=err if stdout == "log" else stdout, stderr=err,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                start_new_session=True)


def wait_log(log: Path, text: str, proc: subprocess.Popen[bytes] | None = None,
             timeout: float = 120.0) -> None:
    """Wait until a service logs `text` (it is ready); fail early, with its log, if it exits."""
    deadline = time.monotonic() + timeout
    read = lambda: log.read_text(errors="replace") if log.exists() else ""  # noqa: E731
    while text not in read():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{log.stem} exited ({proc.returncode}); {log}:\n{read()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{log.stem} never logged {text!r}; {log}:\n{read()[-3000:]}")
        time.sleep(0.1)


def security_env(log_dir: Path, insecure: bool = False) -> dict[str, str]:
    """The env that makes every service of a one-machine run secure: throwaway CURVE keys made
    fresh in `log_dir/keys` (or plaintext, only when asked)."""
    if insecure:
        return {"DADS_INSECURE": "1", "DADS_KEYS": ""}
    from common.runtime.security import init_keys

    keys = log_dir / "keys"
    init_keys(keys, force=True)
    return {"DADS_KEYS": str(keys), "DADS_INSECURE": ""}


def stop_system(procs: dict[str, subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    """SIGINT the edge first (it finishes frames in flight), then the rest; kill stragglers."""
    edges = [n for n in procs if n.startswith("edge")]
    for name in edges + [n for n in procs if n not in edges]:
        p = procs[name]
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        if name in edges:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout)
    deadline = time.monotonic() + timeout
    for p in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(max(0.1, deadline - time.monotonic()))
        if p.poll() is None:
            p.kill()
            p.wait()
