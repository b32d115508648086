"""The session baselines on a hand-made session set, their scores written out as arithmetic."""

import math

import numpy as np
import pytest

from recommender.model.session_knn import KNNParams, SequentialRules, SessionKNN, build_session_baseline

# Items 1..5 (0 is padding). Training sessions, oldest first.
TRAIN = [np.array([1, 2, 3]), np.array([2, 4]), np.array([3, 5, 2])]
COUNTS = np.array([0, 1, 3, 2, 1, 1])
POP = 1e-6 * COUNTS / (COUNTS.max() + 1.0)
SESSION = np.array([[2, 4]])
LENGTHS = np.array([2])


def _scores(scorer) -> np.ndarray:
    out = scorer.score_sessions(SESSION, LENGTHS)[0].astype(np.float64)
    assert out[0] == -np.inf
    return out


def test_sequential_rules_weigh_each_later_click_by_one_over_its_distance():
    sr = SequentialRules(COUNTS, TRAIN)
    targets, weights = sr.rules_from(1)
    assert dict(zip(targets.tolist(), weights.tolist())) == {2: 1.0, 3: 0.5}
    assert dict(zip(*[a.tolist() for a in sr.rules_from(3)])) == {5: 1.0, 2: 0.5}
    # The session [2, 4] ends in 4, which no rule starts from: popularity only.
    assert np.allclose(_scores(sr)[1:], POP[1:], atol=1e-7)
    last_two = sr.score_sessions(np.array([[4, 2]]), LENGTHS)[0]
    assert math.isclose(last_two[3], 1.0 + POP[3], rel_tol=1e-6) and math.isclose(last_two[4], 1.0 + POP[4], rel_tol=1e-6)


def test_sknn_scores_are_cosine_weighted_neighbour_votes():
    sknn = SessionKNN("SKNN", COUNTS, TRAIN, KNNParams(k=10, sample=10))
    s = _scores(sknn)
    n0 = n2 = 1 / math.sqrt(2 * 3)  # one shared item of 2 and 3 distinct items
    n1 = 2 / math.sqrt(2 * 2)
    expected = {1: n0, 2: n0 + n1 + n2, 3: n0 + n2, 4: n1, 5: n2}
    for item, value in expected.items():
        assert math.isclose(s[item], value + POP[item], rel_tol=1e-6), item


def test_v_sknn_decays_the_session_and_weights_items_by_idf():
    vsknn = SessionKNN("V-SKNN", COUNTS, TRAIN, KNNParams(k=10, sample=10, decay="linear", idf_weight=1.0))
    s = _scores(vsknn)
    w2, w4 = 1 / 2, 1.0  # linear decay: position / length
    n0 = n2 = w2 / math.sqrt(2 * 3)
    n1 = (w2 + w4) / math.sqrt(2 * 2)
    idf = {1: math.log(3), 2: 0.0, 3: math.log(3 / 2), 4: math.log(3), 5: math.log(3)}
    assert math.isclose(s[3], (n0 + n2) * (1 + idf[3]) + POP[3], rel_tol=1e-6)
    assert math.isclose(s[4], n1 * (1 + idf[4]) + POP[4], rel_tol=1e-6)
    assert math.isclose(s[2], n0 + n1 + n2 + POP[2], rel_tol=1e-6)


def test_stan_combines_session_decay_neighbour_recency_and_position_distance():
    params = KNNParams(k=10, sample=10, decay="exp", lambda_1=1.0, lambda_2=1.0, lambda_3=1.0)
    stan = SessionKNN("STAN", COUNTS, TRAIN, params)
    s = _scores(stan)
    w2, w4 = math.exp(-1), 1.0
    norm = math.sqrt(w2**2 + w4**2)
    recency = [math.exp(-(1 - 1 / 3)), math.exp(-(1 - 2 / 3)), 1.0]  # sessions 0, 1, 2 of 3
    n0 = w2 / (norm * math.sqrt(3)) * recency[0]
    n1 = (w2 + w4) / (norm * math.sqrt(2)) * recency[1]
    n2 = w2 / (norm * math.sqrt(3)) * recency[2]
    # Item 3 is one step from item 2 (the shared click) in session 0 and two steps in session 2.
    assert math.isclose(s[3], n0 * math.exp(-1) + n2 * math.exp(-2) + POP[3], rel_tol=1e-6)
    # Session 1 = [2, 4]: the shared click nearest the session's end is 4 (position 1), so 2 is one away.
    assert math.isclose(s[2], n0 + n1 * math.exp(-1) + n2 + POP[2], rel_tol=1e-6)
    vstan = SessionKNN("VSTAN", COUNTS, TRAIN, KNNParams(**{**params.__dict__, "idf_weight": 1.0}))
    assert math.isclose(_scores(vstan)[3], (s[3] - POP[3]) * (1 + math.log(3 / 2)) + POP[3], rel_tol=1e-6)


