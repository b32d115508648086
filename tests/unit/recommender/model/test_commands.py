import json

import numpy as np
import pytest
import torch

from recommender.cli import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_eval_on_events_with_wrong_columns_fails_with_one_clear_line(tmp_path, artifacts, capsys):
    bad = tmp_path / "events.csv"
    bad.write_text("sessionId,itemId,timeframe\n1,2,3\n")
    assert main(["eval", "--events", str(bad)]) == 1
    err = _one_line_error(capsys)
    assert "missing column(s)" in err and "'ts'" in err


def test_eval_on_a_corrupt_parquet_file_fails_with_one_clear_line(tmp_path, artifacts, capsys):
    bad = tmp_path / "events.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    assert main(["eval", "--events", str(bad)]) == 1
    assert "cannot be read" in _one_line_error(capsys)


def test_eval_on_a_file_without_valid_rows_says_why(tmp_path, artifacts, capsys):
    bad = tmp_path / "events.csv"
    bad.write_text("ts,user_id,item_id,event_type\nyesterday,u,1,view\n")
    assert main(["eval", "--events", str(bad)]) == 1
    assert "unparseable ts" in _one_line_error(capsys)


def test_train_then_eval_the_checkpoint_end_to_end(tmp_path, artifacts, chain_raw, capsys):
    events = tmp_path / "events.csv"
    chain_raw.to_csv(events, index=False)
    ckpt = tmp_path / "m" / "gru4rec.pt"
    common = ["--events", str(events), "--epochs", "1", "--set", "embedding_dim=16", "--device", "cpu"]
    # --no-publish: a unit test must not reach Redis (publishing has its own integration tests).
    assert main(["train", "--model", "gru4rec", "--out", str(tmp_path / "m"), "--no-publish", *common]) == 0
    assert ckpt.exists()
    out = tmp_path / "report"
    assert main(["eval", "--checkpoint", str(ckpt), "--out", str(out), "--metrics", "HR@20,Tail@20", *common]) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    # The checkpoint's own blend is a row too: its weights and counting parts as the recommender serves them.
    assert set(results) == {"POP", "S-POP", "ItemKNN", "SR", "SKNN", "V-SKNN", "STAN", "VSTAN", "gru4rec",
                            "gru4rec+VSTAN", "gru4rec+VSTAN as published"}
    assert set(results["POP"]) == {"HR@20", "Tail@20"}
    printed = capsys.readouterr().out
    assert (out / "HR_at_20.png").exists() and "gru4rec" in printed and "protocol: filtered" in printed
    # The chain data is deterministic (i -> 7i + 3): sequential rules learn it exactly.
    assert results["SR"]["HR@20"] == 1.0
    # Only the chosen baselines, under the next-click protocol.
    out2 = tmp_path / "report2"
    assert main(["eval", "--checkpoint", str(ckpt), "--out", str(out2), "--metrics", "HR@20", "--baselines", "SR,VSTAN",
                 "--protocol", "next-click", *common]) == 0
    report = json.loads((out2 / "results.json").read_text())
    assert set(report["results"]) == {"SR", "VSTAN", "gru4rec", "gru4rec+VSTAN", "gru4rec+VSTAN as published"}
    assert report["protocol"] == "next-click"
    weights = report["hybrids"]["gru4rec+VSTAN"]["weights"]
    assert sum(weights[k] for k in ("model", "knn", "repeat", "category")) == pytest.approx(1.0)
    # Each blend against the bar's baseline that ran (VSTAN; V-SKNN was not asked for), paired on the same prefixes.
    assert set(report["comparisons"]) == {"gru4rec+VSTAN vs VSTAN", "gru4rec+VSTAN as published vs VSTAN"}
    diffs = report["comparisons"]["gru4rec+VSTAN vs VSTAN"]
    assert [d["metric"] for d in diffs] == ["HR@20", "MRR@20"]
    assert all(d["low"] <= d["difference"] <= d["high"] and d["verdict"] in {"better", "worse", "tie"} for d in diffs)
    assert diffs[0]["difference"] == pytest.approx(report["results"]["gru4rec+VSTAN"]["HR@20"]
                                                   - report["results"]["VSTAN"]["HR@20"])
    assert "gru4rec+VSTAN vs VSTAN: HR@20" in capsys.readouterr().out


def test_unknown_metric_fails_before_training(tmp_path, artifacts, chain_raw, capsys):
    events = tmp_path / "events.csv"
    chain_raw.to_csv(events, index=False)
    assert main(["eval", "--events", str(events), "--metrics", "Recall@5"]) == 1
    assert "'Recall@5'" in _one_line_error(capsys)


