"""Each web-log cleaning rule removes exactly the rows it should, on crafted nginx lines."""

from __future__ import annotations

import pandas as pd
import pytest

from recommender.errors import InvalidRequest
from indexer.weblogs import (
    clean_weblog,
    drop_abusive_bursts,
    drop_exact_duplicates,
    drop_non_2xx,
    match_item_requests,
    parse_combined_log,
    platform_from_user_agent,
)

ITEM_REGEX = r"^/items/(?P<item_id>\d+)(?:/(?P<event_type>like|chat))?/?(?:\?.*)?$"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"
ANDROID = "Mozilla/5.0 (Linux; Android 14; Pixel 8)"


def line(t: str, path: str, *, status: int = 200, ip: str = "10.0.0.1", user: str = "-", ua: str = IPHONE,
         size: int = 512) -> str:
    """Return one nginx combined-format line at 2024-05-01 ``t`` (HH:MM:SS, UTC)."""
    return (f'{ip} - {user} [01/May/2024:{t} +0000] "GET {path} HTTP/1.1" {status} {size} '
            f'"https://shop.example/" "{ua}"')


def hits(*lines: str) -> pd.DataFrame:
    parsed, bad = parse_combined_log(list(lines))
    assert bad == []
    found, _ = match_item_requests(parsed, item_regex=ITEM_REGEX)
    return found


def test_parse_reads_every_field_and_reports_unparseable_lines_by_number():
    parsed, bad = parse_combined_log([
        line("10:00:00", "/items/1", user="alice"),
        "this is not a log line",
        line("10:00:05", "/items/2", ip="10.0.0.9"),
        '10.0.0.1 - - [31/Foo/2024:10:00:00 +0000] "GET /items/1 HTTP/1.1" 200 1 "-" "x"',
    ])
    assert [(b.row, b.reason) for b in bad] == [(2, "not nginx combined log format"), (4, "not nginx combined log format")]
    assert parsed["line"].tolist() == [1, 3]
    first = parsed.iloc[0]
    assert first["remote_user"] == "alice" and first["path"] == "/items/1" and first["status"] == 200
    assert first["ts"] == pd.Timestamp("2024-05-01 10:00:00", tz="UTC")
    assert pd.isna(parsed.iloc[1]["remote_user"])


def test_time_zone_offsets_become_utc():
    parsed, _ = parse_combined_log([line("10:00:00", "/items/1").replace("+0000", "+0200")])
    assert parsed["ts"].iloc[0] == pd.Timestamp("2024-05-01 08:00:00", tz="UTC")


def test_item_regex_keeps_item_pages_and_reads_the_event_type_group():
    parsed, _ = parse_combined_log([
        line("10:00:00", "/items/1"), line("10:00:01", "/items/2/like"), line("10:00:02", "/about"),
        line("10:00:03", "/items/3?ref=feed"), line("10:00:04", "/static/app.js"),
    ])
    found, removed = match_item_requests(parsed, item_regex=ITEM_REGEX)
    assert removed == 2
    assert found["item_id"].tolist() == ["1", "2", "3"]
    assert found["event_type"].tolist() == ["view", "like", "view"]


def test_item_regex_without_item_id_group_is_refused_with_the_fix():
    parsed, _ = parse_combined_log([line("10:00:00", "/items/1")])
    with pytest.raises(InvalidRequest, match=r"no named group 'item_id'"):
        match_item_requests(parsed, item_regex=r"^/items/(\d+)")
    with pytest.raises(InvalidRequest, match="does not compile"):
        match_item_requests(parsed, item_regex=r"^/items/(?P<item_id>\d+")


def test_non_2xx_responses_are_dropped():
    frame = hits(*(line(f"10:00:0{k}", f"/items/{k}", status=s) for k, s in enumerate([200, 204, 499, 302, 404, 500, 301])))
    kept, removed = drop_non_2xx(frame)
    assert removed == 5
    assert kept["item_id"].tolist() == ["0", "1"]


def test_exact_duplicate_lines_keep_the_first_only():
    same = line("10:00:00", "/items/1")
    frame = hits(same, same, same, line("10:00:01", "/items/1"), line("10:00:00", "/items/1", size=513))
    kept, removed = drop_exact_duplicates(frame)
    assert removed == 2
    assert kept["line"].tolist() == [1, 4, 5]


def test_three_hits_within_ten_seconds_are_a_burst_and_all_go():
    frame = hits(line("10:00:00", "/items/1"), line("10:00:04", "/items/1"), line("10:00:09", "/items/1"),
                 line("10:00:05", "/items/2"))
    kept, removed = drop_abusive_bursts(frame, min_hits=3, window_s=10)
    assert removed == 3
    assert kept["item_id"].tolist() == ["2"]


def test_a_burst_window_includes_its_boundary_and_not_beyond():
    at_boundary = hits(line("10:00:00", "/items/1"), line("10:00:05", "/items/1"), line("10:00:10", "/items/1"))
    beyond = hits(line("10:00:00", "/items/1"), line("10:00:05", "/items/1"), line("10:00:11", "/items/1"))
    assert drop_abusive_bursts(at_boundary, min_hits=3, window_s=10)[1] == 3
    assert drop_abusive_bursts(beyond, min_hits=3, window_s=10)[1] == 0


