"""The one place where Elasticsearch 8 and OpenSearch differ for hotfeed.

Everything above the engine adapter writes the Elasticsearch 8 query DSL ("neutral"). Two
things are rendered per engine:

- the vector field: es_mappings/ says ``{"type": "hotfeed_vector"}``; Elasticsearch 8 gets
  ``dense_vector`` (HNSW, cosine); OpenSearch gets ``knn_vector`` with the pure-Java
  ``lucene`` engine (the Maven k-NN plugin has no native libraries, and the default faiss
  engine needs them) and ``index.knn: true``;
- the kNN query: neutral ``{"knn": {"field", "query_vector", "k", "num_candidates", "filter"}}``
  anywhere in a query becomes OpenSearch's ``{"knn": {<field>: {"vector", "k", "filter"}}}``.
  Elasticsearch's ``knn`` query takes no ``k`` before 8.16 (it returns ``num_candidates``
  per shard), so ``k`` is dropped there.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from recommender.errors import ConfigError
from recommender.settings import EngineSettings

__all__ = ["ITEMS_MAPPING_FILE", "load_items_mapping", "render_items_index", "render_search", "supports_knn", "VECTOR_TYPE"]

VECTOR_TYPE = "hotfeed_vector"
ITEMS_MAPPING_FILE = "items.json"


def load_items_mapping(mappings_dir: Path) -> dict[str, Any]:
    """Return es_mappings/items.json as a dict (without its comment).

    Raises ConfigError when the file is missing or not JSON.
    """
    path = mappings_dir / ITEMS_MAPPING_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"items mapping {str(path)!r} not found; set HOTFEED_PATHS_MAPPINGS_DIR") from None
    except ValueError as exc:
        raise ConfigError(f"items mapping {str(path)!r} is not valid JSON: {exc}") from None
    raw.pop("_comment", None)
    return raw


def supports_knn(kind: str, components: tuple[str, ...]) -> bool:
    """Return whether a node with these modules/plugins can run kNN queries."""
    # Elasticsearch's dense_vector kNN is part of the server itself.
    return kind == "elasticsearch" or "opensearch-knn" in components


def _render_vector(kind: str, spec: dict[str, Any], dims: int) -> dict[str, Any]:
    similarity = spec.get("similarity", "cosine")
    if kind == "elasticsearch":
        # Since 8.14 Elasticsearch defaults to int8-quantized HNSW, whose scores drift from the
        # exact cosine; hotfeed blends kNN scores with other features, so it keeps float HNSW.
        return {
            "type": "dense_vector",
            "dims": dims,
            "index": True,
            "similarity": similarity,
            "index_options": {"type": "hnsw"},
        }
    space = {"cosine": "cosinesimil", "l2_norm": "l2", "dot_product": "innerproduct"}[similarity]
    return {
        "type": "knn_vector",
        "dimension": dims,
        "method": {"name": "hnsw", "engine": "lucene", "space_type": space},
    }


def render_items_index(
    kind: str,
    settings: EngineSettings,
    *,
    join: bool,
    mappings_dir: Path,
) -> dict[str, Any]:
    """Return the items index body (settings + mappings) for this engine.

    Without the parent-join module (the Elasticsearch integ-test distribution) the join
    field is left out, so the engine's own dialect (kNN, function score, bulk, aliases)
    can still be exercised; has_child queries then fail on that node, by design.
    """
    raw = load_items_mapping(mappings_dir)
    body = copy.deepcopy(raw)
    index_settings = body.setdefault("settings", {})
    index_settings.update(
        {
            "number_of_shards": settings.shards,
            "number_of_replicas": settings.replicas,
            "refresh_interval": settings.refresh_interval,
        }
    )
    if kind == "opensearch":
        index_settings["index.knn"] = True
    props = body["mappings"]["properties"]
    for name, spec in list(props.items()):
        if spec.get("type") == VECTOR_TYPE:
            props[name] = _render_vector(kind, spec, settings.embedding_dims)
        elif spec.get("type") == "join" and not join:
            del props[name]
    return body


def _render_knn(clause: dict[str, Any]) -> dict[str, Any]:
    spec = clause["knn"]
    inner: dict[str, Any] = {"vector": spec["query_vector"], "k": spec.get("k", spec.get("num_candidates", 10))}
    if "filter" in spec:
        flt = spec["filter"]
        # OpenSearch takes one filter query; a list means "all of these".
        inner["filter"] = {"bool": {"filter": flt}} if isinstance(flt, list) else flt
    rendered: dict[str, Any] = {"knn": {spec["field"]: inner}}
    if "boost" in spec:
        inner["boost"] = spec["boost"]
    return rendered


def _is_neutral_knn(node: dict[str, Any]) -> bool:
    return len(node) == 1 and "knn" in node and isinstance(node["knn"], dict) and "query_vector" in node["knn"]


def _walk(node: Any, kind: str) -> Any:
    if isinstance(node, list):
        # Vectors and id lists hold no clause: pass them through unwalked.
        if not node or not isinstance(node[0], (dict, list)):
            return node
        return [_walk(n, kind) for n in node]
    if not isinstance(node, dict):
        return node
    if _is_neutral_knn(node):
        if kind == "opensearch":
            return _render_knn(node)
        spec = {k: v for k, v in node["knn"].items() if k != "k"}
        return {"knn": spec}
    return {k: _walk(v, kind) for k, v in node.items()}


def render_search(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of a neutral search body rendered for ``kind``; the input is not changed."""
    rendered = dict(body)
    if "query" in body:
        rendered["query"] = _walk(body["query"], kind)
    return rendered
