"""The dads services: edge agent, broker, cloud workers, planner."""

from __future__ import annotations

import importlib
import sys
from typing import NoReturn


def run(prog: str, module: str) -> NoReturn:
    """A service's `python -m` entry (`common.runtime.service.entry` on `module`). A Ctrl-C
    while it is still importing (torch takes seconds) stops it quietly, exit 130, as one later
    does: a stop during start-up is not a crash and leaves no traceback in its log."""
    try:
        from common.runtime.service import entry

        loaded = importlib.import_module(module)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(entry(prog, loaded))
