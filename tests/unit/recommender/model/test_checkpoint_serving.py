import numpy as np
import pytest
import torch

from recommender.errors import ConfigError, NotFound
from recommender.model.checkpoint import FORMAT_VERSION, load_checkpoint
from recommender.model.serving import SessionScorer


@pytest.fixture(scope="module")
def trained(tmp_path_factory, chain_split, tiny_tailnet):
    split = chain_split
    trainer, model, report = tiny_tailnet
    path = trainer.save(tmp_path_factory.mktemp("ckpt") / "tailnet.pt", model, split, report)
    return path, model, split


def test_save_load_round_trip_gives_identical_scores(trained):
    path, model, split = trained
    loaded = load_checkpoint(path)
    assert loaded.model_name == "tailnet" and loaded.vocab == split.vocab
    assert loaded.config["embedding_dim"] == 16 and loaded.meta["hotfeed_version"]
    assert loaded.version.startswith("tailnet-") and len(loaded.version) == len("tailnet-") + 12
    items, lengths = torch.tensor([[1, 2, 3]]), torch.tensor([3])
    model.eval()
    assert torch.allclose(loaded.model.score(items, lengths), model.score(items, lengths))
    assert (loaded.is_tail == split.is_tail).all()


def test_serving_scores_candidates_and_ignores_unknown_ids(trained):
    path, _, split = trained
    scorer = SessionScorer.load(path, device="cpu")
    ids = split.vocab.to_list()
    scores = scorer.score([ids[0], "never-seen", ids[1]], [ids[2], "unknown", ids[3]])
    # An unknown candidate without a vector is scored from the catalogue's mean direction: finite.
    assert scores.shape == (3,) and np.isfinite(scores).all()
    assert scorer.unknown([ids[2], "unknown"]) == ["unknown"]
    query = scorer.encode([ids[0], "never-seen"])
    assert query.shape == (16,) and np.isclose(np.linalg.norm(query), 1.0, atol=1e-5)
    assert scorer.encode(["never-seen"]) is None


def test_unknown_candidates_are_scored_by_their_vector(trained):
    path, _, split = trained
    scorer = SessionScorer.load(path, device="cpu")
    ids, vectors = scorer.item_embeddings()
    session = [ids[0], ids[1]]
    known = scorer.score(session, ids)
    best, worst = int(np.argmax(known)), int(np.argmin(known))
    cold = scorer.score(session, ["new-a", "new-b"], {"new-a": vectors[best], "new-b": vectors[worst]})
    assert np.isfinite(cold).all() and cold[0] > cold[1]
    # A malformed vector (wrong size, NaN) falls back to the mean direction instead of failing.
    odd = scorer.score(session, ["new-c", "new-d"], {"new-c": np.full(3, 1.0), "new-d": np.full(16, np.nan)})
    assert np.isfinite(odd).all() and odd[0] == odd[1]
    # A session of unknown items only: known candidates by popularity, unknown ones 0.
    assert np.isfinite(scorer.score(["never-seen"], [ids[0], "new-a"])).all()


def test_batched_requests_match_single_requests(trained):
    path, _, split = trained
    scorer = SessionScorer.load(path, device="cpu")
    ids = split.vocab.to_list()
    requests = [([ids[0], ids[1]], ids[2:7] + ["new"]), ([ids[4]], ids[1:3]), (["cold"], [ids[0], ids[1]])]
    batched = scorer.score_many(requests)
    for (session, cands), got in zip(requests, batched):
        assert np.allclose(got, scorer.score(session, cands), atol=1e-5)
    # a cold session is ranked by popularity
    counts = scorer.checkpoint.item_counts[1:3]
    assert np.argmax(batched[2]) == np.argmax(counts)


def test_item_embedding_export_is_unit_vectors_per_id(trained):
    path, _, split = trained
    ids, vectors = SessionScorer.load(path, device="cpu").item_embeddings()
    assert ids == split.vocab.to_list() and vectors.shape == (len(ids), 16)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_loading_a_checkpoint_of_another_format_version_says_retrain(trained, tmp_path):
    path, _, _ = trained
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(ConfigError, match="format version .* retrain"):
        load_checkpoint(tmp_path / "future.pt")


def test_loading_a_foreign_file_is_a_clear_error(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(NotFound, match="hotfeed train"):
        load_checkpoint(tmp_path / "missing.pt")


def test_mismatched_weights_are_a_clear_error(trained, tmp_path):
    path, _, _ = trained
    payload = torch.load(path, weights_only=True)
    payload["items"] = payload["items"][:-1]
    torch.save(payload, tmp_path / "short.pt")
    with pytest.raises(ConfigError, match="do not fit together"):
        load_checkpoint(tmp_path / "short.pt")
