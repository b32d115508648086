"""Warming a new items index before the alias points at it.

A freshly built (and merged) index answers its first feed queries slowly: the kNN graph and
the doc values are not in the page cache yet and the node has not compiled the query paths.
Until it is warm, the recommender's engine deadline turns those feeds into popular
fallbacks. ``warm_index`` runs the production query shape (the shipped default profile, with
kNN on random query vectors, per region) against the new physical index before the swap.
A warm-up failure is logged and never fails the rebuild: the index is already verified.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from recommender.engine import SearchEngine
from recommender.errors import HotfeedError
from recommender.profiles import load_default_profile, read_item_fields
from recommender.query import FeedContext, build_feed_query
from recommender.settings import Settings

__all__ = ["warm_index"]

_log = logging.getLogger(__name__)


def warm_index(engine: SearchEngine, index: str, settings: Settings, *, regions: Sequence[str] = (),
               now: datetime, queries: int = 20, seed: int = 0) -> int:
    """Run ``queries`` feed queries against ``index``; return how many were answered."""
    try:
        profile = load_default_profile(fields=read_item_fields(settings.paths.mappings_dir))
    except HotfeedError as exc:
        _log.warning("warm-up skipped: the default profile does not load (%s)", exc)
        return 0
    rng = np.random.default_rng(seed)
    places = [""] + [r for r in regions if r][:9]
    answered, started = 0, time.monotonic()
    for n in range(queries):
        vector = rng.normal(size=settings.engine.embedding_dims)
        context = FeedContext(region=places[n % len(places)],
                              query_vector=tuple(float(v) for v in vector / np.linalg.norm(vector)))
        try:
            engine.search(index, build_feed_query(profile, context, now=now), timeout_ms=10_000)
            answered += 1
        except HotfeedError as exc:  # e.g. a node without the join: the other queries would fail alike
            _log.warning("warm-up stopped after %d of %d feed queries: %s", answered, queries, exc)
            return answered
    _log.info("warm-up: %d of %d feed queries answered by %s in %.1fs", answered, queries, index,
              time.monotonic() - started)
    return answered
