"""`dads` as a whole: its help, and what starts without torch."""

from __future__ import annotations

import subprocess
import sys

TOY = "tests.toy_models:branchy"


def test_help_reads_well() -> None:
    out = subprocess.run([sys.executable, "-m", "cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for word in ("profile", "split-check", "costgraph", "examples:", "cloud-worker", "testbed"):
        assert word in out


def test_help_and_ctl_start_without_torch() -> None:
    """Only the chosen service's options are built: `dads --help` and `dads ctl` stay light."""
    probe = ("import sys; import cli\n"
             "for argv in (['--help'], ['ctl', '--help'], ['planner', '--help']):\n"
             "    try: cli.main(argv)\n"
             "    except SystemExit: pass\n"
             "    print(argv[0], 'torch' in sys.modules, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stderr.split("\n")[:2] == ["--help False", "ctl False"]
    assert "--tick" in out.stdout  # the chosen service's own options are all there
