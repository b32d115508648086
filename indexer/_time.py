"""Time helpers shared by the indexer's vectorized code."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from recommender.errors import InvalidRequest

__all__ = ["epoch_ns", "utc_timestamp"]


def epoch_ns(values: pd.Series) -> np.ndarray:
    """Return int64 nanoseconds since the epoch for a datetime Series (NaT becomes int64 min).

    tz-aware Series turn into object arrays under ``to_numpy()``; going through int64 keeps the
    math vectorized whatever the stored unit (pandas 3 defaults to microseconds).
    """
    ts = pd.to_datetime(values, utc=True)
    return ts.dt.as_unit("ns").astype("int64").to_numpy()


def utc_timestamp(value: datetime | pd.Timestamp | str, *, name: str = "now") -> pd.Timestamp:
    """Return ``value`` as a UTC pandas Timestamp; naive values are taken as UTC.

    Raises InvalidRequest when ``value`` does not parse as a time.
    """
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InvalidRequest(f"{name}: {value!r} is not a time; pass ISO-8601 such as '2024-05-01T12:00:00Z'") from None
    if ts is pd.NaT:
        raise InvalidRequest(f"{name}: got NaT; pass a real time")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
