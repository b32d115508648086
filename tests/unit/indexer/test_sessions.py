"""Sessions from inactivity gaps."""

from __future__ import annotations

import pandas as pd

from indexer.sessions import assign_sessions_by_gap


def frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "ts"]).assign(
        ts=lambda f: pd.to_datetime(f["ts"], utc=True, format="ISO8601"), user_id=lambda f: f["user_id"].astype("string")
    )


def test_a_gap_longer_than_the_limit_starts_a_new_session():
    events = frame([("a", "2024-01-01 10:00"), ("a", "2024-01-01 10:30"), ("a", "2024-01-01 11:00:01"),
                    ("a", "2024-01-01 11:20")])
    assert assign_sessions_by_gap(events, gap_min=30).tolist() == ["a-0", "a-0", "a-1", "a-1"]


def test_sessions_are_per_client_and_independent_of_row_order():
    events = frame([("b", "2024-01-01 12:00"), ("a", "2024-01-01 10:00"), ("b", "2024-01-01 10:00"),
                    ("a", "2024-01-01 10:10"), (None, "2024-01-01 10:00")])
    sessions = assign_sessions_by_gap(events, gap_min=30, prefix="x-")
    assert sessions.tolist()[:4] == ["x-b-1", "x-a-0", "x-b-0", "x-a-0"]
    assert pd.isna(sessions.iloc[4])
    shuffled = events.sample(frac=1.0, random_state=1)
    assert assign_sessions_by_gap(shuffled, gap_min=30, prefix="x-").sort_index().equals(sessions)


def test_the_gap_is_configurable():
    events = frame([("a", "2024-01-01 10:00"), ("a", "2024-01-01 10:06")])
    assert assign_sessions_by_gap(events, gap_min=5).tolist() == ["a-0", "a-1"]
    assert assign_sessions_by_gap(events, gap_min=10).tolist() == ["a-0", "a-0"]
