"""Sessions derived from inactivity gaps, for sources that carry no session id."""

from __future__ import annotations

import numpy as np
import pandas as pd

from indexer._time import epoch_ns

__all__ = ["assign_sessions_by_gap"]


def assign_sessions_by_gap(
    events: pd.DataFrame,
    *,
    client_column: str = "user_id",
    gap_min: float = 30.0,
    prefix: str = "",
) -> pd.Series:
    """Return a session id per event: a new session starts after ``gap_min`` minutes of inactivity.

    Sessions are cut per client (``client_column``): a client's first event and every event
    that comes more than ``gap_min`` minutes after that client's previous one open a new
    session. Ids read ``<prefix><client>-<n>`` with ``n`` counting the client's sessions from 0
    in time order, so they are stable for the same input whatever the row order. The result is
    aligned with ``events.index``; events with no client get <NA>.
    """
    if events.empty:
        return pd.Series(pd.array([], dtype="string"), index=events.index, name="session_id")
    client = events[client_column].astype("string")
    ts_ns = epoch_ns(events["ts"])
    # Sort once by client then time; a stable sort keeps ties in input order.
    key = client.fillna("").to_numpy(dtype=object)
    order = np.lexsort((ts_ns, key))
    c_sorted = key[order]
    t_sorted = ts_ns[order]
    same_client = np.zeros(len(order), dtype=bool)
    same_client[1:] = c_sorted[1:] == c_sorted[:-1]
    gap_ns = np.zeros(len(order), dtype=np.int64)
    gap_ns[1:] = t_sorted[1:] - t_sorted[:-1]
    starts = ~same_client | (gap_ns > int(gap_min * 60e9))
    # The n-th session of a client: running count of starts minus the count before the client began.
    run = np.cumsum(starts)
    client_first = ~same_client
    base = np.maximum.accumulate(np.where(client_first, run, 0))
    nth = run - base
    sid_sorted = prefix + pd.Series(c_sorted, dtype="string") + "-" + pd.Series(nth).astype("string")
    out = np.empty(len(order), dtype=object)
    out[order] = sid_sorted.to_numpy(dtype=object)
    result = pd.Series(pd.array(out, dtype="string"), index=events.index, name="session_id")
    return result.mask(client.isna())
