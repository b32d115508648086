"""Helpers for the clustering integration tests (real Redis via the `redis_settings` fixture)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clustering.job import Frames
from recommender.data_model import validate_events, validate_items, validate_users
from recommender.stores import open_redis
from recommender.stores.segments import RedisSegmentStore

NOW = pd.Timestamp("2026-11-01T00:00:00Z")



@pytest.fixture
def store(redis_settings) -> RedisSegmentStore:
    s = RedisSegmentStore(redis_settings)
    yield s
    s.close()


@pytest.fixture
def raw_redis(redis_settings):
    client = open_redis(redis_settings)
    yield client
    client.close()


@pytest.fixture
def planted():
    """Return ``planted_frames``, the frame builder of these tests."""
    return planted_frames


def planted_frames(n_users: int = 300, *, groups: int = 3, seed: int = 0) -> Frames:
    """Return frames where user u<i> only engages with categories of group i % groups.

    Users u0..u9 get profile attributes (gender, birth year, region, platform); the rest
    have none, so every run also covers users with missing attributes.
    """
    rng = np.random.default_rng(seed)
    cats = [f"g{g}/c{c}" for g in range(groups) for c in range(2)]
    items = pd.DataFrame({
        "item_id": [f"i{g}-{j}" for g in range(groups) for j in range(20)],
        "category": [f"g{g}/c{j % 2}" for g in range(groups) for j in range(20)],
        "price": [float(10 ** (g + 1) + j) for g in range(groups) for j in range(20)],
        "created_at": "2026-01-01T00:00:00Z",
    })
    rows = []
    for u in range(n_users):
        g = u % groups
        for _ in range(5):
            rows.append({"ts": (NOW - pd.Timedelta(minutes=int(rng.integers(1, 3000)))).isoformat(),
                         "user_id": f"u{u}", "item_id": f"i{g}-{int(rng.integers(0, 20))}",
                         "event_type": rng.choice(["view", "click", "like"]), "platform": "android"})
    users = pd.DataFrame({
        "user_id": [f"u{u}" for u in range(10)],
        "gender": ["m", "f"] * 5,
        "birth_year": [1990 + u for u in range(10)],
        "region": ["Seoul"] * 5 + ["Busan"] * 5,
        "platform": ["ios"] * 10,
    })
    assert len(cats) == 2 * groups
    return Frames(validate_events(pd.DataFrame(rows))[0], validate_items(items)[0], validate_users(users)[0])
