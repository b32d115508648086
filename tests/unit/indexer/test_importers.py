"""The importers on the real samples in the shared data folder, and validation row numbers.

These tests read /work/shared/data through settings.paths.shared_data_dir. When a sample is
missing they fail and say where it should be; they never skip.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recommender.data_model import EVENT_COLUMNS, ITEM_COLUMNS, USER_COLUMNS, read_events, read_items, read_users
from recommender.errors import NotFound
from recommender.settings import load_settings
from indexer.importers import (
    REES46_SAMPLE,
    TAOBAO_SAMPLE,
    import_rees46,
    import_taobao,
    locate_sample,
    read_complete_lines,
    write_import,
)


def sample(relative: Path) -> Path:
    shared = load_settings().paths.shared_data_dir
    path = shared / relative
    if not path.is_file():
        pytest.fail(
            f"real sample {str(path)!r} is absent: these tests need the shared data folder {str(shared)!r} "
            f"(set HOTFEED_PATHS_SHARED_DATA_DIR to the folder holding {relative.as_posix()!r})",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def taobao():
    return import_taobao(sample(TAOBAO_SAMPLE))


@pytest.fixture(scope="module")
def rees46():
    return import_rees46(sample(REES46_SAMPLE))


def test_taobao_drops_the_cut_last_line_and_out_of_window_rows_by_row_number(taobao):
    report = taobao.reports["events"]
    assert report.rows_in == 84_476  # 84,475 complete lines + the cut one
    reasons = report.reasons()
    assert reasons["truncated last line (no trailing newline)"] == 1
    assert [b.row for b in report.bad_rows if b.reason.startswith("truncated")] == [84_476]
    # SOURCE.md: 35 rows fall outside the official 9-day window.
    assert reasons["ts outside the dataset window 2017-11-25..2017-12-03 (UTC+8)"] == 35
    assert report.rows_out == 84_475 - 35 == len(taobao.events)
    assert "rows 84476" in report.summary()


def test_taobao_events_follow_the_data_model(taobao):
    ev = taobao.events
    assert list(ev.columns) == list(EVENT_COLUMNS)
    counts = ev["event_type"].value_counts()
    # SOURCE.md counts pv 75,872; cart 4,497; fav 2,356; buy 1,750 over all complete rows; the 35
    # out-of-window rows are all views.
    assert (counts["view"], counts["cart"], counts["like"], counts["purchase"]) == (75_872 - 35, 4_497, 2_356, 1_750)
    assert ev["user_id"].nunique() == 815
    assert ev["ts"].min() >= pd.Timestamp("2017-11-24 16:00", tz="UTC")


def test_taobao_sessions_break_after_thirty_minutes(taobao):
    ev = taobao.events.sort_values(["user_id", "ts"], kind="stable")
    same_user = ev["user_id"].to_numpy()[1:] == ev["user_id"].to_numpy()[:-1]
    gap = ev["ts"].diff().to_numpy()[1:]
    same_session = ev["session_id"].to_numpy()[1:] == ev["session_id"].to_numpy()[:-1]
    long_gap = gap > pd.Timedelta(minutes=30).to_timedelta64()
    assert (same_session == (same_user & ~long_gap)).all()
    assert any("30-minute inactivity gaps" in note for note in taobao.derived)


def test_taobao_items_are_derived_with_first_seen_time_and_no_price(taobao):
    items = taobao.items
    assert list(items.columns) == list(ITEM_COLUMNS)
    assert len(items) == taobao.events["item_id"].nunique()
    first_seen = taobao.events.groupby("item_id")["ts"].min()
    assert (items.set_index("item_id")["created_at"] == first_seen.loc[items["item_id"]].to_numpy()).all()
    assert (items["price"] == 0.0).all()
    assert any(note.startswith("price: absent") for note in taobao.derived)
    assert list(taobao.users.columns) == list(USER_COLUMNS) and len(taobao.users) == 815


def test_rees46_drops_the_cut_line_and_duplicates_by_row_number(rees46):
    report = rees46.reports["events"]
    assert report.rows_in == 17_435
    assert [b.row for b in report.bad_rows if b.reason.startswith("truncated")] == [17_435]
    duplicates = [b.row for b in report.bad_rows if b.reason == "exact duplicate of an earlier row"]
    assert len(duplicates) == 5  # SOURCE.md: 5 exact duplicate rows
    assert len(rees46.events) == 17_434 - 5


def test_rees46_events_keep_the_source_sessions(rees46):
    ev = rees46.events
    counts = ev["event_type"].value_counts()
    assert counts["view"] + counts["purchase"] + counts["cart"] == len(ev)
    assert ev["session_id"].notna().all()
    assert ev["session_id"].nunique() == 5_066
    assert ev["user_id"].nunique() == 4_504


def test_rees46_items_carry_category_paths_and_last_prices(rees46):
    items = rees46.items.set_index("item_id")
    assert len(items) == 6_493
    assert items.loc["3900821", "category"] == "appliances/environment/water_heater"
    assert items.loc["44600062", "category"].startswith("other/")
    assert items.loc["44600062", "title"] == "shiseido"
    assert items["price"].min() >= 0 and items["price"].max() == pytest.approx(2574.07)


def test_written_files_read_back_through_the_data_model(taobao, tmp_path):
    paths = write_import(taobao, tmp_path / "taobao")
    events, events_report = read_events(paths["events"])
    items, items_report = read_items(paths["items"])
    users, users_report = read_users(paths["users"])
    assert (events_report.rejected, items_report.rejected, users_report.rejected) == (0, 0, 0)
    assert (len(events), len(items), len(users)) == (len(taobao.events), len(taobao.items), len(taobao.users))


def test_a_missing_sample_says_where_it_should_be(tmp_path):
    with pytest.raises(NotFound, match="HOTFEED_PATHS_SHARED_DATA_DIR") as info:
        locate_sample(tmp_path, TAOBAO_SAMPLE)
    assert str(tmp_path / TAOBAO_SAMPLE) in str(info.value)
    with pytest.raises(NotFound, match="--src"):
        locate_sample(tmp_path, TAOBAO_SAMPLE, src=tmp_path / "nope.csv")


def test_a_cut_last_line_is_found_and_left_out(tmp_path):
    cut = tmp_path / "cut.csv"
    cut.write_bytes(b"a,1\nb,2\nc,")
    assert read_complete_lines(cut) == (b"a,1\nb,2\n", 3)
    whole = tmp_path / "whole.csv"
    whole.write_bytes(b"a,1\nb,2\n")
    assert read_complete_lines(whole) == (b"a,1\nb,2\n", None)


def test_bad_taobao_rows_are_reported_with_their_line_numbers(tmp_path):
    raw = tmp_path / "taobao.csv"
    raw.write_text(
        "1,10,100,pv,1511544070\n"
        "1,11,100,share,1511544071\n"   # 2: unknown behaviour
        "1,,100,pv,1511544072\n"        # 3: no item
        "1,12,100,pv,not-a-time\n"      # 4: bad time
        "1,10,100,pv,1511544070\n"      # 5: duplicate of 1
        "2,13,100,buy,1505000000\n"     # 6: before the window
        "2,14,100,fav,1511544090\n"
    )
    result = import_taobao(raw)
    bad = {b.row: b.reason for b in result.reports["events"].bad_rows}
    assert sorted(bad) == [2, 3, 4, 5, 6]
    assert bad[2].startswith("event_type not in")
    assert bad[3] == "missing item_id"
    assert bad[4] == "unparseable ts"
    assert bad[5] == "exact duplicate of an earlier row"
    assert bad[6].startswith("ts outside")
    assert result.events["item_id"].tolist() == ["10", "14"]
    assert result.events["event_type"].astype(str).tolist() == ["view", "like"]


def test_a_file_of_the_wrong_shape_is_refused_with_the_fix():
    from recommender.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="9 columns, not Taobao"):
        import_taobao(sample(REES46_SAMPLE))
    with pytest.raises(InvalidRequest, match="missing REES46 column"):
        import_rees46(sample(TAOBAO_SAMPLE))
