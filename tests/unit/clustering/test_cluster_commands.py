"""`hotfeed cluster` argument checks that need no Redis."""

from __future__ import annotations

from recommender.cli import build_parser, main


def test_cluster_run_and_schedule_are_registered():
    parser = build_parser()
    args = parser.parse_args(["cluster", "schedule", "--every-minutes", "5", "--no-export"])
    assert args.every_minutes == 5 and args.no_export and callable(args.handler)


def test_a_bad_k_is_rejected_before_touching_anything(tmp_path, capsys):
    assert main(["cluster", "run", "--data", str(tmp_path), "--k", "-3"]) == 1
    assert "--k -3 must be between 1 and 1024" in capsys.readouterr().err


def test_a_bad_now_is_rejected_with_an_example(tmp_path, capsys):
    assert main(["cluster", "run", "--data", str(tmp_path), "--now", "yesterday-ish"]) == 1
    assert "2026-11-22T15:00:00Z" in capsys.readouterr().err
