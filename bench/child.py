"""The benchmarks' provider fakes run in a child process that announces ``ready <payload>``."""

from __future__ import annotations

import subprocess
import sys


def start_ready_child(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start ``python *args`` and wait for its ``ready <payload>`` line.

    :return: the process and the payload (the rest of the line).
    """
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready "):
        proc.kill()
        raise SystemExit(f"sandbox did not start: {line!r}")
    return proc, line[len("ready ") :].strip()
