"""The synthetic marketplace: deterministic by seed, valid frames, and cohorts that really differ."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recommender.data_model import EVENT_COLUMNS, ITEM_COLUMNS, USER_COLUMNS, validate_events, validate_items, validate_users
from recommender.errors import InvalidRequest
from indexer.cohorts import assign_user_cohorts
from indexer.popularity import compute_cohort_popularity
from indexer.synth import FRESH_AGE, SYNTH_STAGES, generate_marketplace

END = pd.Timestamp("2026-03-01", tz="UTC")
SIZE = dict(n_items=3_000, n_users=1_500, days=5, n_events=60_000, end=END)


@pytest.fixture(scope="module")
def market():
    return generate_marketplace(seed=11, **SIZE)


def test_same_seed_gives_identical_frames(market):
    again = generate_marketplace(seed=11, **SIZE)
    for kind in ("items", "users", "events"):
        pd.testing.assert_frame_equal(getattr(market, kind), getattr(again, kind))


def test_another_seed_gives_other_data(market):
    other = generate_marketplace(seed=12, **SIZE)
    assert not market.events["item_id"].head(1000).equals(other.events["item_id"].head(1000))


def test_frames_have_the_documented_columns_and_pass_validation(market):
    assert list(market.items.columns) == list(ITEM_COLUMNS)
    assert list(market.users.columns) == list(USER_COLUMNS)
    assert list(market.events.columns) == list(EVENT_COLUMNS)
    for validate, frame in ((validate_items, market.items), (validate_users, market.users),
                            (validate_events, market.events)):
        _, report = validate(frame)
        assert report.bad_rows == [], report.summary()


def test_sizes_and_time_window(market):
    assert len(market.items) == 3_000 and len(market.users) == 1_500
    assert 0.9 * 60_000 <= len(market.events) <= 1.05 * 60_000
    assert market.events["ts"].min() >= END - pd.Timedelta(days=5)
    assert market.events["ts"].max() < END
    assert market.events["ts"].is_monotonic_increasing


def test_about_seventy_percent_of_views_go_to_items_under_eight_hours_old(market):
    ev = market.events[market.events["event_type"] == "view"]
    created = market.items.set_index("item_id")["created_at"]
    age = ev["ts"].to_numpy() - created.loc[ev["item_id"]].to_numpy()
    share = float(np.mean(age < FRESH_AGE.to_timedelta64()))
    assert 0.6 <= share <= 0.8
    assert share == pytest.approx(market.fresh_view_share)


def test_item_popularity_is_heavy_tailed(market):
    views = market.events["item_id"].value_counts()
    top_share = views.head(len(market.items) // 100).sum() / views.sum()
    assert top_share > 0.05  # the top 1% of items draws far more than 1% of the events


def test_items_end_in_every_status_and_nobody_sees_an_item_after_it_left(market):
    status = market.items["status"].value_counts()
    assert {"active", "reserved", "sold", "deleted", "sanctioned"} <= set(status.index)
    gone = market.items[market.items["status"].isin(["sold", "deleted", "sanctioned"])]
    assert len(gone) > 0
    # Each purchase is its item's last event.
    ev = market.events
    last = ev.groupby("item_id")["ts"].max()
    buys = ev[ev["event_type"] == "purchase"].set_index("item_id")["ts"]
    assert (last.loc[buys.index] == buys).all()
    assert set(buys.index) <= set(market.items.loc[market.items["status"] == "sold", "item_id"])


def test_users_miss_some_attributes(market):
    users = market.users
    for column in ("gender", "birth_year", "region", "platform"):
        missing = users[column].isna().mean()
        assert 0.0 < missing < 0.3, column
    assert market.events["user_id"].isna().any()  # anonymous sessions
    assert market.events["platform"].notna().all()


def test_sessions_drift_between_related_categories(market):
    ev = market.events.merge(market.items[["item_id", "category"]], on="item_id")
    ev = ev.sort_values(["session_id", "ts"], kind="stable")
    same_session = ev["session_id"].to_numpy()[1:] == ev["session_id"].to_numpy()[:-1]
    cat = ev["category"].to_numpy()
    top = ev["category"].str.split("/").str[0].to_numpy()
    moved = same_session & (cat[1:] != cat[:-1])
    sibling = moved & (top[1:] == top[:-1])
    assert moved.sum() > 0 and sibling.sum() > 0
    assert sibling.sum() / moved.sum() > 0.3  # far more than chance among ~45 leaves under 11 tops


def test_cohort_popularity_really_differs(market):
    cohorts = assign_user_cohorts(market.users, now=END, combined=["region+age"])
    pop = compute_cohort_popularity(market.events, cohorts, now=END, event_weights={"view": 1.0, "like": 3.0},
                                    half_life_h=24)
    pop = pop.merge(market.items[["item_id", "category"]], on="item_id")
    pop["top"] = pop["category"].str.split("/").str[0]

    def share(cohort: str, top: str) -> float:
        rows = pop[pop["cohort"] == cohort]
        return rows.loc[rows["top"] == top, "decayed_weight"].sum() / rows["decayed_weight"].sum()

    assert share("g:f", "womens-fashion") > 3 * share("g:m", "womens-fashion")
    assert share("g:m", "auto") > 3 * share("g:f", "auto")
    assert share("age:55+", "hobbies") > 1.5 * share("age:18-24", "hobbies")
    # Regions differ too: the top category by share is not the same everywhere.
    regions = [c for c in pop["cohort"].unique() if c.startswith("region:")]
    tops = {pop[pop["cohort"] == r].groupby("top")["decayed_weight"].sum().idxmax() for r in regions}
    assert len(regions) >= 6 and len(tops) >= 2
    top10 = {c: set(pop[pop["cohort"] == c].head(10)["item_id"]) for c in ("g:f", "g:m")}
    assert len(top10["g:f"] & top10["g:m"]) <= 5


def test_stages_are_reported_in_order():
    seen: list[str] = []
    generate_marketplace(n_items=200, n_users=100, days=1, seed=0, end=END, on_stage=seen.append)
    assert tuple(seen) == SYNTH_STAGES


def test_bad_sizes_are_refused():
    with pytest.raises(InvalidRequest, match="items must be > 0, got 0"):
        generate_marketplace(n_items=0, n_users=10, days=1, seed=0)
