"""The live progress display of ``advisoros-hub sync``: one updating line on a terminal,
a line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from hub.sync import SyncResult
from hub.sync_pass import SyncProgress


class ProgressDisplay:
    """Renders :class:`SyncProgress` updates to a stream."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._out = stream or sys.stderr
        self._tty = self._out.isatty()
        self._interval = 0.1 if self._tty else 5.0
        self._last = 0.0
        self._width = 0

    def __call__(self, progress: SyncProgress) -> None:
        """Show ``progress`` if enough time passed since the last update."""
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        counts = progress.counts
        line = (
            f"{progress.connection_id} · {progress.stream}: {progress.records:,} records "
            f"({progress.rate:,.0f}/s) · +{counts.created:,} ~{counts.updated:,} "
            f"-{counts.deleted:,}"
        )
        if self._tty:
            self._out.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self._out.write(line + "\n")
        self._out.flush()

    def finish(self, result: SyncResult, progress: SyncProgress | None = None) -> None:
        """End the live line and print the run's outcome and counts."""
        if self._tty and self._width:
            self._out.write("\r" + " " * self._width + "\r")
        streams = ""
        if progress is not None and progress.per_stream:
            streams = " (" + ", ".join(f"{k} {v:,}" for k, v in progress.per_stream.items()) + ")"
        self._out.write(
            f"run {result.run_id} {result.state} in {result.duration_s:.1f}s: "
            f"{result.created:,} created, {result.updated:,} updated, "
            f"{result.deleted:,} deleted{streams}\n"
        )
        if result.error:
            self._out.write(f"  error ({result.error_class}): {result.error}\n")
        if result.advice:
            self._out.write(f"  what to do: {result.advice}\n")
        self._out.flush()
