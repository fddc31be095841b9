"""Pillow's warnings while an upload is decoded, summarised as at most one log line per image.

Pillow warns once per malformed EXIF entry, with a message that names the tag and sizes, so Python's
once-per-message default let every one through: one PNG with 65,535 bad entries wrote 11 MB to the log,
and each distinct message stayed in the module's `__warningregistry__` for the life of the process.

`warnings.catch_warnings` swaps process-wide state and is not thread-safe, and searches decode in
threads, so instead a filter and a `showwarning` hook are installed once, lazily (like the HEIF opener):
- the filter shows Pillow's warnings "always", which keeps them out of the registry;
- the hook hands a warning to the collector of the thread that raised it, when that thread is inside
  `summarised()` (any warning then, as it comes from the decode); everything else goes on to the hook
  that was there before, unchanged.
A collector keeps a count and the first message, so a flood costs constant memory and one line.
Test runners (pytest) restore the warning state after each test; `enable()` notices and installs again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

log = logging.getLogger(__name__)

PILLOW_MODULES = r"PIL(\.|$)"
FIRST_MESSAGE_CHARS = 300


class Collected:
    def __init__(self) -> None:
        self.count = 0
        self.first = ""

    def add(self, message: Warning | str, category: type[Warning]) -> None:
        if not self.count:
            self.first = f"{category.__name__}: {message}"[:FIRST_MESSAGE_CHARS]
        self.count += 1


class PillowWarnings:
    """The process's warning hook for decodes; one instance, PILLOW_WARNINGS, below."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._previous: Any = warnings.showwarning

    def _installed(self) -> bool:
        return warnings.showwarning == self._show and any(
            action == "always" and module is not None and module.pattern == PILLOW_MODULES
            for action, _, _, module, _ in warnings.filters
        )

    def enable(self) -> None:
        if self._installed():
            return
        with self._lock:
            if self._installed():
                return
            if warnings.showwarning != self._show:
                self._previous = warnings.showwarning
                warnings.showwarning = self._show
            warnings.filterwarnings("always", module=PILLOW_MODULES)

    def _show(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        collected: Collected | None = getattr(self._local, "collected", None)
        if collected is not None:
            collected.add(message, category)
        else:
            self._previous(message, category, filename, lineno, file, line)

    @contextlib.contextmanager
    def summarised(self, what: str) -> Iterator[None]:
        """Collect this thread's warnings while decoding `what`; then log one line if there were any."""
        self.enable()
        collected, outer = Collected(), getattr(self._local, "collected", None)
        self._local.collected = collected
        try:
            yield
        finally:
            self._local.collected = outer
            if collected.count:
                log.warning(
                    "%d Pillow warning(s) while decoding a %s image, the first: %s",
                    collected.count,
                    what,
                    collected.first,
                )


PILLOW_WARNINGS = PillowWarnings()
