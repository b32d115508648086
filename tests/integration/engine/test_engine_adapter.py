"""The engine adapter against the real local engines (each test runs on OpenSearch and Elasticsearch 8)."""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request

import pytest

from recommender.engine import Doc, SearchEngine, open_engine
from recommender.errors import EngineUnavailable, InvalidRequest, NotFound
from recommender.settings import EngineSettings

DIMS = 64


def _vec(*head: float) -> list[float]:
    v = list(head) + [0.0] * (DIMS - len(head))
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def _item(engine: SearchEngine, item_id: str, **fields) -> Doc:
    source = {"item_id": item_id, "status": "active", "category": "c", "price": 1.0, **fields}
    if engine.capabilities().join:
        source["relation"] = "item"
    return Doc(item_id, source)


def _popularity(item_id: str, cohort: str, score: float) -> Doc:
    return Doc(
        f"{item_id}:{cohort}",
        {"relation": {"name": "popularity", "parent": item_id}, "cohort": cohort, "score": score},
        routing=item_id,
    )


def _items_index(engine: SearchEngine, index_name) -> str:
    name = index_name(engine, "items")
    engine.create_index(name, body=engine.items_index_body())
    return name


def test_items_index_is_created_from_the_template_with_the_engine_vector_field(engine, index_name):
    alias = index_name(engine, "tpl")
    name = f"{alias}-1"
    try:
        engine.create_items_index(name, alias=alias)
        mapping = engine._request("GET", f"/{name}/_mapping", what="test")[name]["mappings"]["properties"]
    finally:
        engine.delete_index(name)
        engine.delete_index_template(f"{alias}-template")
    expected_type = "dense_vector" if engine.kind == "elasticsearch" else "knn_vector"
    assert mapping["embedding"]["type"] == expected_type
    assert mapping["status"]["type"] == "keyword"
    assert ("relation" in mapping) == engine.capabilities().join


def test_parents_and_children_are_indexed_with_routing(join_engine, index_name):
    engine = join_engine
    index = _items_index(engine, index_name)
    docs = [_item(engine, "a"), _item(engine, "b"), _popularity("a", "all", 0.5), _popularity("a", "g:f", 0.9)]
    result = engine.bulk_upsert(index, docs)
    assert result.ok == 4 and result.failed == []
    engine.refresh(index)
    assert engine.count(index) == 4
    assert engine.get(index, "a:g:f", routing="a")["score"] == 0.9
    children_of_a = {"has_parent": {"parent_type": "item", "query": {"ids": {"values": ["a"]}}}}
    assert engine.count(index, children_of_a) == 2


def test_has_child_function_score_ranks_parents_as_hand_computed(join_engine, index_name):
    engine = join_engine
    index = _items_index(engine, index_name)
    # Cohort weights: all=1, g:f=2. score_mode=sum over matching children:
    #   a: 1*0.2 + 2*0.9 = 2.0     b: 1*0.8 = 0.8     c: 2*0.5 = 1.0
    docs = [_item(engine, i) for i in "abc"] + [
        _popularity("a", "all", 0.2),
        _popularity("a", "g:f", 0.9),
        _popularity("b", "all", 0.8),
        _popularity("c", "g:f", 0.5),
        _popularity("c", "g:m", 1.0),  # not the viewer's cohort: must not count
    ]
    engine.bulk_upsert(index, docs)
    engine.refresh(index)
    weights = {"all": 1.0, "g:f": 2.0}
    body = {
        "query": {
            "has_child": {
                "type": "popularity",
                "score_mode": "sum",
                "query": {
                    "function_score": {
                        "query": {"terms": {"cohort": list(weights)}},
                        "functions": [
                            {
                                "filter": {"term": {"cohort": cohort}},
                                "field_value_factor": {"field": "score", "factor": w, "missing": 0},
                            }
                            for cohort, w in weights.items()
                        ],
                        "boost_mode": "replace",
                        "score_mode": "sum",
                    }
                },
            }
        }
    }
    hits = engine.search(index, body).hits
    assert [h.id for h in hits] == ["a", "c", "b"]
    assert [round(h.score, 4) for h in hits] == [2.0, 1.0, 0.8]


def test_knn_returns_the_exact_nearest_neighbours(engine, index_name):
    index = _items_index(engine, index_name)
    vectors = {
        "east": _vec(1, 0),
        "north-east": _vec(1, 1),
        "north": _vec(0, 1),
        "west": _vec(-1, 0),
        "south": _vec(0, -1),
    }
    engine.bulk_upsert(index, [_item(engine, k, embedding=v) for k, v in vectors.items()])
    engine.refresh(index)
    query = {"knn": {"field": "embedding", "query_vector": _vec(1, 0.2), "k": 3, "num_candidates": 10}}
    hits = engine.search(index, {"query": query, "size": 3}).hits
    assert [h.id for h in hits] == ["east", "north-east", "north"]
    # Both engines report cosine kNN scores as (1 + cos) / 2.
    assert hits[0].score == pytest.approx((1 + (1 / math.sqrt(1.04))) / 2, abs=1e-4)


