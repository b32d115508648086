import numpy as np
import pytest
import torch

from recommender.errors import ConfigError
from recommender.model.content import N_FEATURES, ContentEncoder, Listing, fit_content_encoder

CATEGORIES = [f"top{t}/leaf{leaf}" for t in range(4) for leaf in range(5)]


def _catalogue(n: int, seed: int = 0):
    """Items whose learned vector is their category's direction plus noise: content predicts it."""
    rng = np.random.default_rng(seed)
    directions = {c: rng.normal(size=16) for c in CATEGORIES}
    cats = rng.choice(CATEGORIES, size=n)
    listings = [Listing(title=f"{rng.choice(['red', 'old', 'new'])} {c.split('/')[1]}", category=c,
                        price=float(rng.lognormal(3, 1)), region=str(rng.choice(["north", "south"]))) for c in cats]
    learned = np.stack([directions[c] + rng.normal(scale=0.3, size=16) for c in cats])
    return listings, learned


def test_content_vectors_stand_in_for_learned_ones_on_held_out_items():
    listings, learned = _catalogue(1500)
    encoder = fit_content_encoder(listings, learned)
    report = encoder.report
    assert report["held_out"] > 50 and report["l2"] in (10.0, 100.0, 1000.0, 10000.0)
    # The category decides the vector here, so held-out items land next to their learned vector.
    assert report["cosine_content"] > 0.8
    assert report["cosine_category_mean"] > 0.8


def test_encode_is_finite_unit_length_and_deterministic_even_for_empty_listings():
    listings, learned = _catalogue(300)
    encoder = fit_content_encoder(listings, learned)
    odd = [Listing(), Listing(title="never seen words", category="new/top", price=None, region="")]
    vectors = encoder.encode(listings[:5] + odd)
    assert vectors.shape == (7, 16) and np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, encoder.encode(listings[:5] + odd))


def test_payload_round_trip_and_a_misfit_payload_is_a_clear_error():
    listings, learned = _catalogue(300)
    encoder = fit_content_encoder(listings, learned)
    again = ContentEncoder.from_payload(encoder.to_payload(), dims=16)
    assert np.allclose(again.encode(listings[:3]), encoder.encode(listings[:3]), atol=1e-6)
    assert again.report == encoder.report
    with pytest.raises(ConfigError, match="content encoder does not fit"):
        ContentEncoder.from_payload(encoder.to_payload(), dims=32)
    with pytest.raises(ConfigError, match="content encoder does not fit"):
        ContentEncoder.from_payload({"features": N_FEATURES, "weights": torch.zeros(3, 16)}, dims=16)


def test_the_offset_is_the_mean_gap_between_learned_and_content_scores_of_next_items(tiny_checkpoint):
    from recommender.model.checkpoint import load_checkpoint
    from recommender.model.content import calibrate_offset

    checkpoint = load_checkpoint(tiny_checkpoint())
    model = checkpoint.model
    listings, learned = _catalogue(19, seed=3)
    encoder = ContentEncoder(np.zeros((N_FEATURES, 16)))
    encoder.weights[-1] = 1.0  # every listing gets the same direction: its score is known
    items = np.array([[1, 2], [3, 0], [4, 5]], dtype=np.int64)
    lengths = np.array([2, 1, 2])
    targets = np.array([7, 8, 9])
    offset = calibrate_offset(model, items, lengths, targets, [listings[t - 1] for t in targets], encoder)
    with torch.no_grad():
        query, preference = model.represent(torch.as_tensor(items), torch.as_tensor(lengths))
        learned_logits = model.score_represented(query, preference, torch.as_tensor(targets).unsqueeze(1))[:, 0]
        same = torch.ones(1, 16) / 4.0  # the constant direction, unit length
        content_logits = model.score_vectors(query, preference, same)[:, 0]
    assert np.isclose(offset, float((learned_logits - content_logits).mean()), atol=1e-5)
    assert calibrate_offset(model, items[:0], lengths[:0], targets[:0], [], encoder) == 0.0


def test_serving_adds_the_offset_to_new_listings_only(tiny_checkpoint, tmp_path):
    from recommender.model.checkpoint import load_checkpoint, save_checkpoint
    from recommender.model.serving import SessionScorer

    plain = load_checkpoint(tiny_checkpoint())
    listings, learned = _catalogue(300)
    encoder = fit_content_encoder(listings, learned)
    scores = {}
    for offset in (0.0, 1.5):
        encoder.offset = offset
        path = save_checkpoint(tmp_path / f"o{offset}.pt", model=plain.model, config=plain.config, vocab=plain.vocab,
                               item_counts=plain.item_counts, content=encoder)
        scorer = SessionScorer.load(path, device="cpu")
        vector = scorer.content_vectors(listings[:1])[0]
        scores[offset] = scorer.score(["i1", "i2"], ["i3", "new"], {"new": vector})
    assert np.isclose(scores[1.5][0], scores[0.0][0]) and np.isclose(scores[1.5][1] - scores[0.0][1], 1.5, atol=1e-5)
