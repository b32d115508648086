"""Concurrent bulk writes keep exact accounting, and pre-encoded children index like dict ones (real OpenSearch)."""

from __future__ import annotations

import json

import pandas as pd

from recommender.engine import Doc
from indexer.documents import popularity_documents


def _strict_index(engine, index_name) -> str:
    index = index_name(engine, "bulk")
    engine.create_index(index, body={"mappings": {"dynamic": "strict", "properties": {"n": {"type": "integer"}}}})
    return index


def test_concurrent_chunks_count_every_document_once_and_list_each_rejection(opensearch, index_name):
    index = _strict_index(opensearch, index_name)
    # Every 7th document has a field the strict mapping refuses: a per-item 400, never retried.
    docs = [Doc(f"d{i}", {"n": i} if i % 7 else {"n": i, "unknown": 1}) for i in range(500)]
    result = opensearch.bulk_upsert(index, docs, chunk_docs=13, concurrency=3)
    rejected = {f"d{i}" for i in range(500) if i % 7 == 0}
    assert result.ok == 500 - len(rejected)
    assert {doc_id for doc_id, _ in result.failed} == rejected
    assert len(result.failed) == len(rejected)
    assert all("strict" in reason for _, reason in result.failed)
    opensearch.refresh(index)
    assert opensearch.count(index) == result.ok


def test_progress_advances_by_written_and_failed_documents(opensearch, index_name):
    index = _strict_index(opensearch, index_name)

    class Bar:
        n = 0

        def update(self, k: int) -> None:
            self.n += k

    bar = Bar()
    docs = [Doc(f"d{i}", {"n": i} if i % 5 else {"bad": i}) for i in range(101)]
    result = opensearch.bulk_upsert(index, docs, chunk_docs=10, concurrency=2, progress=bar)
    assert bar.n == 101 == result.ok + len(result.failed)


def test_encoded_popularity_children_equal_their_rows(opensearch, index_name):
    index = index_name(opensearch, "enc")
    opensearch.create_index(index)
    rows = pd.DataFrame({
        "item_id": pd.array(['i"1', "i2"], dtype="string"),
        "cohort": pd.array(["all", "region:são paulo"], dtype="string"),
        "score": [1.0, 3e-7],
        "decayed_weight": [12.5, 0.1234567],
        "count_1h": [1, 0],
        "count_24h": [2, 0],
        "count_7d": [3, 1],
        "updated_at": pd.to_datetime(["2026-10-31T23:59:59Z", "2026-10-31T00:00:00Z"], utc=True),
    })
    docs = list(popularity_documents(rows))
    assert [d.id for d in docs] == ['i"1|all', "i2|region:são paulo"]
    assert json.loads(docs[1].source) == {
        "relation": {"name": "popularity", "parent": "i2"},
        "cohort": "region:são paulo",
        "score": 0.0,
        "decayed_weight": 0.123457,
        "count_1h": 0,
        "count_24h": 0,
        "count_7d": 1,
        "updated_at": 1_793_404_800_000,
    }
    result = opensearch.bulk_upsert(index, docs)
    assert result.ok == 2 and result.failed == []
    assert opensearch.get(index, 'i"1|all', routing='i"1')["relation"] == {"name": "popularity", "parent": 'i"1'}
