"""Frames to engine documents: items become parent docs, popularity rows become child docs.

Document ids: a parent's ``_id`` is its item id; a child's is ``<item_id>|<cohort>`` and it is
routed to its parent, so all of an item's children live in the parent's shard (the join
field requires it). Times are written as epoch milliseconds, which both engines' default
date format accepts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recommender.query import ITEM_RELATION, POPULARITY_RELATION
from recommender.engine import Doc
from indexer._time import epoch_ns

__all__ = [
    "ITEM_RELATION",
    "POPULARITY_RELATION",
    "child_doc_id",
    "category_levels",
    "engagement_counts",
    "item_documents",
    "item_source",
    "popularity_documents",
]

_ENGAGEMENT = {"views": ("view", "click"), "likes": ("like",), "chats": ("chat",), "purchases": ("purchase",)}


def child_doc_id(item_id: str, cohort: str) -> str:
    """Return the child document id of an item's popularity in a cohort."""
    return f"{item_id}|{cohort}"


def category_levels(category: str) -> list[str]:
    """Return every prefix of a slash-separated category path: "a/b/c" -> ["a", "a/b", "a/b/c"]."""
    parts = [p for p in str(category).split("/") if p]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def engagement_counts(events: pd.DataFrame) -> pd.DataFrame:
    """Return per item_id the counts views (views + clicks), likes, chats and purchases."""
    kinds = events["event_type"].astype("string")
    out = pd.DataFrame(index=pd.Index(pd.unique(events["item_id"].astype("string")), name="item_id"))
    for column, types in _ENGAGEMENT.items():
        mask = kinds.isin(types).fillna(False).to_numpy()
        out[column] = events.loc[mask, "item_id"].astype("string").value_counts()
    return out.fillna(0).astype("int64")


def _epoch_ms(values: pd.Series) -> np.ndarray:
    # Through nanoseconds whatever the stored unit: pandas 3 reads Parquet times as microseconds,
    # and dividing those by 10**6 wrote seconds where the engine expects milliseconds.
    return epoch_ns(values) // 10**6 if len(values) else np.array([], dtype=np.int64)


def item_documents(
    items: pd.DataFrame,
    *,
    vectors: np.ndarray,
    model_version: str,
    engagement: pd.DataFrame | None = None,
    join: bool,
) -> Iterator[Doc]:
    """Yield one parent document per row of the items frame.

    ``vectors`` is aligned with the rows of ``items`` (n_items x dims, L2-normalized).
    ``join`` adds the join field; leave it off on a node without the parent-join module.
    """
    if len(vectors) != len(items):
        raise ValueError(f"vectors has {len(vectors)} rows for {len(items)} items")
    counts = (
        engagement.reindex(items["item_id"].astype("string")).fillna(0).astype("int64")
        if engagement is not None
        else pd.DataFrame(0, index=items.index, columns=list(_ENGAGEMENT))
    )
    created = _epoch_ms(items["created_at"])
    bumped = _epoch_ms(items["bumped_at"])
    columns = zip(
        items["item_id"].astype(str).tolist(),
        items["title"].astype(str).tolist(),
        items["category"].astype(str).tolist(),
        items["price"].astype(float).tolist(),
        items["region"].astype(str).tolist(),
        items["seller_id"].astype(str).tolist(),
        items["status"].astype(str).tolist(),
        created.tolist(),
        bumped.tolist(),
        *(counts[c].tolist() for c in _ENGAGEMENT),
        vectors.astype(np.float32).round(6).tolist(),
    )
    for item_id, title, category, price, region, seller, status, c_at, b_at, views, likes, chats, buys, vec in columns:
        yield Doc(item_id, item_source(
            item_id=item_id, title=title, category=category, price=price, region=region, seller_id=seller,
            status=status, created_at=c_at, bumped_at=b_at, views=views, likes=likes, chats=chats, purchases=buys,
            embedding=vec, model_version=model_version, join=join,
        ))


