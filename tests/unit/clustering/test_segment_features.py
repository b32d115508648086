"""Per-user segment features: affinity with decay, price bands, engagement, defaults for gaps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clustering.features import ItemEmbeddings, build_user_features, load_item_embeddings
from recommender.errors import InvalidRequest, NotFound
from recommender.settings import ClusteringSettings

NOW = pd.Timestamp("2026-11-01T00:00:00Z")  # the same reference time as conftest.build_frames

ITEMS = [("i1", "shoes/run", 10.0), ("i2", "shoes/run", 20.0), ("i3", "phones", 300.0), ("i4", "books", 5.0)]


@pytest.fixture
def features(make_frames):
    """Return a function: event rows (+ users, items, settings) -> UserFeatures as of NOW."""

    def build(events, users=None, items=ITEMS, **settings):
        ev, it, us = make_frames(events, items, users)
        return build_user_features(ev, it, us, settings=ClusteringSettings(**settings), now=NOW)

    return build


def row(f, user_id):
    return f.segments.set_index("user_id").loc[user_id]


def test_recent_events_outweigh_older_ones_in_top_categories(features):
    # 2 views of shoes 10 days ago lose to 1 view of phones an hour ago (half-life 72 h).
    f = features([(240, "u1", "i1", "view"), (240, "u1", "i2", "view"), (1, "u1", "i3", "view")])
    assert json.loads(row(f, "u1")["top_categories"]) == ["phones", "shoes/run"]


def test_event_type_weights_rank_a_purchase_over_views(features):
    f = features([(1, "u1", "i1", "view"), (1, "u1", "i4", "view"), (1, "u1", "i3", "purchase")])
    assert json.loads(row(f, "u1")["top_categories"])[0] == "phones"


def test_top_categories_are_capped_by_settings(features):
    f = features([(1, "u1", i, "view") for i in ("i1", "i3", "i4")], top_categories=2)
    assert len(json.loads(row(f, "u1")["top_categories"])) == 2


def test_users_with_missing_attributes_get_no_cohort_fields_but_still_segments(features):
    users = [{"user_id": "u1"}, {"user_id": "u2", "gender": "f", "birth_year": 1995, "region": "Seoul Metro"}]
    f = features([(1, "u1", "i1", "view"), (2, "u2", "i3", "view")], users=users)
    u1, u2 = row(f, "u1"), row(f, "u2")
    assert pd.isna(u1["gender"]) and pd.isna(u1["age_band"]) and pd.isna(u1["region"])
    assert u1["engagement"] != "new" and json.loads(u1["top_categories"]) == ["shoes/run"]
    assert (u2["gender"], u2["age_band"], u2["region"]) == ("f", "25-34", "seoul_metro")


def test_users_listed_without_events_are_new_and_unclustered(features):
    f = features([(1, "u1", "i1", "view")], users=[{"user_id": "u1"}, {"user_id": "quiet"}])
    quiet = row(f, "quiet")
    assert quiet["engagement"] == "new" and pd.isna(quiet["top_categories"]) and pd.isna(quiet["price_band"])
    clustered = set(f.segments["user_id"].iloc[f.vector_rows])
    assert clustered == {"u1"}


def test_no_users_frame_at_all_still_segments_event_users(features):
    f = features([(1, "u1", "i1", "view"), (1, "u2", "i3", "click")], users=[])
    assert sorted(f.segments["user_id"]) == ["u1", "u2"]


def test_platform_falls_back_to_the_most_used_event_platform(features):
    f = features([(1, "u1", "i1", "view", "ios"), (2, "u1", "i1", "view", "web"), (3, "u1", "i2", "view", "web")],
                 users=[{"user_id": "u1"}, ])
    assert row(f, "u1")["platform"] == "web"


def test_profile_platform_beats_event_platform(features):
    f = features([(1, "u1", "i1", "view", "web")], users=[{"user_id": "u1", "platform": "iOS"}])
    assert row(f, "u1")["platform"] == "ios"


def test_price_band_uses_item_price_quartiles(features):
    items = [(f"p{i}", "c", float(i)) for i in range(1, 101)]  # quartiles at 25.75, 50.5, 75.25
    f = features([(1, "cheap", "p3", "view"), (1, "rich", "p99", "view"), (1, "mid", "p40", "view")], items=items)
    assert (row(f, "cheap")["price_band"], row(f, "mid")["price_band"], row(f, "rich")["price_band"]) == (
        "budget", "mid", "premium")
    assert row(f, "rich")["typical_price"] == 99.0


def test_engagement_splits_active_users_at_median_and_p90(features):
    events = [(1, f"u{n}", "i1", "view") for n in range(10) for _ in range(n + 1)]
    f = features(events)
    levels = f.segments.set_index("user_id")["engagement"]
    assert levels["u0"] == "casual" and levels["u6"] == "regular" and levels["u9"] == "heavy"


def test_users_idle_longer_than_the_ttl_are_left_out(features):
    f = features([(1, "fresh", "i1", "view"), (100, "stale", "i1", "view")], segment_ttl_s=3600 * 10)
    assert list(f.segments["user_id"]) == ["fresh"]


def test_events_after_now_are_ignored(features):
    f = features([(-5, "future", "i1", "view"), (1, "u1", "i1", "view")])
    assert "future" not in set(f.segments["user_id"])


def test_affinity_vectors_are_unit_length_over_top_categories(features):
    f = features([(1, "u1", "i1", "view"), (1, "u1", "i3", "view"), (1, "u2", "i4", "like")])
    assert f.vector_kind == "category_affinity"
    assert np.allclose(np.linalg.norm(f.vectors, axis=1), 1.0)
    assert set(f.vector_labels) == {"shoes/run", "phones", "books", "shoes/*", "phones/*", "books/*"}


def test_affinity_vectors_put_users_of_one_top_level_closer_than_strangers(features):
    items = [("a", "shoes/run", 1.0), ("b", "shoes/trail", 1.0), ("c", "books/novels", 1.0)]
    f = features([(1, "run", "a", "view"), (1, "trail", "b", "view"), (1, "reader", "c", "view")], items=items)
    vec = dict(zip(f.segments["user_id"].iloc[f.vector_rows], f.vectors))
    assert vec["run"] @ vec["trail"] > 0.4 and vec["run"] @ vec["reader"] == 0


def test_embedding_vectors_average_the_latest_events(make_frames):
    emb = ItemEmbeddings(pd.Index(["i1", "i2", "i3"]), np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32))
    ev, it, us = make_frames([(1, "u1", "i1", "view"), (2, "u1", "i2", "view"), (3, "u1", "i3", "view")], ITEMS)
    f = build_user_features(ev, it, us, settings=ClusteringSettings(recent_events=2), now=NOW, item_embeddings=emb)
    assert f.vector_kind == "item_embedding"
    # The two latest events are i1 and i2: mean (0.5, 0.5), normalised.
    assert np.allclose(f.vectors[0], [2 ** -0.5, 2 ** -0.5], atol=1e-6)


def test_load_item_embeddings_reads_npz(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, item_ids=np.array(["a", "b"]), vectors=np.ones((2, 3), dtype=np.float32))
    emb = load_item_embeddings(path)
    assert list(emb.item_ids) == ["a", "b"] and emb.vectors.shape == (2, 3)


def test_load_item_embeddings_names_the_missing_file(tmp_path):
    with pytest.raises(NotFound, match="nope.npz"):
        load_item_embeddings(tmp_path / "nope.npz")


def test_embeddings_with_mismatched_ids_are_rejected():
    with pytest.raises(InvalidRequest, match="one row per id"):
        ItemEmbeddings(pd.Index(["a"]), np.ones((2, 3), dtype=np.float32))
