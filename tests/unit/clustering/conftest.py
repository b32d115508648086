"""Shared helpers for the clustering unit tests: tiny validated frames built in code."""

from __future__ import annotations

import pandas as pd
import pytest

from recommender.data_model import validate_events, validate_items, validate_users

NOW = pd.Timestamp("2026-11-01T00:00:00Z")



@pytest.fixture
def make_frames():
    """Return the frame builder ``build_frames`` (rows -> validated frames)."""
    return build_frames


def build_frames(events: list[tuple], items: list[tuple], users: list[dict] | None = None):
    """Return validated (events, items, users) from compact rows.

    events: (hours_before_NOW, user_id, item_id, event_type[, platform])
    items:  (item_id, category, price)
    """
    ev = pd.DataFrame(
        [
            {"ts": (NOW - pd.Timedelta(hours=h)).isoformat(), "user_id": u, "item_id": i, "event_type": t,
             "platform": rest[0] if rest else None}
            for h, u, i, t, *rest in events
        ],
        columns=["ts", "user_id", "item_id", "event_type", "platform"],
    )
    it = pd.DataFrame(items, columns=["item_id", "category", "price"]).assign(created_at="2026-01-01T00:00:00Z")
    us = pd.DataFrame(users if users is not None else [], columns=["user_id", "gender", "birth_year", "region",
                                                                    "platform", "signup_date"])
    return validate_events(ev)[0], validate_items(it)[0], validate_users(us)[0]
