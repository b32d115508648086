"""`hotfeed model refresh`: a checkpoint's counting parts rebuilt from recent events, its model kept."""

import numpy as np
import pandas as pd
import pytest
import torch

from recommender.cli import main
from recommender.model.checkpoint import load_checkpoint
from recommender.model.hybrid import knn_at


def _later_sessions(n_items: int = 30, sessions: int = 60) -> pd.DataFrame:
    """A day after the chain data (which ends on Jan 7), where item i is followed by i + 1 instead of 7 i + 3."""
    rows = []
    start = pd.Timestamp("2026-01-08", tz="UTC")
    for s in range(sessions):
        item = s % n_items
        t0 = start + pd.Timedelta(hours=20) * s / sessions
        for k in range(4):
            rows.append({"ts": (t0 + pd.Timedelta(seconds=30 * k)).isoformat(), "user_id": f"v{s}",
                         "session_id": f"later{s}", "item_id": f"i{item}", "event_type": "view"})
            item = (item + 1) % n_items
    return pd.DataFrame(rows)


def _train(tmp_path, chain_raw, *flags: str):
    events = tmp_path / "events.csv"
    chain_raw.to_csv(events, index=False)
    path = tmp_path / "model.pt"
    assert main(["train", "--events", str(events), "--epochs", "1", "--set", "embedding_dim=16", "--device", "cpu",
                 "--no-publish", "--items", "none", "--out", str(path), *flags]) == 0
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_refresh_rebuilds_the_counting_parts_from_the_last_days_and_keeps_the_model(tmp_path, artifacts, chain_raw,
                                                                                      capsys):
    trained = _train(tmp_path, chain_raw)
    later = tmp_path / "later.csv"
    pd.concat([chain_raw, _later_sessions()]).to_csv(later, index=False)
    out = tmp_path / "refreshed.pt"
    capsys.readouterr()
    assert main(["model", "refresh", "--checkpoint", str(trained), "--events", str(later), "--days", "1",
                 "--no-publish", "--out", str(out)]) == 0
    assert "from 60 sessions" in capsys.readouterr().out
    old, new = load_checkpoint(trained), load_checkpoint(out)
    # Kept: the model, its vocabulary and tail mask, the blend's weights and KNN parameters.
    assert new.vocab == old.vocab and np.array_equal(new.is_tail, old.is_tail)
    assert all(torch.equal(a, b) for a, b in zip(old.model.state_dict().values(), new.model.state_dict().values()))
    assert new.blend.weights == old.blend.weights and new.blend.knn.params == old.blend.knn.params
    assert new.version != old.version and new.meta["refreshed"]["from"] == old.version
    # Rebuilt: the last day holds the 60 later sessions only (the chain data ends a day earlier).
    assert new.blend.knn.n_sessions == 60 and new.item_counts.sum() == 60 * 4
    # The neighbourhood now follows the later sessions: after i5 comes i6, no longer i8 (= 7 * 5 + 3 mod 30).
    i5, i6, i8 = new.vocab.index_of(["i5", "i6", "i8"])
    before = knn_at(old.blend.knn, np.array([i5]), np.array([i6, i8]))
    after = knn_at(new.blend.knn, np.array([i5]), np.array([i6, i8]))
    assert before[1] > before[0] and after[0] > after[1]


def test_refresh_refuses_what_it_cannot_refresh_with_one_clear_line(tmp_path, artifacts, chain_raw, capsys):
    trained = _train(tmp_path, chain_raw)
    unknown = tmp_path / "unknown.csv"
    _later_sessions().assign(item_id=lambda f: "new-" + f["item_id"]).to_csv(unknown, index=False)
    common = ["--no-publish", "--out", str(tmp_path / "r.pt")]
    assert main(["model", "refresh", "--checkpoint", str(trained), "--events", str(unknown), *common]) == 1
    assert "holds 2+ clicks on items the checkpoint knows" in _one_line_error(capsys)
    assert main(["model", "refresh", "--checkpoint", str(trained), "--events", str(unknown), "--days", "0",
                 *common]) == 1
    assert "--days must be > 0" in _one_line_error(capsys)
    assert main(["model", "refresh", "--checkpoint", str(tmp_path / "missing.pt"), "--events", str(unknown),
                 *common]) == 1
    assert "does not exist" in _one_line_error(capsys)
    alone = tmp_path / "alone"
    alone.mkdir()
    plain = _train(alone, chain_raw, "--blend", "none")
    assert main(["model", "refresh", "--checkpoint", str(plain), "--events", str(unknown), *common]) == 1
    assert "no counting parts to refresh" in _one_line_error(capsys)
    assert not (tmp_path / "r.pt").exists()