def test_a_status_update_removes_the_item_from_the_next_search(engine, index_name):
    index = _items_index(engine, index_name)
    engine.bulk_upsert(index, [_item(engine, "x"), _item(engine, "y")])
    engine.refresh(index)
    active = {"query": {"bool": {"filter": [{"term": {"status": "active"}}]}}}
    assert sorted(h.id for h in engine.search(index, active).hits) == ["x", "y"]
    engine.update(index, "x", {"status": "sold"})
    engine.refresh(index)
    assert [h.id for h in engine.search(index, active).hits] == ["y"]


def test_partial_updates_in_bulk_merge_and_a_missing_document_is_refused(engine, index_name):
    index = _items_index(engine, index_name)
    engine.bulk_upsert(index, [_item(engine, "p", price=5.0, embedding=_vec(1.0)), _item(engine, "q")])
    result = engine.bulk_upsert(index, [
        Doc("p", {"price": 7.5, "status": "sold"}, partial=True),
        Doc("ghost", {"price": 1.0}, partial=True),
    ])
    assert result.ok == 1 and result.refused == ["ghost"] and [doc for doc, _ in result.failed] == ["ghost"]
    source = engine.get(index, "p")
    assert (source["price"], source["status"], source["category"]) == (7.5, "sold", "c")
    assert engine.get(index, "ghost") is None
    # mget can return only the fields asked for (the reranker reads new listings' vectors so).
    only = engine.mget(index, [("p", None), ("ghost", None)], fields=["embedding"])
    assert only[1] is None and set(only[0]) == {"embedding"} and math.isclose(only[0]["embedding"][0], 1.0)


def test_mget_raises_when_the_engine_cannot_look_documents_up_instead_of_calling_them_missing(
    engine, index_name, engine_settings
):
    # A shard that cannot be allocated: the engine answers 200 with a per-document error, as it does
    # for a shard still recovering after a restart. Created without waiting for the shard to start.
    stranded = index_name(engine, "stranded")
    settings = {"settings": {"number_of_shards": 1, "number_of_replicas": 0,
                             "index.routing.allocation.require._name": "no-such-node"}}
    created = urllib.request.Request(f"{engine_settings.engine.url}/{stranded}?wait_for_active_shards=0", method="PUT",
                                     data=json.dumps(settings).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(created, timeout=30) as answer:
        assert json.load(answer)["acknowledged"]
    with pytest.raises(EngineUnavailable, match=r"2 of 2 unreadable \(no_shard_available_action_exception"):
        engine.mget(stranded, [("a", None), ("b", None)])
    with pytest.raises(NotFound, match="index_not_found_exception"):
        engine.mget(index_name(engine, "never-created"), [("a", None)])


def test_alias_swap_never_leaves_the_alias_empty(engine, index_name, engine_settings):
    alias = index_name(engine, "alias")
    first, second = _items_index(engine, index_name), _items_index(engine, index_name)
    engine.bulk_upsert(first, [_item(engine, "old")])
    engine.bulk_upsert(second, [_item(engine, "new")])
    engine.refresh(first)
    engine.refresh(second)
    engine.swap_alias(alias, first)
    seen: list[int] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def reader() -> None:
        reader_engine = open_engine(engine_settings)
        while not stop.is_set():
            try:
                seen.append(reader_engine.search(alias, {"query": {"match_all": {}}}).total)
            except Exception as exc:  # noqa: BLE001 - any failure is what the test looks for
                errors.append(exc)
        reader_engine.close()

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(10):
        engine.swap_alias(alias, second if i % 2 == 0 else first)
    time.sleep(0.2)
    stop.set()
    thread.join()
    assert errors == []
    assert seen and set(seen) == {1}, f"alias resolved to {sorted(set(seen))} documents during swaps"
    assert engine.alias_targets(alias) == [first]


def test_search_of_a_missing_index_is_not_found(engine):
    with pytest.raises(NotFound, match="no_such_index|index_not_found"):
        engine.search("hftest-no-such-index", {"query": {"match_all": {}}})


def test_a_malformed_query_is_an_invalid_request(engine, index_name):
    index = _items_index(engine, index_name)
    with pytest.raises(InvalidRequest, match="rejected searching"):
        engine.search(index, {"query": {"no_such_query": {}}})


def test_a_stopped_engine_is_unavailable_with_a_hint(engine_settings):
    kind = engine_settings.engine.kind
    down = engine_settings.model_copy(
        update={"engine": EngineSettings(kind=kind, url="http://127.0.0.1:9", timeout_ms=500)}
    )
    engine = open_engine(down)
    with pytest.raises(EngineUnavailable, match="hotfeed services up"):
        engine.health()