def item_source(
    *, item_id: str, title: str, category: str, price: float, region: str, seller_id: str, status: str,
    created_at: int, bumped_at: int, embedding: list[float] | None, model_version: str, join: bool,
    views: int = 0, likes: int = 0, chats: int = 0, purchases: int = 0,
) -> dict[str, Any]:
    """Return a parent document's source (times in epoch milliseconds): the one shape both the
    full rebuild and the near-real-time upsert of a new listing write."""
    source: dict[str, Any] = {
        "item_id": item_id,
        "title": title,
        "category": category,
        "category_levels": category_levels(category),
        "price": price,
        "region": region,
        "seller_id": seller_id,
        "status": status,
        "created_at": created_at,
        "bumped_at": bumped_at,
        "views": views,
        "likes": likes,
        "chats": chats,
        "purchases": purchases,
        "model_version": model_version,
    }
    if embedding is not None:
        source["embedding"] = embedding
    if join:
        source["relation"] = ITEM_RELATION
    return source


def popularity_documents(popularity: pd.DataFrame, *, batch_rows: int = 50_000) -> Iterator[Doc]:
    """Yield one child document per (item, cohort) row of a popularity frame, routed to its item.

    The sources come already JSON-encoded (bytes), built column-wise with Arrow and handed out
    ``batch_rows`` at a time: a full rebuild writes about a million children, and building and
    dumping a dict per row took as much CPU as the engine needed to index them (2 cores).
    Raises ValueError when a number is not finite (JSON has no NaN).
    """
    item_ids = pa.array(popularity["item_id"].astype("string"), type=pa.string())
    cohorts = pa.array(popularity["cohort"].astype("string"), type=pa.string())
    # The same id as child_doc_id(item_id, cohort), built column-wise.
    doc_ids = pc.binary_join_element_wise(item_ids, "|", cohorts, "")
    sources = pc.binary_join_element_wise(
        '{"relation":{"name":"' + POPULARITY_RELATION + '","parent":', _json_strings(item_ids),
        '},"cohort":', _json_strings(cohorts),
        ',"score":', _json_numbers(popularity["score"], decimals=6),
        ',"decayed_weight":', _json_numbers(popularity["decayed_weight"], decimals=6),
        ',"count_1h":', _json_numbers(popularity["count_1h"]),
        ',"count_24h":', _json_numbers(popularity["count_24h"]),
        ',"count_7d":', _json_numbers(popularity["count_7d"]),
        ',"updated_at":', _json_numbers(pd.Series(_epoch_ms(popularity["updated_at"]), name="updated_at")),
        "}",
        "",
    ).cast(pa.binary())
    for start in range(0, len(popularity), batch_rows):
        rows = slice(start, start + batch_rows)
        for doc_id, source, item_id in zip(
            doc_ids[rows].to_pylist(), sources[rows].to_pylist(), item_ids[rows].to_pylist()
        ):
            yield Doc(doc_id, source, routing=item_id)


def _json_strings(values: pa.Array) -> pa.Array:
    """Return the strings JSON-encoded (quoted, escaped), encoding each distinct value once.

    Raises ValueError for missing values.
    """
    if values.null_count:
        raise ValueError("popularity rows need an item_id and a cohort; some are missing")
    encoded = pc.dictionary_encode(values)
    quoted = pa.array([orjson.dumps(v).decode() for v in encoded.dictionary.to_pylist()], type=pa.string())
    return quoted.take(encoded.indices)


def _json_numbers(values: pd.Series, *, decimals: int | None = None) -> pa.Array:
    """Return the values as JSON number text (Arrow's shortest round-trip form, e.g. 0.5, 3e-7, 12)."""
    array = values.to_numpy(dtype=np.float64 if decimals is not None else np.int64)
    if decimals is not None:
        if not np.isfinite(array).all():
            raise ValueError(f"column {values.name!r} has non-finite values; JSON cannot carry them")
        array = array.round(decimals)
    return pc.cast(pa.array(array), pa.string())
