"""Cohort popularity on a tiny hand-computed example; expected values are written as arithmetic."""

from __future__ import annotations

import pandas as pd
import pytest

from recommender.errors import ConfigError
from indexer.cohorts import assign_user_cohorts
from indexer.popularity import POPULARITY_COLUMNS, compute_cohort_popularity, compute_popular_fallback

NOW = pd.Timestamp("2026-01-10 12:00", tz="UTC")
WEIGHTS = {"view": 1.0, "like": 3.0, "purchase": 8.0}
HALF_LIFE_H = 6.0


def ago(hours: float) -> pd.Timestamp:
    return NOW - pd.Timedelta(hours=hours)


@pytest.fixture
def users() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": ["ann", "bob"],
        "gender": ["f", "m"],
        "birth_year": [1996, 1970],  # ages 30 and 56 in 2026
        "region": ["north", "south"],
        "platform": ["ios", None],
    })


@pytest.fixture
def events() -> pd.DataFrame:
    rows = [
        (ago(0), "ann", "a", "view", None),       # weight 1 * 0.5**0     = 1
        (ago(6), "ann", "a", "like", None),       # weight 3 * 0.5**1     = 1.5
        (ago(12), "bob", "a", "view", None),      # weight 1 * 0.5**2     = 0.25
        (ago(3), "bob", "b", "purchase", None),   # weight 8 * 0.5**0.5
        (ago(30), None, "b", "view", "web"),      # anonymous: all + platform:web, weight 0.5**5
        (ago(0.5), "bob", "c", "view", "android"),  # bob has no platform on record: platform:android
        (ago(-1), "ann", "c", "purchase", None),  # in the future: ignored
        (ago(24 * 20), "ann", "d", "view", None),  # beyond the 14-day lookback: ignored
    ]
    return pd.DataFrame(rows, columns=["ts", "user_id", "item_id", "event_type", "platform"]).astype(
        {"user_id": "string", "platform": "string"}
    )


