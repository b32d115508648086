"""What the benchmarks print and write: a two-column table, the load average line, the JSON report.

Benchmarks run as scripts (`python bench/NAME.py`), so this folder is on sys.path and they
import it as ``_report``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

__all__ = ["RESULTS", "load_line", "print_measures", "write_report"]


def load_line() -> str:
    """Return the load average and core count, to print next to every figure."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def print_measures(rows: Iterable[tuple[str, Any]], *, name_width: int = 36, value_width: int = 14) -> None:
    """Print a ``measure | value`` table."""
    print(f"\n{'measure':<{name_width}}{'value':>{value_width}}\n" + "-" * (name_width + value_width))
    for name, value in rows:
        print(f"{name:<{name_width}}{str(value):>{value_width}}")


def write_report(report: dict[str, Any], name: str) -> Path:
    """Write ``report`` (with the load average at the end) to bench/results/NAME; print and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / name
    out.write_text(json.dumps({**report, "load_avg_end": os.getloadavg()}, indent=2, default=str))
    print(f"wrote {out}")
    return out
