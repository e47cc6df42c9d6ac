"""A small progress bar on standard error: one redrawn line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress(total, "racing") as bar: bar.update("Rosenbrock")`` — shows count, bar, elapsed, ETA."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, width: int = 24) -> None:
        self.total, self.label, self.width = max(total, 1), label, width
        self.stream = stream if stream is not None else sys.stderr
        self.done, self.start = 0, time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def update(self, item: str) -> None:
        """Announce ``item`` as the next piece of work (call before doing it)."""
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        filled = round(self.width * self.done / self.total)
        bar = "█" * filled + "·" * (self.width - filled)
        timing = f"{elapsed:4.0f}s" + (f", ~{eta:.0f}s left" if eta is not None else "")
        line = f"{self.label} [{bar}] {self.done + 1}/{self.total} {item} ({timing})"
        self.stream.write(("\r" + line + "\033[K") if self.tty else f"[{self.done + 1}/{self.total}] {item}\n")
        self.stream.flush()
        self.done += 1