def popularity(events: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    cohorts = assign_user_cohorts(users, now=NOW)
    return compute_cohort_popularity(events, cohorts, now=NOW, event_weights=WEIGHTS, half_life_h=HALF_LIFE_H,
                                     lookback_days=14)


def row(frame: pd.DataFrame, item: str, cohort: str) -> pd.Series:
    found = frame[(frame["item_id"] == item) & (frame["cohort"] == cohort)]
    assert len(found) == 1, f"expected one row for ({item!r}, {cohort!r}), got {len(found)}"
    return found.iloc[0]


def test_columns_are_ready_for_child_documents(events, users):
    assert list(popularity(events, users).columns) == list(POPULARITY_COLUMNS)


def test_all_cohort_scores_are_decayed_weighted_sums_normalized_by_the_cohort_max(events, users):
    pop = popularity(events, users)
    a = 1 * 0.5**0 + 3 * 0.5**1 + 1 * 0.5**2
    b = 8 * 0.5**0.5 + 1 * 0.5**5
    c = 1 * 0.5 ** (0.5 / 6)
    assert row(pop, "a", "all")["decayed_weight"] == pytest.approx(a)
    assert row(pop, "b", "all")["decayed_weight"] == pytest.approx(b)
    assert row(pop, "c", "all")["decayed_weight"] == pytest.approx(c)
    top = max(a, b, c)  # b: 5.657 + 0.031
    assert row(pop, "b", "all")["score"] == pytest.approx(1.0)
    assert row(pop, "a", "all")["score"] == pytest.approx(a / top)
    assert row(pop, "c", "all")["score"] == pytest.approx(c / top)


def test_each_cohort_only_sees_its_viewers(events, users):
    pop = popularity(events, users)
    assert row(pop, "a", "g:f")["decayed_weight"] == pytest.approx(1 + 1.5)
    assert row(pop, "a", "g:f")["score"] == pytest.approx(1.0)
    assert row(pop, "a", "g:m")["score"] == pytest.approx(0.25 / (8 * 0.5**0.5))
    assert row(pop, "b", "ga:m:55+")["score"] == pytest.approx(1.0)
    assert row(pop, "a", "age:25-34")["decayed_weight"] == pytest.approx(2.5)
    assert row(pop, "a", "region:north")["decayed_weight"] == pytest.approx(2.5)


def test_platform_comes_from_the_user_and_else_from_the_event(events, users):
    pop = popularity(events, users)
    assert row(pop, "a", "platform:ios")["decayed_weight"] == pytest.approx(2.5)
    assert row(pop, "b", "platform:web")["decayed_weight"] == pytest.approx(0.5**5)
    assert row(pop, "c", "platform:android")["decayed_weight"] == pytest.approx(0.5 ** (0.5 / 6))


def test_items_without_signal_in_a_cohort_get_no_row(events, users):
    pop = popularity(events, users)
    assert pop[(pop["item_id"] == "b") & (pop["cohort"] == "g:f")].empty
    assert pop[pop["item_id"] == "d"].empty  # its only event is older than the lookback
    assert set(pop.loc[pop["item_id"] == "c", "cohort"]) == {
        "all", "g:m", "age:55+", "ga:m:55+", "region:south", "platform:android"
    }


def test_future_events_are_ignored(events, users):
    pop = popularity(events, users)
    assert pop.loc[(pop["item_id"] == "c"), "count_24h"].max() == 1


def test_raw_counts_use_one_hour_one_day_and_seven_day_windows(events, users):
    pop = popularity(events, users)
    a = row(pop, "a", "all")
    assert (a["count_1h"], a["count_24h"], a["count_7d"]) == (1, 3, 3)
    b = row(pop, "b", "all")
    assert (b["count_1h"], b["count_24h"], b["count_7d"]) == (0, 1, 2)
    assert (row(pop, "a", "g:m")["count_1h"], row(pop, "a", "g:m")["count_24h"]) == (0, 1)


def test_scores_lie_in_zero_one_and_updated_at_is_now(events, users):
    pop = popularity(events, users)
    assert pop["score"].between(0, 1).all()
    assert (pop.groupby("cohort")["score"].max() == 1.0).all()
    assert (pop["updated_at"] == NOW).all()


def test_rows_are_ordered_by_cohort_then_score(events, users):
    pop = popularity(events, users)
    expected = pop.sort_values(["cohort", "score"], ascending=[True, False])
    assert pop[["cohort", "score"]].equals(expected[["cohort", "score"]].reset_index(drop=True))


def test_half_life_and_weights_change_the_result(events, users):
    cohorts = assign_user_cohorts(users, now=NOW)
    views_only = compute_cohort_popularity(events, cohorts, now=NOW, event_weights={"view": 1.0}, half_life_h=6)
    assert row(views_only, "a", "all")["decayed_weight"] == pytest.approx(1 + 0.25)
    assert row(views_only, "b", "all")["decayed_weight"] == pytest.approx(0.5**5)
    slow = compute_cohort_popularity(events, cohorts, now=NOW, event_weights=WEIGHTS, half_life_h=12)
    assert row(slow, "a", "all")["decayed_weight"] == pytest.approx(1 + 3 * 0.5**0.5 + 0.5**1)


def test_bad_weights_and_half_life_are_config_errors(events, users):
    cohorts = assign_user_cohorts(users, now=NOW)
    with pytest.raises(ConfigError, match="'share'"):
        compute_cohort_popularity(events, cohorts, now=NOW, event_weights={"share": 1.0}, half_life_h=6)
    with pytest.raises(ConfigError, match="'view': -1"):
        compute_cohort_popularity(events, cohorts, now=NOW, event_weights={"view": -1}, half_life_h=6)
    with pytest.raises(ConfigError, match="half-life"):
        compute_cohort_popularity(events, cohorts, now=NOW, event_weights=WEIGHTS, half_life_h=0)


def test_cluster_cohorts_come_from_the_mapping(events, users):
    cohorts = assign_user_cohorts(users, now=NOW, clusters={"ann": 7})
    pop = compute_cohort_popularity(events, cohorts, now=NOW, event_weights=WEIGHTS, half_life_h=6, lookback_days=14)
    assert set(pop.loc[pop["cohort"] == "cluster:7", "item_id"]) == {"a"}


def test_popular_fallback_ranks_global_and_each_region_and_tops_up_from_global(events, users):
    pop = popularity(events, users)
    fallback = compute_popular_fallback(pop, size=3)
    assert fallback["global"] == ["b", "a", "c"]
    assert fallback["region:south"] == ["b", "c", "a"]  # b 5.66, c 0.94, a 0.25 by bob
    assert fallback["region:north"] == ["a", "b", "c"]  # only a from ann, then global b and c
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "status": ["active", "sold", "active"]})
    assert compute_popular_fallback(pop, items=items, size=2) == {
        "global": ["a", "c"], "region:north": ["a", "c"], "region:south": ["c", "a"],
    }
