"""Field names of the items index (es_mappings/items.json) that the query builder uses.

A unit test checks each one against the mapping, so a renamed field fails there first.
"""

from __future__ import annotations

__all__ = [
    "ITEM_ID",
    "CATEGORY_LEVELS",
    "PRICE",
    "REGION",
    "STATUS",
    "BUMPED_AT",
    "EMBEDDING",
    "COHORT",
    "SCORE",
    "ITEM_RELATION",
    "POPULARITY_RELATION",
    "CATEGORY",
    "HIT_FIELDS",
]

ITEM_ID = "item_id"
# Every prefix of the slash-separated category path, so one term matches a whole subtree.
CATEGORY_LEVELS = "category_levels"
CATEGORY = "category"
PRICE = "price"
REGION = "region"
STATUS = "status"
BUMPED_AT = "bumped_at"
EMBEDDING = "embedding"
# Popularity children.
COHORT = "cohort"
SCORE = "score"
# Parent and child types of the join field `relation` (es_mappings/items.json: item -> popularity).
ITEM_RELATION = "item"
POPULARITY_RELATION = "popularity"
# What a feed hit carries, read from doc values: the rerank and the category cap need nothing
# else. Hits never load stored fields (``stored_fields: _none_``): the stored-fields block
# holds the whole source with its vector, and reading it for 200 hits cost more than the query.
HIT_FIELDS = (ITEM_ID, CATEGORY)
