"""Reading the edge agent's results file (`--output`: one JSON object per frame, per line).

The file is read while the edge still writes it (benchmarks, tests, a user's `tail`): a line
is only complete once its newline is there, so a half-written last line is left for later.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["read_results"]


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The complete lines of a results file so far (none if it does not exist yet)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    complete = text[:text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]
