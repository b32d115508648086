"""The CLI lists model names without importing torch; they must be the network's."""

from recommender.model.commands import MODEL_NAMES
from recommender.model.network import MODELS


def test_cli_model_names_are_the_networks():
    assert MODEL_NAMES == tuple(sorted(MODELS))


def test_eval_help_lists_every_baseline():
    from recommender.model.commands import _BASELINE_NAMES
    from recommender.model.runs import ALL_BASELINES

    assert _BASELINE_NAMES == ALL_BASELINES


def test_train_help_lists_every_servable_blend():
    from recommender.model.commands import _BLEND_NAMES
    from recommender.model.hybrid import SERVABLE_KNN

    assert _BLEND_NAMES == SERVABLE_KNN
