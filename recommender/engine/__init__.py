"""The search-engine adapter: one interface, an Elasticsearch 8 and an OpenSearch backend.

``open_engine(settings)`` picks the backend from ``settings.engine.kind``; nothing else in
hotfeed imports ``elasticsearch`` or ``opensearchpy``.
"""

from __future__ import annotations

from recommender.engine.base import BulkResult, Capabilities, Doc, Hit, SearchEngine, SearchResult
from recommender.errors import ConfigError
from recommender.settings import Settings

__all__ = ["open_engine", "SearchEngine", "Capabilities", "Doc", "BulkResult", "Hit", "SearchResult"]


def open_engine(settings: Settings) -> SearchEngine:
    """Return the engine adapter named by ``settings.engine.kind``.

    Raises ConfigError for an unknown engine name (settings validation normally catches it).
    """
    kind = settings.engine.kind
    if kind == "opensearch":
        from recommender.engine.opensearch import OpenSearchEngine

        return OpenSearchEngine(settings.engine, mappings_dir=settings.paths.mappings_dir)
    if kind == "elasticsearch":
        from recommender.engine.elasticsearch import ElasticsearchEngine

        return ElasticsearchEngine(settings.engine, mappings_dir=settings.paths.mappings_dir)
    raise ConfigError(f"HOTFEED_ENGINE={kind!r} is not a known engine; use 'opensearch' or 'elasticsearch'")