def test_eval_maps_a_checkpoint_trained_on_another_vocabulary(tmp_path, artifacts, chain_raw, capsys):
    partial, full = tmp_path / "partial.csv", tmp_path / "full.csv"
    chain_raw.loc[chain_raw["item_id"] != "i0"].to_csv(partial, index=False)
    chain_raw.to_csv(full, index=False)
    flags = ["--epochs", "1", "--set", "embedding_dim=16", "--device", "cpu"]
    assert main(["train", "--model", "tailnet", "--events", str(partial), "--out", str(tmp_path / "t.pt"),
                 "--no-publish", *flags]) == 0
    out = tmp_path / "report"
    assert main(["eval", "--events", str(full), "--checkpoint", str(tmp_path / "t.pt"), "--out", str(out),
                 "--metrics", "HR@20,Coverage@20", *flags]) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    # the item the checkpoint never saw is never recommended by it (nor by its blend), so neither covers all 30 items
    for row in ("tailnet", "tailnet+VSTAN as published"):
        assert results[row]["Coverage@20"] <= 29 / 30 and results[row]["HR@20"] > 0


def test_refit_trains_the_served_model_on_train_plus_validation_and_the_knn_holds_every_session(
        tmp_path, artifacts, chain_raw, capsys):
    from recommender.data_model import validate_events
    from recommender.model.checkpoint import load_checkpoint
    from recommender.model.data import build_sessions, split_sessions

    events = tmp_path / "events.csv"
    chain_raw.to_csv(events, index=False)
    common = ["--events", str(events), "--epochs", "2", "--set", "embedding_dim=16", "--device", "cpu",
              "--no-publish", "--items", "none"]
    assert main(["train", "--out", str(tmp_path / "plain.pt"), *common]) == 0
    capsys.readouterr()
    assert main(["train", "--refit", "--out", str(tmp_path / "refit.pt"), *common]) == 0
    # The second fit has no validation sessions: the summary says which epoch it kept, not "nan".
    said = capsys.readouterr().out
    assert "no validation sessions: epoch 2 kept" in said and "nan" not in said
    plain, refit = load_checkpoint(tmp_path / "plain.pt"), load_checkpoint(tmp_path / "refit.pt")
    assert plain.vocab == refit.vocab
    # With or without --refit, the checkpoint's counts and the blend's neighbours are every session
    # of the log: the validation and test sessions count once nothing is measured on them.
    split = split_sessions(build_sessions(validate_events(chain_raw)[0]), test_days=1.0)
    every = [*split.train, *split.valid, *split.test]
    for checkpoint in (plain, refit):
        assert checkpoint.blend.knn.n_sessions == len(every) > len(split.train)
        assert checkpoint.item_counts.sum() == sum(len(s) for s in every)
    assert refit.blend.weights == plain.blend.weights  # picked once, on validation
    # --refit trains the model again on train + validation: other weights than the plain fit's.
    assert refit.meta["split"]["refit"] is True and "refit" not in plain.meta["split"]
    assert not torch.equal(refit.model.items.weight, plain.model.items.weight)
    out = tmp_path / "report"
    assert main(["eval", "--refit", "--models", "tailnet", "--baselines", "S-POP", "--hybrids", "", "--out", str(out),
                 "--metrics", "HR@20", *common[:-3]]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["refit"] is True and report["split_params"]["refit"] is True
    # The report records the tail bias picked on validation and how; the refitted model keeps it.
    trained = report["training"]["tailnet"]
    assert trained["config"]["tail_bias"] == load_checkpoint(out / "tailnet.pt").config["tail_bias"]
    assert all(float(b) > 0 and "taken" in v for b, v in trained["tail_bias_scan"].items())


def test_with_train_days_the_blend_is_picked_with_parts_as_long_as_the_published_ones(tmp_path, artifacts, chain_raw):
    from recommender.data_model import validate_events
    from recommender.model.checkpoint import load_checkpoint
    from recommender.model.data import build_sessions, split_sessions

    events = tmp_path / "events.csv"
    chain_raw.to_csv(events, index=False)
    assert main(["train", "--out", str(tmp_path / "m.pt"), "--events", str(events), "--train-days", "1", "--epochs",
                 "1", "--set", "embedding_dim=16", "--device", "cpu", "--no-publish", "--items", "none"]) == 0
    split = split_sessions(build_sessions(validate_events(chain_raw)[0]), test_days=1.0, train_days=1.0)
    checkpoint = load_checkpoint(tmp_path / "m.pt")
    assert checkpoint.blend.info["picked_with_sessions"] == len(split.history) + len(split.train) > len(split.train)
    # Published: training, validation and test sessions (the history is for the pick only).
    assert checkpoint.blend.knn.n_sessions == len(split.train) + len(split.valid) + len(split.test)


def test_train_reads_the_blends_categories_from_the_items_file_beside_the_events(tmp_path, artifacts, chain_raw):
    from recommender.model.checkpoint import load_checkpoint

    import pandas as pd

    events = tmp_path / "events.csv"
    chain_raw.to_csv(events, index=False)
    # i0..i29 in three categories by id modulo 3; i29 is left out of the items file (no category).
    pd.DataFrame({"item_id": [f"i{n}" for n in range(29)], "category": [f"c{n % 3}" for n in range(29)],
                  "price": 10.0, "created_at": "2026-01-01T00:00:00Z"}).to_csv(tmp_path / "items.csv", index=False)
    common = ["--events", str(events), "--epochs", "1", "--set", "embedding_dim=16", "--device", "cpu", "--no-publish"]
    assert main(["train", "--out", str(tmp_path / "with.pt"), *common]) == 0
    assert main(["train", "--out", str(tmp_path / "without.pt"), "--items", "none", *common]) == 0
    with_, without = load_checkpoint(tmp_path / "with.pt"), load_checkpoint(tmp_path / "without.pt")
    prior = with_.blend.categories
    ids = with_.vocab.to_list()
    names = {code: {ids[i - 1] for i in np.flatnonzero(prior.codes == code)} for code in range(prior.num_categories)}
    assert sorted(map(sorted, names.values())) == sorted(
        sorted(f"i{n}" for n in range(29) if n % 3 == r) for r in range(3))
    assert prior.codes[with_.vocab.index_of(["i29"])[0]] == -1
    # Each category's shares are its items' training clicks over the category's, so they sum to 1.
    for code in range(3):
        assert prior.share()[prior.codes == code].sum() == pytest.approx(1.0)
    assert without.blend.categories is None and without.blend.weights.category == 0.0


def test_blends_are_compared_with_the_bar_baselines_and_gru4rec_but_not_their_own_model():
    from recommender.model.metrics import RankedLists
    from recommender.model.eval_run import _blends_against_baselines

    targets, tail = np.arange(1, 41) % 5 + 1, np.zeros(6, dtype=bool)
    hit = RankedLists(topk=np.tile(np.arange(1, 6), (40, 1)), targets=targets, is_tail=tail)  # every target in the top 5
    miss = RankedLists(topk=np.zeros((40, 5), dtype=np.int64), targets=targets, is_tail=tail)
    lists = {"VSTAN": [miss], "gru4rec": [miss], "tailnet+VSTAN": [hit], "gru4rec+VSTAN": [hit]}
    pairs = _blends_against_baselines(lists, {"tailnet+VSTAN": {}, "gru4rec+VSTAN": {}})
    assert set(pairs) == {"tailnet+VSTAN vs VSTAN", "tailnet+VSTAN vs gru4rec", "gru4rec+VSTAN vs VSTAN"}
    hr = pairs["tailnet+VSTAN vs gru4rec"][0]
    assert hr.metric == "HR@20" and hr.difference == pytest.approx(1.0) and hr.verdict == "better"


def test_a_blend_against_gru4rec_prints_the_tail_share_ratio():
    from recommender.model.metrics import RankedLists
    from recommender.model.eval_run import _tail_ratio

    tail = np.arange(41) > 20  # items 21..40 are tail
    targets = np.ones(4, dtype=np.int64)
    half = RankedLists(topk=np.tile(np.r_[1:11, 21:31], (4, 1)), targets=targets, is_tail=tail)  # 10 of 20 tail
    quarter = RankedLists(topk=np.tile(np.r_[1:16, 21:26], (4, 1)), targets=targets, is_tail=tail)  # 5 of 20
    head = RankedLists(topk=np.tile(np.arange(1, 21), (4, 1)), targets=targets, is_tail=tail)
    lists = {"tailnet+VSTAN": [half], "gru4rec": [quarter], "VSTAN": [head]}
    assert _tail_ratio("tailnet+VSTAN vs gru4rec", lists) == "; Tail@20 0.5000 vs 0.2500 (2.00x)"
    assert _tail_ratio("tailnet+VSTAN vs VSTAN", lists) == ""
    assert _tail_ratio("tailnet+VSTAN vs gru4rec", {**lists, "gru4rec": [head]}).endswith("(GRU4Rec has none)")
    # Several seeds: the ratio of the mean shares (0.5 and 1.0 over two runs: 0.75 vs 0.25).
    tail_only = RankedLists(topk=np.tile(np.arange(21, 41), (4, 1)), targets=targets, is_tail=tail)
    assert _tail_ratio("tailnet+VSTAN vs gru4rec", {**lists, "tailnet+VSTAN": [half, tail_only]}) == (
        "; Tail@20 0.7500 vs 0.2500 (3.00x)")


def test_the_blend_tail_bias_can_be_fixed_or_turned_off_and_bad_values_are_refused(tmp_path, artifacts, chain_raw,
                                                                                     capsys):
    from recommender.model.checkpoint import load_checkpoint

    events = tmp_path / "events.csv"
    chain_raw.to_csv(events, index=False)
    common = ["--events", str(events), "--epochs", "1", "--set", "embedding_dim=16", "--device", "cpu", "--no-publish"]
    assert main(["train", "--out", str(tmp_path / "fixed.pt"), "--blend-tail-bias", "0.4", *common]) == 0
    assert main(["train", "--out", str(tmp_path / "off.pt"), "--blend-tail-bias", "0", *common]) == 0
    assert load_checkpoint(tmp_path / "fixed.pt").blend.weights.tail_bias == 0.4
    assert load_checkpoint(tmp_path / "off.pt").blend.weights.tail_bias == 0.0
    for bad in ("-1", "lots", "inf"):
        with pytest.raises(SystemExit) as exit_:
            main(["train", "--out", str(tmp_path / "bad.pt"), "--blend-tail-bias", bad, *common])
        assert exit_.value.code == 2
        assert "--blend-tail-bias" in capsys.readouterr().err


def test_eval_with_a_missing_items_file_says_so_in_one_line(tmp_path, artifacts, chain_raw, capsys):
    events = tmp_path / "events.csv"
    chain_raw.to_csv(events, index=False)
    assert main(["eval", "--events", str(events), "--models", "gru4rec", "--baselines", "", "--epochs", "1",
                 "--items", str(tmp_path / "nope.csv")]) == 1
    err = _one_line_error(capsys)
    assert "nope.csv" in err and "does not exist" in err and "--items none" in err


def test_eval_over_several_seeds_reports_each_seed_and_their_mean(tmp_path, artifacts, chain_raw, capsys):
    from recommender.model.checkpoint import load_checkpoint

    events = tmp_path / "events.csv"
    chain_raw.to_csv(events, index=False)
    out = tmp_path / "report"
    assert main(["eval", "--events", str(events), "--models", "gru4rec", "--baselines", "VSTAN", "--seeds", "3,4",
                 "--epochs", "1", "--set", "embedding_dim=16", "--device", "cpu", "--items", "none",
                 "--metrics", "HR@20,MRR@20,Tail@20", "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["seeds"] == [3, 4] and set(report["per_seed"]) == {"3", "4"}
    # One trained model per seed, with that seed, in its own folder; a blend picked for each.
    for seed in (3, 4):
        assert load_checkpoint(out / f"seed-{seed}" / "gru4rec.pt").config["seed"] == seed
        assert report["training"][str(seed)]["gru4rec"]["config"]["seed"] == seed
        assert set(report["hybrids"][str(seed)]) == {"gru4rec+VSTAN"}
    # A model or blend row is the mean of the seeds' rows; a baseline has no seed and one row.
    for row in ("gru4rec", "gru4rec+VSTAN"):
        for metric in ("HR@20", "MRR@20", "Tail@20"):
            assert report["results"][row][metric] == pytest.approx(
                (report["per_seed"]["3"][row][metric] + report["per_seed"]["4"][row][metric]) / 2)
    assert "VSTAN" not in report["per_seed"]["3"]
    # The blend against VSTAN: the difference of the mean over the seeds.
    hr = report["comparisons"]["gru4rec+VSTAN vs VSTAN"][0]
    assert hr["difference"] == pytest.approx(report["results"]["gru4rec+VSTAN"]["HR@20"]
                                             - report["results"]["VSTAN"]["HR@20"])
    printed = capsys.readouterr().out
    assert "seed 3:" in printed and "seed 4:" in printed and "mean over seeds 3, 4" in printed


def test_bad_seed_lists_and_seeds_with_a_fixed_seed_or_a_checkpoint_are_refused(tmp_path, artifacts, chain_raw,
                                                                                 capsys):
    events = tmp_path / "events.csv"
    chain_raw.to_csv(events, index=False)
    for bad in ("1,1", "one,two", ","):
        with pytest.raises(SystemExit) as exit_:
            main(["eval", "--events", str(events), "--seeds", bad])
        assert exit_.value.code == 2 and "--seeds" in capsys.readouterr().err
    assert main(["eval", "--events", str(events), "--seeds", "1,2", "--seed", "3"]) == 1
    assert "--seed or --seeds" in _one_line_error(capsys)
    assert main(["eval", "--events", str(events), "--seeds", "1,2", "--checkpoint", str(tmp_path / "m.pt")]) == 1
    assert "--seeds" in _one_line_error(capsys)
