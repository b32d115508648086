"""The popularity decay, in one place: an event's weight halves every half-life.

Used by the full rebuild (indexer/popularity.py, arrays), the near-real-time indexer and the
cohort maxima (scalars), and the clustering job's category affinity.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

__all__ = ["half_life_decay"]

_T = TypeVar("_T", float, np.ndarray)


def half_life_decay(age: _T, half_life: float) -> _T:
    """Return ``0.5 ** (age / half_life)``: 1 at age 0, 0.5 at one half-life (any unit, both alike).

    Works on a float or a numpy array of ages; negative ages (clock skew) are treated as 0.
    """
    if isinstance(age, np.ndarray):
        return np.exp2(-np.maximum(age, 0.0) / half_life)
    return 0.5 ** (max(float(age), 0.0) / half_life)
