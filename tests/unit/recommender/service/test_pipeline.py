"""The serving pipeline's pure steps, without servers."""

from __future__ import annotations

import math

import pytest

from recommender.engine import Hit
from recommender.service import metrics
from recommender.service.pipeline import (
    PLANS,
    Candidate,
    Degradations,
    candidates_from_hits,
    cap_categories,
    engine_has_more,
    paginate,
    popular_rows,
    rank_by_session_model,
    session_for_plan,
)
from recommender.stores.feed_pages import FeedState


def _cands(*specs: tuple[str, float, str]) -> list[Candidate]:
    return [Candidate(item_id, score, category) for item_id, score, category in specs]


def _state(**kw) -> FeedState:
    return FeedState(feed_id="f", profile_name="default", profile_version="v1", model_version="", request_key="k", **kw)


def test_candidates_take_id_and_category_from_doc_values():
    hits = [Hit(id="i1", score=2.5, source={}, fields={"item_id": "i1", "category": "fashion/shoes"}),
            Hit(id="i2", score=1.0, source={"category": "home"})]
    out = candidates_from_hits(hits)
    assert [(c.item_id, c.engine_score, c.category) for c in out] == [("i1", 2.5, "fashion/shoes"), ("i2", 1.0, "home")]
    assert out[0].components is None


def test_candidates_keep_explained_components_per_hit():
    hits = [Hit(id="a", score=1.0, source={}), Hit(id="b", score=0.5, source={})]
    out = candidates_from_hits(hits, components=[{"knn": 0.7}, {"knn": 0.1}])
    assert [c.components for c in out] == [{"knn": 0.7}, {"knn": 0.1}]


def test_without_model_scores_the_engine_order_stays():
    ranked = rank_by_session_model(_cands(("a", 3.0, ""), ("b", 2.0, ""), ("c", 1.0, "")), None, blend=0.5, explain=False)
    assert [c.item_id for c in ranked] == ["a", "b", "c"]
    # Engine scores min-max scaled: 3 -> 1, 2 -> 0.5, 1 -> 0.
    assert [c.score for c in ranked] == [1.0, 0.5, 0.0]


def test_the_session_model_can_overturn_the_engine_order():
    # engine a=1, b=0 (scaled); model a=0, b=1; blend 0.75: a = 0.25*1 + 0.75*0 = 0.25, b = 0.25*0 + 0.75*1 = 0.75.
    ranked = rank_by_session_model(_cands(("a", 2.0, ""), ("b", 1.0, "")), [0.0, 10.0], blend=0.75, explain=False)
    assert [(c.item_id, c.score) for c in ranked] == [("b", 0.75), ("a", 0.25)]


def test_explain_reports_engine_and_model_parts_and_never_infinity():
    ranked = rank_by_session_model(_cands(("a", 2.0, ""), ("b", 1.0, "")), [float("-inf"), 1.5], blend=0.5, explain=True)
    by_id = {c.item_id: c.components for c in ranked}
    assert by_id["a"] == {"engine": 2.0, "session_model": 0.0}
    assert by_id["b"] == {"engine": 1.0, "session_model": 1.5}
    assert all(math.isfinite(v) for comps in by_id.values() for v in comps.values())


def test_no_page_holds_more_than_the_cap_of_one_category():
    ranked = _cands(*[(f"s{i}", 10 - i, "shoes/x") for i in range(4)], ("h1", 1.0, "home/y"), ("h2", 0.5, "home/z"))
    out = cap_categories(ranked, page_size=3, max_per_category=2, category_level=1)
    assert [c.item_id for c in out] == ["s0", "s1", "h1", "s2", "s3", "h2"]


def test_paginate_moves_a_page_from_pending_to_served():
    state = _state(pending=[("a", 1.0, "", None), ("b", 0.5, "", None), ("c", 0.1, "", None)], widened=True)
    page, more = paginate(state, 2)
    assert [row[0] for row in page] == ["a", "b"] and more
    assert state.served == ["a", "b"] and state.pages == 1
    page, more = paginate(state, 2)
    assert [row[0] for row in page] == ["c"] and not more


def test_paginate_says_more_while_the_engine_list_continues():
    state = _state(pending=[("a", 1.0, "", None)], engine_after=[1.0, "a"], widened=True)
    _, more = paginate(state, 5)
    assert more


def test_a_list_that_ran_out_under_the_window_can_go_on_widened_but_a_fallback_cannot():
    assert engine_has_more(_state(engine_after=None, widened=False))
    assert not engine_has_more(_state(engine_after=None, widened=True))
    assert not engine_has_more(_state(engine_after=[1.0, "a"], served_from="fallback"))


def test_popular_rows_skip_what_was_served_and_score_down_from_one():
    rows = popular_rows(["a", "b", "c", "d"], exclude={"b"})
    assert rows == [("a", 1.0, "", None), ("c", round(1 - 1 / 3, 6), "", None), ("d", round(1 - 2 / 3, 6), "", None)]


def test_only_the_product_plan_adds_the_item_to_the_session():
    assert session_for_plan(PLANS["product"], ["x"], "p1") == ("x", "p1")
    assert session_for_plan(PLANS["home"], ["x"], "") == ("x",)
    assert session_for_plan(PLANS["similar"], ["x"], "p1") == ("x",)


@pytest.mark.parametrize("kind,reranks,needs_user,item_vector", [
    ("home", True, False, False), ("product", True, True, False), ("similar", False, False, True),
])
def test_each_feed_kind_has_its_plan(kind, reranks, needs_user, item_vector):
    plan = PLANS[kind]
    assert (plan.reranks, plan.needs_user, plan.item_vector) == (reranks, needs_user, item_vector)


def test_a_degradation_is_recorded_counted_and_keeps_the_cause_out_of_the_reason():
    before = metrics.DEGRADATIONS.labels(stage="unit-test")._value.get()
    deg = Degradations()
    deg.add("unit-test", "engine unavailable", cause=RuntimeError("http://10.0.0.1:9200 refused; run hotfeed services up"))
    assert deg.items == [("unit-test", "engine unavailable")]
    assert deg.stages() == ["unit-test"]
    assert metrics.DEGRADATIONS.labels(stage="unit-test")._value.get() == before + 1


def test_an_outage_logs_one_line_per_degraded_request_and_a_sampled_traceback(caplog):
    def failure(n: int) -> RuntimeError:
        try:
            raise RuntimeError(f"engine refused #{n}")
        except RuntimeError as exc:
            return exc

    with caplog.at_level("WARNING", logger="recommender.service.pipeline"):
        for n in range(50):
            deg = Degradations()
            deg.add("unit-test-outage", "engine unavailable", cause=failure(n))
            deg.add("unit-test-redis", "segments unavailable", cause="Redis refused")
            deg.add("unit-test-quiet", "nothing to say")  # no cause: in the response, not the log
            deg.log("home feed")
        Degradations().log("home feed")  # nothing degraded: no line
    records = [r for r in caplog.records if "unit-test-outage" in r.getMessage()]
    assert len(records) == 50  # one line per degraded request, both causes in it
    assert all("unit-test-redis: segments unavailable (Redis refused)" in r.getMessage() for r in records)
    assert sum(r.exc_info is not None for r in records) == 1  # one traceback for the whole burst
    assert "engine refused #0" in records[0].getMessage()
    assert len([r for r in caplog.records if r.name == "recommender.service.pipeline"]) == 50
