"""Paired bootstrap comparisons of two scorers on the same test prefixes."""

import numpy as np
import pytest

from recommender.model.metrics import RankedLists, metric_by_name
from recommender.model.significance import PairedDifference, compare, paired_bootstrap
from tests.unit.recommender.model.hand_lists import hand_lists


def test_a_constant_gap_has_an_interval_of_that_gap_alone():
    ours, theirs = np.full(50, 0.75), np.full(50, 0.25)
    assert paired_bootstrap(ours, theirs, draws=200) == (0.5, 0.5, 0.5)


def test_identical_scorers_tie_at_zero():
    values = np.random.default_rng(1).random(300)
    diff, low, high = paired_bootstrap(values, values.copy(), draws=200)
    assert diff == low == high == 0.0
    assert PairedDifference("HR@20", diff, low, high).verdict == "tie"


def test_one_extra_hit_in_a_few_hundred_is_noise_and_many_are_not():
    rng = np.random.default_rng(0)
    theirs = (rng.random(400) < 0.6).astype(float)
    one_more = theirs.copy()
    one_more[np.flatnonzero(theirs == 0)[0]] = 1.0
    diff, low, high = paired_bootstrap(one_more, theirs, draws=1000)
    assert diff == pytest.approx(1 / 400) and low <= 0 <= high  # the interval spans 0: a tie
    many_more = theirs.copy()
    many_more[np.flatnonzero(theirs == 0)[:60]] = 1.0
    diff, low, high = paired_bootstrap(many_more, theirs, draws=1000)
    assert diff == pytest.approx(60 / 400) and low > 0  # better, and the interval says so
    assert low < diff < high


def test_the_interval_is_reproducible_per_seed():
    rng = np.random.default_rng(3)
    a, b = rng.random(200), rng.random(200)
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)


def test_unpaired_values_are_refused():
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap(np.zeros(3), np.zeros(4))


def _lists(topk, targets):
    return RankedLists(topk=np.asarray(topk), targets=np.asarray(targets), is_tail=np.zeros(6, dtype=bool))


def test_compare_reads_the_per_prefix_values_of_hr_and_mrr():
    # Prefix 1: ours ranks the target 1st, theirs 2nd; prefix 2: both miss; prefix 3: ours 3rd, theirs misses.
    ours = _lists([[1, 2, 3], [4, 5, 1], [5, 4, 3]], [1, 2, 3])
    theirs = _lists([[2, 1, 4], [4, 5, 1], [1, 2, 4]], [1, 2, 3])
    hr, mrr = compare(ours, theirs, metrics=("HR@3", "MRR@3"), draws=300)
    assert hr.metric == "HR@3" and hr.difference == pytest.approx((0 + 0 + 1) / 3)
    assert mrr.difference == pytest.approx(((1 - 1 / 2) + 0 + 1 / 3) / 3)
    assert hr.difference == pytest.approx(metric_by_name("HR@3").compute(ours) - metric_by_name("HR@3").compute(theirs))
    assert "HR@3 +0.3333" in hr.describe()


def test_compare_over_several_seeds_reads_each_prefix_mean_over_the_runs():
    targets = [1, 2, 3, 4]
    theirs = _lists([[5, 5], [5, 5], [5, 5], [5, 5]], targets)  # misses every prefix
    first = _lists([[1, 5], [2, 5], [5, 5], [5, 5]], targets)  # hits prefixes 1 and 2 at rank 1
    second = _lists([[5, 1], [5, 5], [5, 5], [5, 5]], targets)  # hits prefix 1 at rank 2
    hr, mrr = compare([first, second], theirs, metrics=("HR@2", "MRR@2"), draws=300)
    # Per prefix, HR averaged over the two runs: 1, 0.5, 0, 0; MRR: 0.75, 0.5, 0, 0.
    assert hr.difference == pytest.approx(1.5 / 4) and mrr.difference == pytest.approx(1.25 / 4)
    # The same as the mean of the two runs' own differences.
    one, two = compare(first, theirs, draws=300, metrics=("HR@2",)), compare(second, theirs, draws=300, metrics=("HR@2",))
    assert hr.difference == pytest.approx((one[0].difference + two[0].difference) / 2)
    assert hr.low <= hr.difference <= hr.high


def test_compare_refuses_other_prefixes_and_non_mean_metrics():
    a = _lists([[1, 2]], [1])
    with pytest.raises(ValueError, match="same prefixes"):
        compare(a, _lists([[1, 2]], [2]))
    with pytest.raises(ValueError, match="same prefixes"):
        compare([a, _lists([[1, 2]], [2])], a)  # two seeds' lists must be of the same prefixes too
    with pytest.raises(ValueError, match="at least one run"):
        compare([], a)
    with pytest.raises(ValueError, match="Coverage@2"):
        compare(a, a, metrics=("Coverage@2",))


def test_an_unproven_loss_passes_only_when_measured_under_the_margin():
    from recommender.model.significance import largest_acceptable

    # 300 prefixes, 2 lost hits (0.7%): unproven and under 2%, taken.
    picked, scan = largest_acceptable(hand_lists(300, 0), [(0.1, hand_lists(300, 2))], margin=0.02)
    assert picked == 0.1 and scan[0.1]["HR@20"] == "tie"
    assert scan[0.1]["change"] == {"HR@20": -0.0067, "MRR@20": -0.0067}
    # 40 prefixes, 1 lost hit (2.5%): as unproven, but measured over 2%: refused, and the scan
    # stops there (0.2, which loses nothing, is never reached).
    picked, scan = largest_acceptable(hand_lists(40, 0), [(0.1, hand_lists(40, 1)), (0.2, hand_lists(40, 0))],
                                      margin=0.02)
    assert picked is None and scan[0.1]["HR@20"] == "tie" and not scan[0.1]["taken"]
    assert scan[0.1]["change"]["HR@20"] == -0.025 and 0.2 not in scan
    # A 3% margin takes it.
    assert largest_acceptable(hand_lists(40, 0), [(0.1, hand_lists(40, 1))], margin=0.03)[0] == 0.1


def test_no_loss_passes_even_against_a_reference_without_hits():
    from recommender.model.significance import largest_acceptable

    none_hit = hand_lists(30, 30)
    picked, scan = largest_acceptable(none_hit, [(0.1, hand_lists(30, 30))], margin=0.02)
    assert picked == 0.1 and scan[0.1]["change"] == {"HR@20": 0.0, "MRR@20": 0.0}
