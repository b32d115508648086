"""The importers on small fixture files of our own, and validation row numbers.

The fixtures under tests/fixtures/ follow each source's real format; every expected value
below is worked out from their rows (tests/fixtures/README.md lists what each row is for).
The same checks on the real samples in the shared data folder are in
test_importers_real_data.py, marked ``real_data`` and left out of the default run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recommender.data_model import EVENT_COLUMNS, ITEM_COLUMNS, USER_COLUMNS, read_events, read_items, read_users
from recommender.errors import InvalidRequest, NotFound
from indexer.importers import (
    TAOBAO_SAMPLE,
    import_rees46,
    import_taobao,
    locate_sample,
    read_complete_lines,
    write_import,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TAOBAO_FIXTURE = FIXTURES / "taobao" / "UserBehavior_fixture.csv"
REES46_FIXTURE = FIXTURES / "rees46" / "2019-Nov_fixture.csv"

DUPLICATE = "exact duplicate of an earlier row"
TRUNCATED = "truncated last line (no trailing newline)"
OUTSIDE_WINDOW = "ts outside the dataset window 2017-11-25..2017-12-03 (UTC+8)"
BAD_TYPE = "event_type not in ['view', 'click', 'like', 'cart', 'chat', 'purchase']"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def unix(seconds: int) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")


@pytest.fixture(scope="module")
def taobao():
    return import_taobao(TAOBAO_FIXTURE)


@pytest.fixture(scope="module")
def rees46():
    return import_rees46(REES46_FIXTURE)


# --- Taobao UserBehavior ---------------------------------------------------------------


def test_taobao_rejects_each_bad_row_by_line_number_and_reason(taobao):
    report = taobao.reports["events"]
    assert {b.row: b.reason for b in report.bad_rows} == {
        6: DUPLICATE,
        9: BAD_TYPE,
        10: DUPLICATE,
        11: "missing item_id",
        12: "unparseable ts",
        13: OUTSIDE_WINDOW,
        14: OUTSIDE_WINDOW,
        17: OUTSIDE_WINDOW,
        18: OUTSIDE_WINDOW,
        19: "neither user_id nor session_id",
        33: TRUNCATED,
    }
    assert [b.row for b in report.bad_rows] == sorted(b.row for b in report.bad_rows)
    assert (report.rows_in, report.rows_out, report.rejected) == (33, 22, 11)
    assert f"4 {OUTSIDE_WINDOW} (rows 13, 14, 17, 18)" in report.summary()
    assert f"1 {TRUNCATED} (rows 33)" in report.summary()


def test_taobao_keeps_the_window_edges_it_should(taobao):
    ts = taobao.events["ts"]
    assert ts.min() == unix(1511539200) == utc("2017-11-24 16:00")  # line 15: the window's first second
    assert ts.max() == unix(1512316799)  # line 16: its last second
    assert not ts.isin([unix(1511539199), unix(1512316800), unix(1505000000)]).any()


def test_taobao_maps_behaviours_to_event_types(taobao):
    ev = taobao.events
    assert list(ev.columns) == list(EVENT_COLUMNS)
    assert ev["event_type"].value_counts()[lambda c: c > 0].to_dict() == {"view": 13, "purchase": 4, "cart": 3, "like": 2}
    # Kept rows in file order: lines 1-5, 7, 8, 15, 16, 20-32.
    assert ev["event_type"].astype(str).tolist() == [
        "view", "view", "cart", "like", "purchase",  # 7001
        "view", "view", "cart", "view",  # 5002 (line 8 is "PV")
        "view", "like", "purchase",  # 7003
        "view", "view", "view", "view", "cart", "view", "purchase", "view", "purchase", "view",  # 7004
    ]
    assert ev["platform"].isna().all()
    assert "event types: pv->view, cart->cart, fav->like, buy->purchase (view 13, purchase 4, cart 3, like 2)" in (
        taobao.derived
    )


def test_taobao_sessions_break_after_more_than_thirty_minutes(taobao):
    ev = taobao.events
    assert ev["session_id"].tolist() == [
        "7001-0", "7001-0", "7001-0", "7001-1", "7001-1",  # gap of exactly 30 min stays, 30 min 1 s cuts
        "5002-1", "5002-1", "5002-0", "5002-2",  # line 15 is 5002's earliest though listed after 7-8
        "7003-0", "7003-0", "7003-1",
        "7004-0", "7004-0", "7004-0", "7004-1", "7004-2", "7004-2", "7004-2", "7004-2", "7004-3", "7004-3",
    ]
    assert "session_id: 11 sessions from 30-minute inactivity gaps per user" in taobao.derived


def test_taobao_session_gap_is_a_parameter():
    result = import_taobao(TAOBAO_FIXTURE, session_gap_min=60)
    sessions = result.events.groupby("user_id")["session_id"].nunique().to_dict()
    assert sessions == {"5002": 3, "7001": 1, "7003": 2, "7004": 3}
    assert "session_id: 9 sessions from 60-minute inactivity gaps per user" in result.derived


def test_taobao_items_users_and_notes_are_derived_from_events(taobao):
    items = taobao.items
    assert list(items.columns) == list(ITEM_COLUMNS)
    assert items["item_id"].tolist() == [
        "900101", "900102", "900103", "900104", "900105", "900109", "900110",
        "900113", "900120", "900121", "900122", "900123", "900124", "900125",
    ]
    by_id = items.set_index("item_id")
    # 900101: seen first at line 1 (category 501), last at line 20 (category 506).
    assert by_id.loc["900101", "category"] == "506"
    assert by_id.loc["900101", "created_at"] == unix(1511600000)
    assert by_id.loc["900120", "created_at"] == unix(1511700000)  # lines 23, 27, 31: the first one
    assert by_id.loc["900110", "created_at"] == unix(1512316799)  # line 17 (window end) left out
    assert (items["bumped_at"] == items["created_at"]).all()
    assert (items["status"] == "active").all() and (items["price"] == 0.0).all()
    assert (items["title"] == "").all()
    users = taobao.users
    assert list(users.columns) == list(USER_COLUMNS)
    assert users["user_id"].tolist() == ["7001", "5002", "7003", "7004"]
    assert taobao.derived[0] == "dropped the cut last line 33 of the file"
    assert any(note.startswith("items: 14 from events;") for note in taobao.derived)
    assert any(note.startswith("price: absent from the source; set to 0.0 for all 14 items") for note in taobao.derived)
    assert any(note.startswith("users: 4 ids only;") for note in taobao.derived)
    assert taobao.reports["items"].rejected == 0 and taobao.reports["users"].rejected == 0


def test_taobao_file_without_a_cut_line_says_it_ends_cleanly(tmp_path):
    whole = tmp_path / "whole.csv"
    data = TAOBAO_FIXTURE.read_bytes()
    whole.write_bytes(data[: data.rfind(b"\n") + 1])  # lines 1-32
    result = import_taobao(whole)
    report = result.reports["events"]
    assert result.derived[0] == "the file ends cleanly (no cut line)"
    assert (report.rows_in, report.rows_out) == (32, 22)
    assert TRUNCATED not in report.reasons()


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


# --- REES46 ------------------------------------------------------------------------------


def test_rees46_rejects_each_bad_row_by_data_row_number_and_reason(rees46):
    report = rees46.reports["events"]
    assert {b.row: b.reason for b in report.bad_rows} == {
        4: DUPLICATE,
        5: BAD_TYPE,  # remove_from_cart
        10: "missing item_id",
        11: "unparseable ts",
        13: "neither user_id nor session_id",
        20: DUPLICATE,
        26: TRUNCATED,  # line 27 of the file: the header is not counted
    }
    assert (report.rows_in, report.rows_out) == (26, 19)
    assert rees46.derived[0] == "dropped the cut last line (data row 26)"
    assert rees46.derived[1] == "left out 2 exact duplicate rows (double logging in the source)"


def test_rees46_events_keep_types_times_and_users(rees46):
    ev = rees46.events
    assert list(ev.columns) == list(EVENT_COLUMNS)
    assert ev["event_type"].value_counts()[lambda c: c > 0].to_dict() == {"view": 15, "cart": 2, "purchase": 2}
    assert ev["event_type"].iloc[5] == "view"  # row 8, "VIEW"
    assert ev["ts"].iloc[0] == utc("2019-11-05 10:00:00")
    assert ev["ts"].iloc[-1] == utc("2019-11-05 12:01:00")
    assert ev["user_id"].isna().sum() == 1  # row 12: a session but no user
    assert ev["item_id"].tolist() == [
        "700001", "700002", "700001", "700001", "700003", "700004", "700005", "700006", "700008", "700009",
        "700002", "700002", "700004", "700004", "700010", "700010", "700005", "700001", "700011",
    ]
    assert rees46.users["user_id"].tolist() == ["800001", "800002", "800004", "800005", "800006", "800007"]
    assert any(note.startswith("users: 6 ids only;") for note in rees46.derived)


def test_rees46_keeps_source_sessions_and_derives_only_the_empty_ones(rees46):
    s = "a0000000-0000-4000-8000-00000000000"
    assert rees46.events["session_id"].tolist() == [
        f"{s}1", f"{s}1", f"{s}1", f"{s}1",  # rows 1, 2, 3, 6
        f"{s}2", f"{s}2", "gap-800002-0",  # rows 7, 8, 9 (empty user_session)
        f"{s}4",  # row 12
        f"{s}5", f"{s}5", f"{s}5", f"{s}6",  # rows 14-17
        f"{s}7", f"{s}7", f"{s}7",  # rows 18, 19, 21
        f"{s}8",  # row 22: a new source session 26 minutes after S1, kept as the source has it
        "gap-800002-1",  # row 23: 53 minutes after row 9
        f"{s}1",  # row 24: back in S1 after 116 minutes, not cut
        f"{s}9",
    ]
    assert (
        "session_id: the source's user_session; 2 empty ones derived from 30-minute gaps" in rees46.derived
    )


def test_rees46_items_carry_category_paths_titles_and_last_prices(rees46):
    items = rees46.items
    assert list(items.columns) == list(ITEM_COLUMNS)
    got = {
        row.item_id: (row.category, row.title, row.price, row.created_at)
        for row in items.itertuples(index=False)
    }
    assert got == {
        "700001": ("electronics/smartphone", "acme smartphone", 175.00, utc("2019-11-05 10:00:00")),
        "700002": ("other/1002", "zeta", 11.00, utc("2019-11-05 10:01:00")),  # row 17's empty price is not seen
        "700003": ("appliances/kitchen/mixer", "mixer", 0.0, utc("2019-11-05 10:05:00")),
        "700004": ("furniture/living_room/sofa", "sofaco sofa", 540.00, utc("2019-11-05 10:06:00")),
        "700005": ("other/1005", "", 6.00, utc("2019-11-05 10:07:00")),
        "700006": ("apparel", "kito apparel", 30.00, utc("2019-11-05 10:09:00")),
        "700010": ("electronics/audio/headphone", "sonix headphone", 49.90, utc("2019-11-05 10:22:00")),
        "700011": ("electronics/smartphone", "acme smartphone", 99.00, utc("2019-11-05 12:01:00")),
    }
    # 700008 (price -5.00) and 700009 (no price) are left out of items, not of events.
    items_report = rees46.reports["items"]
    assert (items_report.rows_in, items_report.rows_out) == (10, 8)
    assert items_report.reasons() == {"price missing or negative": 2}
    assert {"700008", "700009"} <= set(rees46.events["item_id"])
    assert any(
        note.startswith("category: category_code as a path (a.b -> a/b); 2 items without a code") for note in rees46.derived
    )
    assert any(note.startswith("items: 8 from events;") for note in rees46.derived)


# --- Both --------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["taobao", "rees46"])
def test_written_files_read_back_through_the_data_model(which, request, tmp_path):
    result = request.getfixturevalue(which)
    paths = write_import(result, tmp_path / which)
    events, events_report = read_events(paths["events"])
    items, items_report = read_items(paths["items"])
    users, users_report = read_users(paths["users"])
    assert (events_report.rejected, items_report.rejected, users_report.rejected) == (0, 0, 0)
    assert (len(events), len(items), len(users)) == {"taobao": (22, 14, 4), "rees46": (19, 8, 6)}[which]
    assert events["session_id"].tolist() == result.events["session_id"].tolist()


def test_a_file_of_the_wrong_shape_is_refused_with_the_fix():
    with pytest.raises(InvalidRequest, match="9 columns, not Taobao"):
        import_taobao(REES46_FIXTURE)
    with pytest.raises(InvalidRequest, match="missing REES46 column"):
        import_rees46(TAOBAO_FIXTURE)


def test_a_missing_sample_says_where_it_should_be(tmp_path):
    with pytest.raises(NotFound, match="HOTFEED_PATHS_SHARED_DATA_DIR") as info:
        locate_sample(tmp_path, TAOBAO_SAMPLE)
    assert str(tmp_path / TAOBAO_SAMPLE) in str(info.value)
    with pytest.raises(NotFound, match="--src"):
        locate_sample(tmp_path, TAOBAO_SAMPLE, src=tmp_path / "nope.csv")
    assert locate_sample(tmp_path, TAOBAO_SAMPLE, src=TAOBAO_FIXTURE) == TAOBAO_FIXTURE


def test_a_cut_last_line_is_found_and_left_out(tmp_path):
    cut = tmp_path / "cut.csv"
    cut.write_bytes(b"a,1\nb,2\nc,")
    assert read_complete_lines(cut) == (b"a,1\nb,2\n", 3)
    whole = tmp_path / "whole.csv"
    whole.write_bytes(b"a,1\nb,2\n")
    assert read_complete_lines(whole) == (b"a,1\nb,2\n", None)
    assert read_complete_lines(TAOBAO_FIXTURE)[1] == 33
    assert read_complete_lines(REES46_FIXTURE)[1] == 27  # a line number: the header counts here