def test_repeated_clicks_count_once_at_their_latest_or_strongest_position():
    # One training session holding item 1 twice; the current session repeats item 1 too.
    train, counts = [np.array([1, 2, 3, 1])], np.array([0, 2, 1, 1])
    stan = SessionKNN("STAN", counts, train, KNNParams(k=10, sample=10, decay="exp", lambda_1=1.0, lambda_3=1.0))
    pop = 1e-6 * counts / (counts.max() + 1.0)
    # Session [2]: c is item 2 at position 1; item 1 sits 1 and 2 steps away and counts once, at e^-1.
    s = stan.score_session(np.array([2]))
    sim = 1.0 / math.sqrt(3)
    assert math.isclose(s[1], sim * math.exp(-1) + pop[1], rel_tol=1e-9)
    assert math.isclose(s[3], sim * math.exp(-1) + pop[3], rel_tol=1e-9)
    # Session [1, 2, 1]: item 1 keeps its latest click (weight e^0, rank 2), so c is item 1 at position 3.
    s = stan.score_session(np.array([1, 2, 1]))
    sim = (1.0 + math.exp(-1)) / (math.sqrt(1.0 + math.exp(-2)) * math.sqrt(3))
    assert math.isclose(s[1], sim + pop[1], rel_tol=1e-9)
    assert math.isclose(s[2], sim * math.exp(-2) + pop[2], rel_tol=1e-9)
    assert math.isclose(s[3], sim * math.exp(-1) + pop[3], rel_tol=1e-9)


def test_only_the_most_recent_sessions_are_neighbour_candidates():
    recent_only = SessionKNN("SKNN", COUNTS, TRAIN, KNNParams(k=10, sample=1))
    s = _scores(recent_only)
    # Session 2 ([3, 5, 2]) is the most recent holding 2 or 4: items 1 and 4 get no vote.
    assert s[1] == pytest.approx(POP[1], abs=1e-9) and s[4] == pytest.approx(POP[4], abs=1e-9)
    assert s[5] > POP[5]


def test_every_baseline_builds_and_scores_a_batch_with_padding():
    items = np.array([[1, 2, 0], [5, 0, 0]])
    for name in ("SR", "SKNN", "V-SKNN", "STAN", "VSTAN"):
        scores = build_session_baseline(name, COUNTS, TRAIN).score_sessions(items, np.array([2, 1]))
        assert scores.shape == (2, 6) and np.isfinite(scores[:, 1:]).all() and (scores[:, 0] == -np.inf).all()


def test_tuning_picks_grid_values_no_worse_than_the_defaults(chain_split):
    from recommender.model.evaluate import rank_top_k
    from recommender.model.data import prefix_examples
    from recommender.model.metrics import RankedLists, metric_by_name
    from recommender.model.session_knn import KNN_DEFAULTS, KNN_GRID, tune_knn

    params, info = tune_knn("VSTAN", chain_split)
    assert info["tried"] > 5 and params.lambda_1 in KNN_GRID["lambda_1"] and params.k in KNN_GRID["k"]
    examples = prefix_examples(chain_split.valid)
    metric = metric_by_name("MRR@20")

    def mrr(p):
        scorer = SessionKNN("VSTAN", chain_split.item_counts, chain_split.train, p)
        topk, targets = rank_top_k(scorer, examples, k=20)
        return metric.compute(RankedLists(topk=topk, targets=targets, is_tail=chain_split.is_tail))

    assert math.isclose(mrr(params), info["best"]) and info["best"] >= mrr(KNN_DEFAULTS["VSTAN"])
