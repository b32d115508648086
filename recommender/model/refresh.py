"""Refreshing a checkpoint's counting parts from recent events, without training.

The blend's counting parts (the session-KNN's neighbour sessions, the category shares, the item
counts behind the popularity fallback) say which items were clicked together, and how often, in
the sessions the checkpoint was built from. Where listings churn within hours they go stale
faster than the model (on the synthetic marketplace they lose a third of their accuracy in a day:
docs/session-model.md), while training a model again takes minutes to hours. A refresh keeps the
model, its vocabulary, tail mask, config, content encoder and blend weights, and builds the
counting parts again from the sessions of the last ``days`` of an events file (on the
checkpoint's vocabulary: clicks on items it does not know are left out). `hotfeed model refresh`
writes the result as a new checkpoint and publishes it like any other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recommender.errors import InvalidRequest
from recommender.model.checkpoint import Checkpoint, save_checkpoint
from recommender.model.data import SessionSplit, build_sessions, known_sessions

__all__ = ["Refreshed", "refresh_checkpoint"]

_log = logging.getLogger("hotfeed.refresh")
# Checkpoint meta that describes one file, not the model: written anew with every save.
_PER_FILE_META = ("hotfeed_version", "created_at")


@dataclass(frozen=True)
class Refreshed:
    path: Path
    sessions: int
    clicks: int
    since: pd.Timestamp

    def summary(self) -> str:
        return (f"refreshed the blend's counting parts from {self.sessions:,} sessions ({self.clicks:,} clicks on "
                f"known items) ending after {self.since.isoformat(timespec='minutes')}; checkpoint {self.path}")


def refresh_checkpoint(checkpoint: Checkpoint, events: pd.DataFrame, out: Path, *, days: float,
                       gap_minutes: float = 30.0) -> Refreshed:
    """Write ``checkpoint`` with its blend's counting parts and item counts built from the sessions of
    ``events`` (validated) that end in the last ``days`` of them; return what was written.

    Raises InvalidRequest when the checkpoint has no blend, ``days`` is not positive, or no session
    of the window holds two clicks on items the checkpoint knows.
    """
    if checkpoint.blend is None:
        raise InvalidRequest("the checkpoint serves its model alone (trained with --blend none): it has no counting "
                             "parts to refresh")
    if not days > 0:
        raise InvalidRequest(f"--days must be > 0, got {days!r}")
    if events.empty:
        raise InvalidRequest("the events hold no valid rows: nothing to refresh from")
    clicks = build_sessions(events, gap_minutes=gap_minutes)
    ends = clicks.groupby("session", sort=False)["ts"].transform("max")
    since = ends.max() - pd.Timedelta(days=days)
    sessions = known_sessions(clicks.loc[ends > since], checkpoint.vocab)
    if not sessions:
        raise InvalidRequest(f"no session ending in the last {days:g} days holds 2+ clicks on items the checkpoint "
                             f"knows ({len(checkpoint.vocab) - 1:,} items); widen --days or retrain")
    counts = np.bincount(np.concatenate(sessions), minlength=len(checkpoint.vocab)).astype(np.int64)
    window = SessionSplit(vocab=checkpoint.vocab, train=sessions, valid=[], test=[], item_counts=counts,
                          is_tail=np.asarray(checkpoint.is_tail, dtype=bool))
    blend = checkpoint.blend.refitted(window)
    meta = {k: v for k, v in checkpoint.meta.items() if k not in _PER_FILE_META}
    meta["refreshed"] = {"from": checkpoint.version, "sessions": len(sessions), "since": since.isoformat(),
                         "days": days}
    path = save_checkpoint(out, model=checkpoint.model, config=checkpoint.config, vocab=checkpoint.vocab,
                           item_counts=counts, meta=meta, content=checkpoint.content, blend=blend)
    result = Refreshed(path=path, sessions=len(sessions), clicks=int(counts.sum()), since=since)
    _log.info("%s", result.summary())
    return result
