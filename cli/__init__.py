"""The `dads` command line: planning, models and profiles, the services, control and keys.

A service's own entry (`python -m services.X`) does not go through here; `dads X` does.
"""

from cli.main import main

__all__ = ["main"]
