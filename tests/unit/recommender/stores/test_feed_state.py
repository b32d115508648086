"""Saved feed states: compact encoding that round-trips."""

from __future__ import annotations

from recommender.stores.feed_pages import FeedState


def test_a_feed_state_round_trips_through_its_compact_encoding():
    state = FeedState(feed_id="f1", profile_name="default", profile_version="v3", model_version="tailnet-ab",
                      request_key="home|u1||seoul||default", pending=[("a", 0.9, "shoes", None), ("b", 0.5, "", {"knn": 0.2})],
                      served=["x", "y"], engine_after=[1.25, "b"], pages=2, served_from="engine")
    raw = state.encode()
    assert b'"pending"' not in raw  # rows are arrays, not objects
    assert FeedState.decode(raw) == state
    assert FeedState.decode(raw.decode()) == state
