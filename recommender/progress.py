"""Progress of long jobs: a bar on a terminal, plain log lines everywhere else.

A tqdm bar written into a file or a CI log is megabytes of carriage-return redraws; when
stderr is not a terminal, ``progress_bar`` returns ``LogProgress`` instead, which logs one
line every ``every_s`` seconds and one when it ends, and offers the part of tqdm's interface
hotfeed uses (iteration, ``update``, ``set_postfix``, ``set_postfix_str``, ``close``, ``with``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from tqdm import tqdm

__all__ = ["progress_bar", "LogProgress"]

_log = logging.getLogger("hotfeed.progress")


class LogProgress:
    """tqdm's interface subset, reporting as log lines (see the module docstring)."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", every_s: float = 10.0):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)  # type: ignore[arg-type]
        self.desc = desc
        self.unit = unit
        self.every_s = every_s
        self.n = 0
        self.postfix = ""
        self._started = self._last = time.monotonic()
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._emit("")

    def set_postfix(self, values: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        items = {**(values or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._emit(" done")

    def _emit(self, suffix: str) -> None:
        elapsed = time.monotonic() - self._started
        of = f"/{self.total:,}" if self.total is not None else ""
        rate = self.n / elapsed if elapsed > 0 else 0.0
        extra = f" ({self.postfix})" if self.postfix else ""
        _log.info("%s: %s%s %s in %.0fs, %.0f %s/s%s%s", self.desc, f"{self.n:,}", of, self.unit, elapsed, rate,
                  self.unit, extra, suffix)


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 disable: bool = False, every_s: float = 10.0, **tqdm_options: Any) -> Any:
    """Return a tqdm bar when stderr is a terminal, else a ``LogProgress``; a silent tqdm when ``disable``."""
    if disable or sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, **tqdm_options)
    return LogProgress(iterable, total=total, desc=desc, unit=unit, every_s=every_s)
