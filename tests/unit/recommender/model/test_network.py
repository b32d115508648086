import pytest
import torch

from recommender.model.config import load_model_config
from recommender.model.data import build_sessions, prefix_examples, split_sessions
from recommender.model.network import MODELS, TailNet, build_model
from recommender.model.trainer import Trainer

CPU = torch.device("cpu")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_small_model_overfits_a_tiny_dataset(name, chain_frame):
    split = split_sessions(build_sessions(chain_frame), test_days=1.0)
    config = load_model_config(name, flags={"epochs": 8, "lr": 0.02, "batch_size": 128, "dropout": 0.0,
                                            "embedding_dim": 16, "patience": 12})
    trainer = Trainer(config, device=CPU, progress=False)
    model = trainer.build(name, split)
    report = trainer.fit(model, split)
    losses = [h["loss"] for h in report.history]
    assert losses[-1] < 0.5 * losses[0]
    # the deterministic chain is recovered: the next item is the top score for most prefixes
    ex = prefix_examples(split.test, max_length=20)
    with torch.no_grad():
        top = model.score(torch.as_tensor(ex.items), torch.as_tensor(ex.lengths)).argmax(1).numpy()
    assert (top == ex.targets).mean() > 0.9


def _tailnet(bias: float) -> TailNet:
    torch.manual_seed(0)
    is_tail = torch.tensor([False, False, False, True, True, True])
    model = build_model("tailnet", num_items=6, is_tail=is_tail, config={"embedding_dim": 8, "dropout": 0.0}).eval()
    with torch.no_grad():
        model.preference.weight.zero_()
        model.preference.bias.fill_(bias)
    return model


def test_rectification_moves_scores_from_head_to_tail_as_tail_preference_grows():
    items, lengths = torch.tensor([[1, 4, 2]]), torch.tensor([3])
    with torch.no_grad():
        low = _tailnet(-4.0).score(items, lengths)[0]
        high = _tailnet(+4.0).score(items, lengths)[0]
    head, tail = [1, 2], [3, 4, 5]
    # head logits shift by log(1 - p), tail logits by log p: the tail-minus-head gap grows
    # by logit(p_high) - logit(p_low) = 4 - (-4) = 8
    assert (high[tail] - low[tail] > 0).all() and (high[head] - low[head] < 0).all()
    gap = lambda s: s[tail].mean() - s[head].mean()  # noqa: E731
    assert float(gap(high) - gap(low)) == pytest.approx(8.0, abs=1e-4)


def test_tail_bias_shifts_tail_scores_at_scoring_time_only():
    model = _tailnet(0.0)
    items, lengths = torch.tensor([[1, 2]]), torch.tensor([2])
    with torch.no_grad():
        before = model.score(items, lengths)[0]
        model.tail_bias = 2.0
        after = model.score(items, lengths)[0]
    assert float((after[3:] - before[3:]).mean()) > 0 > float((after[1:3] - before[1:3]).mean())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_candidate_scores_equal_full_scores_and_vectors_are_unit_length(name):
    torch.manual_seed(0)
    model = build_model(name, num_items=9, is_tail=torch.arange(9) > 5, config={"embedding_dim": 8}).eval()
    items, lengths = torch.tensor([[3, 4, 0], [5, 6, 7]]), torch.tensor([2, 3])
    full = model.score(items, lengths)
    cands = torch.tensor([[2, 8], [1, 6]])
    assert torch.allclose(model.score(items, lengths, cands), full.gather(1, cands), atol=1e-5)
    norms = model.item_vectors()[1:].norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert model.encode(items, lengths).shape == (2, 8)


def test_sampled_softmax_loss_is_finite_and_backpropagates():
    torch.manual_seed(0)
    model = build_model("gru4rec", num_items=50, is_tail=torch.zeros(50, dtype=torch.bool), config={"embedding_dim": 8})
    items, lengths, targets = torch.tensor([[1, 2], [3, 0]]), torch.tensor([2, 1]), torch.tensor([3, 3])
    loss = model.loss(items, lengths, targets, negatives=torch.tensor([3, 7, 9]))
    loss.backward()
    assert torch.isfinite(loss) and model.items.weight.grad is not None


def test_tailnet_tail_bias_is_calibrated_on_validation_and_saved_in_config(chain_split):
    config = load_model_config("tailnet", flags={"epochs": 1, "embedding_dim": 8})
    trainer = Trainer(config, device=CPU, progress=False)
    model = trainer.build("tailnet", chain_split)
    report = trainer.fit(model, chain_split)
    assert set(report.tail_bias_scores) == {0.0, 0.5, 1.0, 1.5, 2.0, 3.0}
    assert trainer.config["tail_bias"] == model.tail_bias
    assert report.tail_bias_scores[model.tail_bias] == report.best_value
    # The scan runs up from the most accurate bias: the kept bias is the last that passed the shared
    # rule, and the scan stopped at the first that did not.
    scan = report.tail_bias_scan
    taken = [b for b in sorted(scan) if scan[b]["taken"]]
    refused = [b for b in sorted(scan) if not scan[b]["taken"]]
    assert taken == [b for b in sorted(scan) if b <= model.tail_bias]
    assert len(refused) <= 1 and all(b > model.tail_bias for b in refused)
    assert set(scan) <= {0.5, 1.0, 1.5, 2.0, 3.0}


def test_tail_bias_tolerance_is_the_margin_of_the_shared_rule(chain_split):
    config = load_model_config("tailnet", flags={"epochs": 1, "embedding_dim": 8, "tail_bias_tolerance": 1.0})
    trainer = Trainer(config, device=CPU, progress=False)
    model = trainer.build("tailnet", chain_split)
    trainer.fit(model, chain_split)
    # a 100% margin admits every loss short of losing every hit, so the strongest rectification is kept
    assert model.tail_bias == 3.0 == trainer.config["tail_bias"]
