import numpy as np

from recommender.model.baselines import Popularity, SessionItemKNN, SessionPopularity

COUNTS = np.array([0, 10, 5, 1, 1])
TRAIN = [np.array([3, 4]), np.array([3, 4, 1]), np.array([1, 2])]


def test_pop_ranks_by_training_counts():
    scores = Popularity(COUNTS).score_sessions(np.array([[3]]), np.array([1]))
    assert np.argsort(-scores[0])[:2].tolist() == [1, 2] and scores[0, 0] == -np.inf


def test_spop_puts_session_items_first_most_clicked_first():
    scores = SessionPopularity(COUNTS).score_sessions(np.array([[3, 4, 3]]), np.array([3]))
    assert np.argsort(-scores[0])[:3].tolist() == [3, 4, 1]


def test_item_knn_recommends_co_occurring_items():
    knn = SessionItemKNN(COUNTS, TRAIN)
    # item 3 co-occurs with 4 in two sessions and with 1 in one; sim(3,4) = 2/(sqrt(2*2) + 20)
    scores = knn.score_sessions(np.array([[3, 0]]), np.array([1]))
    assert np.argmax(scores[0]) == 4
    assert scores[0, 4] == np.float32(2 / (np.sqrt(2 * 2) + 20) + 1e-6 * 1 / 11)


def test_a_catalog_smaller_than_k_pads_lists_with_padding():
    from recommender.model.data import PrefixExamples
    from recommender.model.evaluate import rank_top_k

    examples = PrefixExamples(items=np.array([[3]]), lengths=np.array([1]), targets=np.array([4]))
    topk, _ = rank_top_k(Popularity(COUNTS), examples, k=6)
    assert topk.tolist() == [[1, 2, 3, 4, 0, 0]]
