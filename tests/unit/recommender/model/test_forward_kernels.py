"""The compiled single-session forward (forward_kernels.py) against the torch models it repeats."""

import numpy as np
import pytest
import torch

from recommender.model.forward_kernels import CompiledForward
from recommender.model.network import build_model
from recommender.model.serving import SessionScorer


def _model(name: str, **config):
    torch.manual_seed(3)
    is_tail = torch.arange(60) > 12
    return build_model(name, num_items=60, is_tail=is_tail, config={"embedding_dim": 8, **config}).eval()


@pytest.mark.parametrize("name, config", [("tailnet", {}), ("tailnet", {"tail_bias": 1.5, "scale": 4.0}),
                                          ("gru4rec", {}), ("sasrec", {}), ("sasrec", {"num_layers": 1, "num_heads": 4})])
def test_the_compiled_forward_gives_the_models_queries_preferences_and_logits(name, config):
    model = _model(name, **config)
    compiled = CompiledForward.of(model)
    assert compiled is not None
    candidates = np.array([0, 1, 5, 13, 14, 59, 5])  # padding, head and tail items, a repeat
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        for length in (1, 2, 7, 20):
            items = rng.integers(1, 60, size=length)
            query, preference = model.represent(torch.as_tensor(items)[None], torch.tensor([length]))
            expected = model.score_represented(query, preference, torch.as_tensor(candidates))[0].numpy()
            my_query, my_preference = compiled.represent(items)
            assert np.allclose(my_query, query[0].numpy(), atol=1e-5)
            assert (my_preference is None) == (preference is None)
            if preference is not None:
                assert my_preference == pytest.approx(float(preference[0]), abs=1e-5)
            got = compiled.logits(my_query, my_preference, candidates)
            assert got.dtype == np.float32 and np.allclose(got, expected, atol=1e-5)
            new_listings = rng.normal(size=(4, 8)).astype(np.float32)  # items given by their content vectors
            expected = model.score_vectors(query, preference, torch.as_tensor(new_listings))[0].numpy()
            assert np.allclose(compiled.vector_logits(my_query, my_preference, new_listings), expected, atol=1e-5)


def test_models_in_training_stay_on_torch():
    assert CompiledForward.of(_model("tailnet").train()) is None
    assert CompiledForward.of(_model("sasrec").train()) is None


def test_a_forward_that_no_longer_matches_its_model_is_caught():
    model = _model("tailnet")
    compiled = CompiledForward.of(model)
    assert compiled.difference_from(model) < 1e-4
    with torch.no_grad():
        model.gru.weight_hh_l0.add_(0.5)  # the model changes under the compiled copy
    assert compiled.difference_from(model) > 1e-2


def test_cpu_scorers_serve_with_it_and_score_as_torch_does(tmp_path, chain_split, tiny_tailnet):
    trainer, model, report = tiny_tailnet
    path = trainer.save(tmp_path / "tailnet.pt", model, chain_split, report)
    compiled, plain = SessionScorer.load(path, device="cpu"), SessionScorer.load(path, device="cpu", compiled=False)
    assert compiled.compiled and not plain.compiled
    assert (compiled.runs_on, plain.runs_on) == ("cpu, compiled forward", "cpu")  # what the server logs
    ids = chain_split.vocab.to_list()
    _, table = compiled.item_embeddings()
    # New listings with a content vector, without one, with a NaN in it and with the wrong size.
    vectors = {"new-a": table[4], "new-b": np.full(16, np.nan, dtype=np.float32), "new-c": np.ones(3)}
    for session in ([ids[0]], [ids[3], "never-seen", ids[5], ids[3]], ids[:25]):
        candidates = ids[:10] + ["new-a", "new-b", "new-c", "new-d"]
        got = compiled.score(session, candidates, vectors)
        assert np.allclose(got, plain.score(session, candidates, vectors), atol=1e-5)
        assert got[-3] == got[-2] == got[-1] != got[-4]  # unusable vectors score as the catalogue's mean
        assert np.allclose(compiled.encode(session), plain.encode(session), atol=1e-6)
    assert compiled.encode(["never-seen"]) is None
