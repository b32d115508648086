"""`hotfeed events push` against the real Redis: good lines go in, bad ones are named by line."""

from __future__ import annotations

import json

from recommender.cli import main
from recommender.stores import open_redis


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def _stream_len(redis_settings) -> int:
    client = open_redis(redis_settings)
    try:
        return int(client.xlen(f"{redis_settings.key_prefix}events"))
    finally:
        client.close()


def test_good_lines_are_pushed_and_bad_ones_reported_with_line_numbers(tmp_path, redis_settings, monkeypatch, capsys):
    monkeypatch.setenv("HOTFEED_REDIS_KEY_PREFIX", redis_settings.key_prefix)
    events = _write(tmp_path / "events.jsonl", [
        {"type": "view", "item_id": "i1", "user_id": "u1"},
        "not json",
        {"event_type": "click", "item_id": "i2", "session_id": "s1"},
        {"type": "teleport", "item_id": "i3", "user_id": "u1"},
    ])
    assert main(["events", "push", str(events)]) == 1
    out = capsys.readouterr()
    assert "2 events appended" in out.out and "2 bad line(s) skipped" in out.out
    assert f"{events}:2:" in out.err and f"{events}:4:" in out.err and "'teleport'" in out.err
    assert _stream_len(redis_settings) == 2


def test_strict_refuses_the_whole_file_for_one_bad_line(tmp_path, redis_settings, monkeypatch, capsys):
    monkeypatch.setenv("HOTFEED_REDIS_KEY_PREFIX", redis_settings.key_prefix)
    events = _write(tmp_path / "events.jsonl", [{"type": "view", "item_id": "i1", "user_id": "u1"}, "[1, 2]"])
    assert main(["events", "push", "--strict", str(events)]) == 1
    assert "nothing appended (--strict)" in capsys.readouterr().err
    assert _stream_len(redis_settings) == 0


def test_listings_are_pushed_and_a_listing_with_an_unknown_field_is_named(tmp_path, redis_settings, monkeypatch,
                                                                          capsys):
    monkeypatch.setenv("HOTFEED_REDIS_KEY_PREFIX", redis_settings.key_prefix)
    events = _write(tmp_path / "listings.jsonl", [
        {"type": "item", "item_id": "L1", "title": "desk", "category": "home/desks", "price": 40, "region": "r",
         "seller_id": "s"},
        {"type": "item", "item_id": "L1", "bumped_at": "2026-01-01T00:00:00Z"},
        {"type": "item", "item_id": "L2", "title": "lamp", "colour": "red"},
    ])
    assert main(["events", "push", str(events)]) == 1
    out = capsys.readouterr()
    assert "2 events appended" in out.out and f"{events}:3:" in out.err and "'colour'" in out.err
    assert _stream_len(redis_settings) == 2
