"""A tiny progress indicator (no tqdm): a bar redrawn in place on a terminal, a line per ~10 % otherwise (logs)."""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

__all__ = ["Progress"]


class Progress:
    def __init__(self, total: int, stream: Optional[TextIO] = None, enabled: bool = True, width: int = 24):
        self.total = max(int(total), 1)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.width = width
        self.done = 0
        self.start = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1
        self._last_len = 0

    def advance(self, label: str = "", done: int = 1) -> None:
        """Counts ``done`` finished items (0: only shows what runs now)."""
        self.done = min(self.total, self.done + done)
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        if self.tty:
            filled = self.width * self.done // self.total
            bar = "#" * filled + "-" * (self.width - filled)
            line = f"\r[{bar}] {self.done}/{self.total} {elapsed:5.0f}s {label}"[:160]
            pad = max(0, self._last_len - len(line))
            self.stream.write(line + " " * pad)
            self._last_len = len(line)
            self.stream.flush()
            return
        decile = 10 * self.done // self.total
        if done and decile != self._last_decile:
            self._last_decile = decile
            self.stream.write(f"[bench] {self.done}/{self.total} ({100 * self.done // self.total}%) "
                              f"{elapsed:.0f}s {label}\n")
            self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
