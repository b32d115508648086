import math

import numpy as np
import pytest

from recommender.errors import ConfigError
from recommender.model.metrics import (
    MRR, NDCG, Coverage, HitRate, RankedLists, TailCoverage, TailShare, metric_by_name,
)

# Items 1..6 (0 = padding); items 4, 5, 6 are tail.
IS_TAIL = np.array([False, False, False, False, True, True, True])
# Three prefixes, top-3 lists: target at rank 1, at rank 3, absent.
LISTS = RankedLists(
    topk=np.array([[2, 1, 4], [1, 5, 3], [1, 2, 3]]),
    targets=np.array([2, 3, 6]),
    is_tail=IS_TAIL,
)


def test_hit_rate_counts_targets_within_k():
    assert HitRate(3).compute(LISTS) == pytest.approx((1 + 1 + 0) / 3)
    assert HitRate(2).compute(LISTS) == pytest.approx((1 + 0 + 0) / 3)


def test_mrr_averages_reciprocal_ranks():
    assert MRR(3).compute(LISTS) == pytest.approx((1 / 1 + 1 / 3 + 0) / 3)
    assert MRR(1).compute(LISTS) == pytest.approx((1 + 0 + 0) / 3)


def test_ndcg_discounts_by_log2_of_rank_plus_one():
    assert NDCG(3).compute(LISTS) == pytest.approx((1 / math.log2(2) + 1 / math.log2(4) + 0) / 3)


def test_coverage_is_share_of_items_ever_recommended():
    # union of top-3 lists = {1, 2, 3, 4, 5} of 6 items
    assert Coverage(3).compute(LISTS) == pytest.approx(5 / 6)
    # union of top-1 lists = {1, 2}
    assert Coverage(1).compute(LISTS) == pytest.approx(2 / 6)


def test_tail_coverage_is_share_of_tail_items_ever_recommended():
    # tail items shown in top-3: {4, 5} of tail {4, 5, 6}
    assert TailCoverage(3).compute(LISTS) == pytest.approx(2 / 3)


def test_tail_share_is_mean_tail_fraction_of_each_list():
    # list 1 holds one tail item (4), list 2 one (5), list 3 none
    assert TailShare(3).compute(LISTS) == pytest.approx((1 / 3 + 1 / 3 + 0 / 3) / 3)


def test_metrics_are_picked_by_name():
    metric = metric_by_name("NDCG@10")
    assert isinstance(metric, NDCG) and metric.k == 10 and metric.name == "NDCG@10"
    assert isinstance(metric_by_name("Tail@20"), TailShare)


def test_unknown_metric_name_is_a_config_error():
    with pytest.raises(ConfigError, match="'Recall@5'"):
        metric_by_name("Recall@5")


def test_metric_needs_lists_at_least_k_long():
    with pytest.raises(ConfigError, match="top-20"):
        HitRate(20).compute(LISTS)
