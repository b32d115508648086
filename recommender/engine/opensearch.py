"""OpenSearch backend (``opensearch-py``: the Elasticsearch 8 client refuses to talk to OpenSearch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import opensearchpy
from opensearchpy import OpenSearch

from recommender.engine.base import (
    BULK_FILTER_PATH,
    BULK_TIMEOUT_MS,
    RestEngine,
    auth_headers,
    error_reason,
    translate_http_error,
)
from recommender.settings import EngineSettings

__all__ = ["OpenSearchEngine"]


class OpenSearchEngine(RestEngine):
    kind = "opensearch"

    def __init__(self, settings: EngineSettings, *, mappings_dir: Path):
        super().__init__(settings, mappings_dir=mappings_dir)
        self._client = OpenSearch(
            [settings.url], timeout=settings.timeout_ms / 1000, max_retries=0, retry_on_timeout=False,
            headers=auth_headers(settings), **({"ca_certs": str(settings.ca_file)} if settings.ca_file else {}),
            # Concurrent bulk writes each hold a connection; urllib3's default keeps only one.
            pool_maxsize=8,
        )

    def _call(self, method: str, path: str, *, body: Any, params: Any, what: str, timeout_ms: int | None,
              headers: dict[str, str] | None = None) -> Any:
        timeout = timeout_ms / 1000 if timeout_ms is not None else None
        try:
            return self._client.transport.perform_request(
                method, path, params=params, body=body, timeout=timeout, headers=headers
            )
        except opensearchpy.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else None
            if isinstance(exc, (opensearchpy.ConnectionError, opensearchpy.ConnectionTimeout)):
                status = None
            reason = error_reason(exc.info) if status is not None else f"{type(exc).__name__}: {exc.error}"
            raise translate_http_error(status, reason, what=what, url=self.settings.url) from None

    def _request(self, method, path, *, body=None, params=None, what, timeout_ms=None):
        return self._call(method, path, body=body, params=params, what=what, timeout_ms=timeout_ms)

    def _bulk_request(self, payload, *, what):
        return self._call("POST", "/_bulk", body=payload, params={"filter_path": BULK_FILTER_PATH}, what=what,
                          timeout_ms=max(self.settings.timeout_ms, BULK_TIMEOUT_MS),
                          headers={"content-type": "application/x-ndjson"})

    def close(self) -> None:
        self._search_http.close()
        self._client.close()
