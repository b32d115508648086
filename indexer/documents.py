"""Frames to engine documents: items become parent docs, popularity rows become child docs.

Document ids: a parent's ``_id`` is its item id; a child's is ``<item_id>|<cohort>`` and it is
routed to its parent, so all of an item's children live in the parent's shard (the join
field requires it). Times are written as epoch milliseconds, which both engines' default
date format accepts.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from recommender.engine import Doc

__all__ = [
    "ITEM_RELATION",
    "POPULARITY_RELATION",
    "child_doc_id",
    "category_levels",
    "engagement_counts",
    "item_documents",
    "popularity_documents",
]

ITEM_RELATION = "item"
POPULARITY_RELATION = "popularity"
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
    return (pd.to_datetime(values, utc=True).astype("int64") // 10**6).to_numpy() if len(values) else np.array([])


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
        items["item_id"].astype(str),
        items["title"].astype(str),
        items["category"].astype(str),
        items["price"].astype(float),
        items["region"].astype(str),
        items["seller_id"].astype(str),
        items["status"].astype(str),
        created.tolist(),
        bumped.tolist(),
        *(counts[c].tolist() for c in _ENGAGEMENT),
        vectors.astype(np.float32).round(6).tolist(),
    )
    for item_id, title, category, price, region, seller, status, c_at, b_at, views, likes, chats, buys, vec in columns:
        source = {
            "item_id": item_id,
            "title": title,
            "category": category,
            "category_levels": category_levels(category),
            "price": price,
            "region": region,
            "seller_id": seller,
            "status": status,
            "created_at": c_at,
            "bumped_at": b_at,
            "views": views,
            "likes": likes,
            "chats": chats,
            "purchases": buys,
            "embedding": vec,
            "model_version": model_version,
        }
        if join:
            source["relation"] = ITEM_RELATION
        yield Doc(item_id, source)


def popularity_documents(popularity: pd.DataFrame) -> Iterator[Doc]:
    """Yield one child document per (item, cohort) row of a popularity frame, routed to its item."""
    updated = _epoch_ms(popularity["updated_at"])
    rows = zip(
        popularity["item_id"].astype(str),
        popularity["cohort"].astype(str),
        popularity["score"].astype(float).round(6).tolist(),
        popularity["decayed_weight"].astype(float).round(6).tolist(),
        popularity["count_1h"].astype(int).tolist(),
        popularity["count_24h"].astype(int).tolist(),
        popularity["count_7d"].astype(int).tolist(),
        updated.tolist(),
    )
    for item_id, cohort, score, weight, c1h, c24h, c7d, updated_ms in rows:
        yield Doc(
            child_doc_id(item_id, cohort),
            {
                "relation": {"name": POPULARITY_RELATION, "parent": item_id},
                "cohort": cohort,
                "score": score,
                "decayed_weight": weight,
                "count_1h": c1h,
                "count_24h": c24h,
                "count_7d": c7d,
                "updated_at": updated_ms,
            },
            routing=item_id,
        )
