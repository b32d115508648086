"""Elasticsearch 8 backend (the ``elasticsearch`` client, pinned to the server's major)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import elasticsearch
from elasticsearch import Elasticsearch

from recommender.engine.base import (
    BULK_FILTER_PATH,
    BULK_TIMEOUT_MS,
    RestEngine,
    auth_headers,
    error_reason,
    translate_http_error,
)
from recommender.settings import EngineSettings

__all__ = ["ElasticsearchEngine"]

_JSON = "application/vnd.elasticsearch+json; compatible-with=8"
_NDJSON = "application/vnd.elasticsearch+x-ndjson; compatible-with=8"


class ElasticsearchEngine(RestEngine):
    kind = "elasticsearch"

    def __init__(self, settings: EngineSettings, *, mappings_dir: Path):
        super().__init__(settings, mappings_dir=mappings_dir)
        self._client = Elasticsearch(
            settings.url, request_timeout=settings.timeout_ms / 1000, max_retries=0, retry_on_timeout=False,
            headers=auth_headers(settings), **({"ca_certs": str(settings.ca_file)} if settings.ca_file else {}),
        )

    def _call(self, method: str, path: str, *, body: Any, params: Any, what: str, timeout_ms: int | None,
              content_type: str) -> Any:
        client = self._client if timeout_ms is None else self._client.options(request_timeout=timeout_ms / 1000)
        headers = {"accept": _JSON}
        if body is not None:
            headers["content-type"] = content_type
        try:
            response = client.perform_request(method, path, params=params, headers=headers, body=body)
        except elasticsearch.ApiError as exc:
            raise translate_http_error(exc.meta.status, error_reason(exc.body), what=what, url=self.settings.url) from None
        except elasticsearch.TransportError as exc:  # connection refused, timeout, TLS
            raise translate_http_error(None, f"{type(exc).__name__}: {exc}", what=what, url=self.settings.url) from None
        return response.body if method != "HEAD" else True

    def _request(self, method, path, *, body=None, params=None, what, timeout_ms=None):
        return self._call(method, path, body=body, params=params, what=what, timeout_ms=timeout_ms, content_type=_JSON)

    def _bulk_request(self, payload, *, what):
        return self._call("POST", "/_bulk", body=payload, params={"filter_path": BULK_FILTER_PATH}, what=what,
                          timeout_ms=max(self.settings.timeout_ms, BULK_TIMEOUT_MS), content_type=_NDJSON)

    def close(self) -> None:
        self._search_http.close()
        self._client.close()
