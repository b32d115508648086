"""The session-KNN baselines on the real Taobao sample under the next-click protocol (marker
``real_data``: run with ``make test-real-data``; fails naming the folder when it is absent)."""

from __future__ import annotations

import pytest

from recommender.model.baselines import Popularity, SessionPopularity
from recommender.model.data import build_sessions, split_sessions
from recommender.model.evaluate import evaluate_scorers
from recommender.model.session_knn import build_session_baseline
from tests.real_samples import imported

pytestmark = pytest.mark.real_data


def test_neighbourhood_baselines_beat_popularity_on_taobao_next_clicks():
    events = imported("taobao").events
    split = split_sessions(build_sessions(events, collapse_repeats=False), test_days=1.0, protocol="next-click")
    scorers = {"POP": Popularity(split.item_counts), "S-POP": SessionPopularity(split.item_counts)}
    for name in ("SR", "V-SKNN", "VSTAN"):
        scorers[name] = build_session_baseline(name, split.item_counts, split.train)
    results = evaluate_scorers(scorers, split, metrics=["HR@20", "MRR@20"])
    # Repeats are targets here: S-POP finds them, POP does not; the neighbourhoods find more.
    assert results["S-POP"]["HR@20"] > 5 * results["POP"]["HR@20"]
    for name in ("V-SKNN", "VSTAN"):
        assert results[name]["HR@20"] > results["S-POP"]["HR@20"] and results[name]["MRR@20"] > results["SR"]["MRR@20"]
