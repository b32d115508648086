"""The importers on the real samples in the shared data folder (marker ``real_data``).

These tests read the samples under settings.paths.shared_data_dir (../shared/data beside the
repository, or HOTFEED_PATHS_SHARED_DATA_DIR). They are left out of the default run; run them
with ``make test-real-data`` (``pytest -m real_data tests``). When a sample is missing they
fail and name the folder they need; they never skip.
"""

from __future__ import annotations


import pandas as pd
import pytest

from recommender.data_model import EVENT_COLUMNS, ITEM_COLUMNS, USER_COLUMNS, read_events, read_items, read_users
from recommender.errors import InvalidRequest
from indexer.importers import REES46_SAMPLE, TAOBAO_SAMPLE, ImportResult, import_rees46, import_taobao, write_import
from tests.real_samples import imported, sample

pytestmark = pytest.mark.real_data


def taobao() -> ImportResult:
    return imported("taobao")


def rees46() -> ImportResult:
    return imported("rees46")


def test_taobao_drops_the_cut_last_line_and_out_of_window_rows_by_row_number():
    report = taobao().reports["events"]
    assert report.rows_in == 84_476  # 84,475 complete lines + the cut one
    reasons = report.reasons()
    assert reasons["truncated last line (no trailing newline)"] == 1
    assert [b.row for b in report.bad_rows if b.reason.startswith("truncated")] == [84_476]
    # SOURCE.md: 35 rows fall outside the official 9-day window.
    assert reasons["ts outside the dataset window 2017-11-25..2017-12-03 (UTC+8)"] == 35
    assert report.rows_out == 84_475 - 35 == len(taobao().events)
    assert "rows 84476" in report.summary()


def test_taobao_events_follow_the_data_model():
    ev = taobao().events
    assert list(ev.columns) == list(EVENT_COLUMNS)
    counts = ev["event_type"].value_counts()
    # SOURCE.md counts pv 75,872; cart 4,497; fav 2,356; buy 1,750 over all complete rows; the 35
    # out-of-window rows are all views.
    assert (counts["view"], counts["cart"], counts["like"], counts["purchase"]) == (75_872 - 35, 4_497, 2_356, 1_750)
    assert ev["user_id"].nunique() == 815
    assert ev["ts"].min() >= pd.Timestamp("2017-11-24 16:00", tz="UTC")


def test_taobao_sessions_break_after_thirty_minutes():
    ev = taobao().events.sort_values(["user_id", "ts"], kind="stable")
    same_user = ev["user_id"].to_numpy()[1:] == ev["user_id"].to_numpy()[:-1]
    gap = ev["ts"].diff().to_numpy()[1:]
    same_session = ev["session_id"].to_numpy()[1:] == ev["session_id"].to_numpy()[:-1]
    long_gap = gap > pd.Timedelta(minutes=30).to_timedelta64()
    assert (same_session == (same_user & ~long_gap)).all()
    assert any("30-minute inactivity gaps" in note for note in taobao().derived)


def test_taobao_items_are_derived_with_first_seen_time_and_no_price():
    result = taobao()
    items = result.items
    assert list(items.columns) == list(ITEM_COLUMNS)
    assert len(items) == result.events["item_id"].nunique()
    first_seen = result.events.groupby("item_id")["ts"].min()
    assert (items.set_index("item_id")["created_at"] == first_seen.loc[items["item_id"]].to_numpy()).all()
    assert (items["price"] == 0.0).all()
    assert any(note.startswith("price: absent") for note in result.derived)
    assert list(result.users.columns) == list(USER_COLUMNS) and len(result.users) == 815


def test_rees46_drops_the_cut_line_and_duplicates_by_row_number():
    report = rees46().reports["events"]
    assert report.rows_in == 17_435
    assert [b.row for b in report.bad_rows if b.reason.startswith("truncated")] == [17_435]
    duplicates = [b.row for b in report.bad_rows if b.reason == "exact duplicate of an earlier row"]
    assert len(duplicates) == 5  # SOURCE.md: 5 exact duplicate rows
    assert len(rees46().events) == 17_434 - 5


def test_rees46_events_keep_the_source_sessions():
    ev = rees46().events
    counts = ev["event_type"].value_counts()
    assert counts["view"] + counts["purchase"] + counts["cart"] == len(ev)
    assert ev["session_id"].notna().all()
    assert ev["session_id"].nunique() == 5_066
    assert ev["user_id"].nunique() == 4_504


def test_rees46_items_carry_category_paths_and_last_prices():
    items = rees46().items.set_index("item_id")
    assert len(items) == 6_493
    assert items.loc["3900821", "category"] == "appliances/environment/water_heater"
    assert items.loc["44600062", "category"].startswith("other/")
    assert items.loc["44600062", "title"] == "shiseido"
    assert items["price"].min() >= 0 and items["price"].max() == pytest.approx(2574.07)


def test_written_files_read_back_through_the_data_model(tmp_path):
    result = taobao()
    paths = write_import(result, tmp_path / "taobao")
    events, events_report = read_events(paths["events"])
    items, items_report = read_items(paths["items"])
    users, users_report = read_users(paths["users"])
    assert (events_report.rejected, items_report.rejected, users_report.rejected) == (0, 0, 0)
    assert (len(events), len(items), len(users)) == (len(result.events), len(result.items), len(result.users))


def test_a_file_of_the_wrong_shape_is_refused_with_the_fix():
    with pytest.raises(InvalidRequest, match="9 columns, not Taobao"):
        import_taobao(sample(REES46_SAMPLE))
    with pytest.raises(InvalidRequest, match="missing REES46 column"):
        import_rees46(sample(TAOBAO_SAMPLE))
