"""Rendering of the two engine dialects: pure, no cluster."""

from __future__ import annotations

from recommender.engine.dialect import render_items_index, render_search
from recommender.settings import EngineSettings, PathsSettings

MAPPINGS = PathsSettings().mappings_dir


def _settings(kind: str) -> EngineSettings:
    return EngineSettings(kind=kind, embedding_dims=8, shards=2, replicas=0, refresh_interval="1s")


def test_opensearch_vector_field_uses_the_lucene_hnsw_engine():
    body = render_items_index("opensearch", _settings("opensearch"), join=True, mappings_dir=MAPPINGS)
    assert body["mappings"]["properties"]["embedding"] == {
        "type": "knn_vector",
        "dimension": 8,
        "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"},
    }
    assert body["settings"]["index.knn"] is True
    assert body["settings"]["number_of_shards"] == 2


def test_elasticsearch_vector_field_is_a_float_hnsw_dense_vector():
    body = render_items_index("elasticsearch", _settings("elasticsearch"), join=True, mappings_dir=MAPPINGS)
    assert body["mappings"]["properties"]["embedding"] == {
        "type": "dense_vector",
        "dims": 8,
        "index": True,
        "similarity": "cosine",
        "index_options": {"type": "hnsw"},
    }
    assert "index.knn" not in body["settings"]


def test_join_field_has_eager_global_ordinals_and_is_dropped_without_the_module():
    with_join = render_items_index("opensearch", _settings("opensearch"), join=True, mappings_dir=MAPPINGS)
    assert with_join["mappings"]["properties"]["relation"] == {
        "type": "join",
        "relations": {"item": "popularity"},
        "eager_global_ordinals": True,
    }
    without = render_items_index("elasticsearch", _settings("elasticsearch"), join=False, mappings_dir=MAPPINGS)
    assert "relation" not in without["mappings"]["properties"]


NEUTRAL = {
    "size": 5,
    "query": {
        "bool": {
            "filter": [{"term": {"status": "active"}}],
            "should": [
                {"knn": {"field": "embedding", "query_vector": [1.0, 0.0], "k": 3, "num_candidates": 30,
                         "filter": [{"term": {"status": "active"}}], "boost": 2.0}},
                {"match_all": {}},
            ],
        }
    },
}


def test_opensearch_knn_query_is_nested_under_the_field_name():
    rendered = render_search("opensearch", NEUTRAL)
    assert rendered["query"]["bool"]["should"][0] == {
        "knn": {"embedding": {"vector": [1.0, 0.0], "k": 3, "boost": 2.0,
                              "filter": {"bool": {"filter": [{"term": {"status": "active"}}]}}}}
    }
    assert rendered["size"] == 5


def test_elasticsearch_knn_query_keeps_the_neutral_shape_without_k():
    rendered = render_search("elasticsearch", NEUTRAL)
    assert rendered["query"]["bool"]["should"][0] == {
        "knn": {"field": "embedding", "query_vector": [1.0, 0.0], "num_candidates": 30,
                "filter": [{"term": {"status": "active"}}], "boost": 2.0}
    }


def test_rendering_never_mutates_the_input():
    import copy

    before = copy.deepcopy(NEUTRAL)
    render_search("opensearch", NEUTRAL)
    render_search("elasticsearch", NEUTRAL)
    assert NEUTRAL == before
