"""`hotfeed data ...` end to end through the console entry point, on small inputs."""

from __future__ import annotations

import pandas as pd
import pytest

from recommender.cli import main


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HOTFEED_PATHS_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_validate_prints_each_bad_row_with_its_number_and_exits_1(tmp_path, capsys):
    path = tmp_path / "events.csv"
    path.write_text(
        "ts,user_id,item_id,event_type\n"
        "2024-05-01T10:00:00Z,u1,i1,view\n"
        "yesterday,u1,i2,view\n"
        "2024-05-01T10:01:00Z,u1,,view\n"
        "2024-05-01T10:02:00Z,u1,i3,teleport\n"
    )
    assert main(["data", "validate", str(path), "--kind", "events"]) == 1
    out = capsys.readouterr().out
    assert "row 2: unparseable ts" in out
    assert "row 3: missing item_id" in out
    assert "row 4: event_type not in" in out
    assert "events: 1 rows kept, 3 rejected" in out


def test_validate_exits_0_on_a_clean_file(tmp_path, capsys):
    path = tmp_path / "users.csv"
    path.write_text("user_id,gender,birth_year\nu1,f,1990\nu2,,\n")
    assert main(["data", "validate", str(path), "--kind", "users"]) == 0
    assert "users: 2 rows kept, none rejected" in capsys.readouterr().out


def test_synth_writes_three_parquet_files_and_a_summary(data_dir, capsys):
    args = ["data", "synth", "--items", "300", "--users", "200", "--days", "2", "--seed", "3", "--events", "3000"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "synth: 300 items, 200 users" in out and "generated in" in out
    for kind in ("items", "users", "events"):
        assert (data_dir / "synth" / f"{kind}.parquet").is_file()
    first = pd.read_parquet(data_dir / "synth" / "events.parquet")
    assert main(args) == 0
    pd.testing.assert_frame_equal(first, pd.read_parquet(data_dir / "synth" / "events.parquet"))


def test_nginx_import_prints_what_each_rule_removed(tmp_path, data_dir, capsys):
    ua = '"Mozilla/5.0 (Android 14)"'
    log = tmp_path / "access.log"
    log.write_text("\n".join([
        f'10.0.0.1 - - [01/May/2024:10:00:00 +0000] "GET /items/7 HTTP/1.1" 200 10 "-" {ua}',
        f'10.0.0.1 - - [01/May/2024:10:00:01 +0000] "GET /items/8 HTTP/1.1" 499 0 "-" {ua}',
        f'10.0.0.1 - - [01/May/2024:10:00:02 +0000] "GET /help HTTP/1.1" 200 10 "-" {ua}',
    ]) + "\n")
    assert main(["data", "import", "nginx", str(log), "--item-regex", r"^/items/(?P<item_id>\d+)$"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 rows: non-2xx status" in out
    assert "removed 1 rows: not an item page" in out
    assert "nginx: 1 events from 3 lines" in out
    assert len(pd.read_parquet(data_dir / "nginx" / "events.parquet")) == 1


def test_a_missing_sample_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "import", "rees46", "--src", str(tmp_path / "none.csv")]) == 1
    assert "does not exist" in capsys.readouterr().err