def test_bursts_count_per_client_and_item():
    frame = hits(
        line("10:00:00", "/items/1", ip="10.0.0.1"), line("10:00:01", "/items/1", ip="10.0.0.2"),
        line("10:00:02", "/items/1", ip="10.0.0.3"),  # three clients, one hit each
        line("10:00:00", "/items/5", ip="10.0.0.4"), line("10:00:01", "/items/6", ip="10.0.0.4"),
        line("10:00:02", "/items/7", ip="10.0.0.4"),  # one client, three items
        line("10:00:00", "/items/8", ip="10.0.0.5", ua=IPHONE), line("10:00:01", "/items/8", ip="10.0.0.5", ua=ANDROID),
        line("10:00:02", "/items/8", ip="10.0.0.5", ua=IPHONE),  # same address, two user agents: two clients
    )
    assert drop_abusive_bursts(frame, min_hits=3, window_s=10)[1] == 0


def test_a_long_burst_removes_every_hit_that_belongs_to_a_full_window():
    # 0, 4, 8 form a burst and 8, 12, 16 another; 30 stands alone.
    frame = hits(*(line(f"10:00:{s:02d}", "/items/1") for s in (0, 4, 8, 12, 16, 30)))
    kept, removed = drop_abusive_bursts(frame, min_hits=3, window_s=10)
    assert removed == 5
    assert kept["ts"].dt.second.tolist() == [30]


def test_burst_size_and_window_are_configurable():
    frame = hits(line("10:00:00", "/items/1"), line("10:00:03", "/items/1"), line("10:00:20", "/items/2"),
                 line("10:00:29", "/items/2"))
    assert drop_abusive_bursts(frame, min_hits=2, window_s=5)[1] == 2
    assert drop_abusive_bursts(frame, min_hits=2, window_s=10)[1] == 4
    assert drop_abusive_bursts(frame, min_hits=3, window_s=60)[1] == 0


def test_platform_is_guessed_from_the_user_agent():
    ua = pd.Series([IPHONE, ANDROID, "curl/8.0", None, "hotfeed-ios/2.1"])
    assert platform_from_user_agent(ua).tolist() == ["ios", "android", "web", "web", "ios"]


def test_clean_weblog_counts_each_rule_and_sessionizes_by_inactivity():
    lines = [
        line("10:00:00", "/items/1"),                 # 1 kept, session A
        line("10:00:00", "/items/1"),                 # 2 exact duplicate of 1
        line("10:00:30", "/items/2", status=499),     # 3 aborted
        line("10:01:00", "/items/2", status=302),     # 4 redirect
        "garbage",                                    # 5 unparseable
        line("10:02:00", "/about"),                   # 6 not an item page
        line("10:29:00", "/items/2/like"),            # 7 kept, 29 min after line 1: session A
        line("11:00:00", "/items/3"),                 # 8 kept, 31 min later: session B
        line("12:00:00", "/items/9", ip="10.0.0.66"),  # 9-11 a burst by another client
        line("12:00:01", "/items/9", ip="10.0.0.66"),
        line("12:00:02", "/items/9", ip="10.0.0.66"),
        line("12:00:00", "/items/4", user="bob", ua=ANDROID),  # 12 kept, logged-in user
    ]
    result = clean_weblog(lines, item_regex=ITEM_REGEX, burst_min_hits=3, burst_window_s=10, session_gap_min=30)
    assert result.removed == {
        "unparseable line": 1,
        "not an item page": 1,
        "non-2xx status": 2,
        "exact duplicate line": 1,
        "abusive burst (>= 3 hits on one item within 10 s)": 3,
        "invalid event": 0,
    }
    assert sum(result.removed.values()) + len(result.events) == len(lines)
    ev = result.events
    assert ev["item_id"].tolist() == ["1", "2", "3", "4"]
    assert ev["event_type"].astype(str).tolist() == ["view", "like", "view", "view"]
    sessions = ev["session_id"].tolist()
    assert sessions[0] == sessions[1] != sessions[2]
    assert ev["user_id"].isna().tolist() == [True, True, True, False]
    assert ev["user_id"].iloc[3] == "bob" and sessions[3] == "web-bob-0"
    assert ev["platform"].tolist() == ["ios", "ios", "ios", "android"]
    assert [(b.row, b.reason) for b in result.bad_lines] == [(5, "not nginx combined log format")]


def test_item_regexes_beyond_re2_still_work():
    # A lookahead is outside RE2, so matching falls back to Python's re.
    parsed, _ = parse_combined_log([line("10:00:00", "/items/1"), line("10:00:01", "/items/2/edit")])
    found, removed = match_item_requests(parsed, item_regex=r"^/items/(?P<item_id>\d+)(?!/edit)$")
    assert found["item_id"].tolist() == ["1"] and removed == 1
