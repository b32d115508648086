"""The SearchEngine interface and the REST logic both engines share.

Elasticsearch 8 and OpenSearch speak the same REST API for everything hotfeed uses except
the vector field mapping and the kNN query, which `dialect.py` renders. So the shared
operations are written once here over one primitive, ``_request``, that each backend
implements with its own client and its own error translation.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import orjson
import urllib3

from recommender.engine import dialect
from recommender.errors import EngineUnavailable, InvalidRequest, NotFound
from recommender.redact import redact, redact_url
from recommender.settings import EngineSettings

__all__ = [
    "Capabilities",
    "Doc",
    "BulkResult",
    "Hit",
    "SearchResult",
    "SearchEngine",
    "RestEngine",
    "auth_headers",
    "translate_http_error",
]

_log = logging.getLogger(__name__)
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# Only what bulk accounting reads: a million-document load parses far less JSON this way.
BULK_FILTER_PATH = "errors,items.*.status,items.*.error"
# What a search answer carries that hotfeed reads; the rest (index names, shard counts) is
# left out by the engine, which renders and sends less.
SEARCH_FILTER_PATH = (
    "took,hits.total,hits.hits._id,hits.hits._score,hits.hits._source,hits.hits._routing,"
    "hits.hits.sort,hits.hits.fields,hits.hits.matched_queries"
)
# A bulk chunk of vector documents can take the engine tens of seconds on a busy node (HNSW
# inserts); timing it out would resend work the engine is still doing.
BULK_TIMEOUT_MS = 120_000
# Both engines refuse a document id longer than this many UTF-8 bytes.
MAX_DOC_ID_BYTES = 512
# Merging a rebuilt index rewrites it whole (and its HNSW graph): minutes on a small node.
FORCE_MERGE_TIMEOUT_MS = 1_800_000


@dataclass(frozen=True)
class Capabilities:
    """What the connected node supports: asked of the node, never assumed per engine."""

    kind: str
    version: str
    join: bool
    knn: bool
    components: tuple[str, ...] = ()


@dataclass(frozen=True)
class Doc:
    """One document to write: parents have no routing; children route to their parent's id.

    ``source`` is a dict, or bytes holding it already JSON-encoded (bulk loads that build
    their sources column-wise pass those through unchanged).
    """

    id: str
    source: dict[str, Any] | bytes
    routing: str | None = None
    # True: merge ``source`` into the existing document (a bulk ``update``); the document must
    # exist, else the engine answers 404 for it (a refusal, see BulkResult.refused).
    partial: bool = False


@dataclass
class BulkResult:
    ok: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (doc id, reason)
    # Ids among ``failed`` that the engine refused for the document itself (4xx: an id too
    # long, a mapping conflict): sending them again cannot succeed.
    refused: list[str] = field(default_factory=list)
    retries: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """Return a one-line account of the bulk write."""
        rate = self.ok / self.seconds if self.seconds > 0 else 0.0
        failed = f", {len(self.failed)} failed (first: {self.failed[0]!r})" if self.failed else ", 0 failed"
        return f"{self.ok:,} docs written in {self.seconds:.1f}s ({rate:,.0f} docs/s){failed}, {self.retries} retries"


@dataclass(frozen=True, slots=True)
class Hit:
    """One search hit. ``fields`` holds the first value of each requested doc-value field.

    A body with ``stored_fields: "_none_"`` gets no ``_id`` back; ``id`` is then its
    ``item_id`` doc value (the indexer makes the two equal).
    """

    id: str
    score: float
    source: dict[str, Any]
    sort: tuple[Any, ...] = ()
    routing: str | None = None
    matched: dict[str, float] = field(default_factory=dict)  # named query -> score (with named_scores)
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    total: int
    took_ms: int


class SearchEngine(Protocol):
    """What hotfeed needs of a search engine. Bodies are neutral (Elasticsearch 8) DSL."""

    kind: str
    settings: EngineSettings

    def capabilities(self) -> Capabilities: ...
    def health(self) -> dict[str, Any]: ...
    def put_index_template(self, name: str, *, index_patterns: list[str], body: dict[str, Any]) -> None: ...
    def create_index(self, name: str, *, body: dict[str, Any] | None = None) -> None: ...
    def delete_index_template(self, name: str) -> bool: ...
    def create_items_index(self, name: str, *, alias: str) -> None: ...
    def drop_items_alias(self, alias: str) -> list[str]: ...
    def delete_index(self, name: str) -> bool: ...
    def index_exists(self, name: str) -> bool: ...
    def list_indices(self, pattern: str) -> list[str]: ...
    def bulk_upsert(
        self, index: str, docs: Iterable[Doc], *, chunk_docs: int = ..., max_retries: int = ..., concurrency: int = ...,
        progress: Any = ...,
    ) -> BulkResult: ...
    def update(self, index: str, doc_id: str, partial: dict[str, Any], *, routing: str | None = None) -> None: ...
    def delete(self, index: str, doc_id: str, *, routing: str | None = None) -> bool: ...
    def get(
        self, index: str, doc_id: str, *, routing: str | None = None, timeout_ms: int | None = None
    ) -> dict[str, Any] | None: ...
    def mget(
        self, index: str, ids: list[tuple[str, str | None]], *, fields: list[str] | None = None,
        timeout_ms: int | None = None,
    ) -> list[dict[str, Any] | None]: ...
    def search(
        self, index: str, body: dict[str, Any], *, timeout_ms: int | None = None, named_scores: bool = False
    ) -> SearchResult: ...
    def count(self, index: str, query: dict[str, Any] | None = None) -> int: ...
    def refresh(self, index: str) -> None: ...
    def force_merge(self, index: str, *, max_segments: int = 1) -> None: ...
    def put_index_settings(self, index: str, index_settings: dict[str, Any]) -> None: ...
    def alias_targets(self, alias: str) -> list[str]: ...
    def swap_alias(self, alias: str, new_index: str) -> list[str]: ...
    def close(self) -> None: ...


def translate_http_error(status: int | None, reason: str, *, what: str, url: str) -> Exception:
    """Return our exception for an engine answer (or for no answer when status is None).

    No answer, 429 and 5xx mean the engine is unavailable; 404 is NotFound; other 4xx
    mean the request was wrong.
    """
    url, reason = redact_url(url), redact(reason)
    if status is None or status == 429 or status >= 500:
        return EngineUnavailable(
            f"search engine at {url!r} is unavailable while {what}: {reason}. "
            f"Start it with `hotfeed services up` or check HOTFEED_ENGINE_URL."
        )
    if status == 404:
        return NotFound(f"{what}: {reason}")
    return InvalidRequest(f"search engine rejected {what} (HTTP {status}): {reason}")


def _error_reason(body: Any) -> str:
    """Return the engine's own one-line reason from an error body."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            root = (err.get("root_cause") or [err])[0]
            return f"{root.get('type', err.get('type'))}: {root.get('reason', err.get('reason'))}"
        if err:
            return str(err)
    return str(body)[:300]


def auth_headers(settings: EngineSettings) -> dict[str, str]:
    """Return the Authorization header for the engine: API key, else user/password (settings or URL)."""
    if settings.api_key:
        return {"authorization": f"ApiKey {settings.api_key}"}
    user_pass = f"{settings.username}:{settings.password}" if settings.username else urllib3.util.parse_url(settings.url).auth
    return dict(urllib3.make_headers(basic_auth=user_pass)) if user_pass else {}


class _SearchConnection:
    """The request path's HTTP: one pooled urllib3 connection, orjson both ways.

    The clients' own transports (logging hooks, header merging, json module) cost about a
    millisecond per feed search more than this; every other call keeps using the clients.
    Credentials in the URL become a basic-auth header.
    """

    def __init__(self, settings: EngineSettings, *, maxsize: int = 16):
        parsed = urllib3.util.parse_url(settings.url)
        headers = {"content-type": "application/json", "accept": "application/json", **auth_headers(settings)}
        self._prefix = (parsed.path or "").rstrip("/")
        tls = {"ca_certs": str(settings.ca_file)} if settings.ca_file and parsed.scheme == "https" else {}
        self._pool = urllib3.connection_from_url(
            parsed._replace(auth=None, path=None, query=None, fragment=None).url,
            maxsize=maxsize, block=False, retries=False, headers=headers, **tls,
        )
        self.url = redact_url(settings.url)

    def post_json(self, path: str, body: bytes, *, params: dict[str, str], timeout_s: float, what: str) -> Any:
        """Return the decoded answer of a POST; raises our errors (``translate_http_error``)."""
        try:
            response = self._pool.urlopen(
                "POST", f"{self._prefix}{path}?{urlencode(params)}", body=body,
                timeout=urllib3.Timeout(total=timeout_s), preload_content=True,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise translate_http_error(None, f"{type(exc).__name__}: {exc}", what=what, url=self.url) from None
        if response.status >= 300:
            raise translate_http_error(response.status, error_reason(response.data), what=what, url=self.url)
        return orjson.loads(response.data)

    def close(self) -> None:
        self._pool.close()


class RestEngine:
    """Shared REST operations; subclasses implement ``_request`` and ``_bulk_request``."""

    kind = ""

    def __init__(self, settings: EngineSettings, *, mappings_dir: Path):
        self.settings = settings
        self.mappings_dir = mappings_dir
        self._capabilities: Capabilities | None = None
        self._search_http = _SearchConnection(settings)

    # -- primitives each backend implements ---------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        what: str,
        timeout_ms: int | None = None,
    ) -> Any:
        raise NotImplementedError

    def _bulk_request(self, payload: bytes, *, what: str) -> dict[str, Any]:
        """Send an NDJSON ``_bulk`` body; return the answer holding ``errors`` and ``items.*.status|error``."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- cluster ---------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Return the cluster health document (status green/yellow/red)."""
        return self._request("GET", "/_cluster/health", what="reading cluster health")

    def capabilities(self) -> Capabilities:
        """Return what the node supports (join module, kNN), asked once and cached."""
        if self._capabilities is None:
            info = self._request(
                "GET",
                "/_nodes/_local",
                params={"filter_path": "nodes.*.version,nodes.*.modules.name,nodes.*.plugins.name"},
                what="reading node info",
            )
            node = next(iter(info["nodes"].values()))
            components = tuple(m["name"] for m in node.get("modules", []) + node.get("plugins", []))
            self._capabilities = Capabilities(
                kind=self.kind,
                version=node.get("version", ""),
                join="parent-join" in components,
                knn=dialect.supports_knn(self.kind, components),
                components=components,
            )
        return self._capabilities

    # -- indexes ---------------------------------------------------------------------------------
    def put_index_template(self, name: str, *, index_patterns: list[str], body: dict[str, Any]) -> None:
        """Create or replace a composable index template applying ``body`` to matching new indexes."""
        template = {"index_patterns": index_patterns, "priority": 100, "template": body}
        self._request("PUT", f"/_index_template/{name}", body=template, what=f"putting index template {name!r}")

    def delete_index_template(self, name: str) -> bool:
        """Delete an index template; return False when it did not exist."""
        try:
            self._request("DELETE", f"/_index_template/{name}", what=f"deleting index template {name!r}")
            return True
        except NotFound:
            return False

    def create_index(self, name: str, *, body: dict[str, Any] | None = None) -> None:
        """Create an index (settings and mappings from ``body`` and any matching template)."""
        self._request("PUT", f"/{name}", body=body or {}, what=f"creating index {name!r}")

    def items_index_body(self) -> dict[str, Any]:
        """Return the items index body from es_mappings/, rendered for this engine and node."""
        return dialect.render_items_index(
            self.kind, self.settings, join=self.capabilities().join, mappings_dir=self.mappings_dir
        )

    def put_items_template(self, alias: str) -> None:
        """Install the items template for ``<alias>-*`` so every physical index of the alias gets it."""
        self.put_index_template(f"{alias}-template", index_patterns=[f"{alias}-*"], body=self.items_index_body())

    def create_items_index(self, name: str, *, alias: str) -> None:
        """Create the physical items index ``name`` (``<alias>-...``) from the alias's items template.

        Raises InvalidRequest when the name would not match the template.
        """
        if not name.startswith(f"{alias}-"):
            raise InvalidRequest(f"items index {name!r} must be named '{alias}-...' to get the items template")
        self.put_items_template(alias)
        self.create_index(name)

    def drop_items_alias(self, alias: str) -> list[str]:
        """Delete every physical index of an items alias and its template; return the deleted indexes."""
        names = self.list_indices(f"{alias}-*")
        for name in names:
            self.delete_index(name)
        self.delete_index_template(f"{alias}-template")
        return names

    def delete_index(self, name: str) -> bool:
        """Delete an index; return False when it did not exist."""
        try:
            self._request("DELETE", f"/{name}", what=f"deleting index {name!r}")
            return True
        except NotFound:
            return False

    def index_exists(self, name: str) -> bool:
        try:
            self._request("HEAD", f"/{name}", what=f"checking index {name!r}")
            return True
        except NotFound:
            return False

    def list_indices(self, pattern: str) -> list[str]:
        """Return the names of indexes matching ``pattern``, sorted."""
        rows = self._request(
            "GET", f"/_cat/indices/{pattern}", params={"format": "json", "h": "index"}, what="listing indexes"
        )
        return sorted(r["index"] for r in rows)

    def refresh(self, index: str) -> None:
        self._request("POST", f"/{index}/_refresh", what=f"refreshing {index!r}")

    def force_merge(self, index: str, *, max_segments: int = 1) -> None:
        """Merge the index down to ``max_segments`` segments; returns when the merge is done."""
        self._request(
            "POST", f"/{index}/_forcemerge", params={"max_num_segments": str(max_segments)},
            what=f"merging {index!r} to {max_segments} segment(s)", timeout_ms=FORCE_MERGE_TIMEOUT_MS,
        )

    def put_index_settings(self, index: str, index_settings: dict[str, Any]) -> None:
        """Change dynamic settings of an index (refresh interval during a bulk load, say)."""
        self._request("PUT", f"/{index}/_settings", body={"index": index_settings}, what=f"updating settings of {index!r}")

    # -- documents -------------------------------------------------------------------------------
    def bulk_upsert(
        self,
        index: str,
        docs: Iterable[Doc],
        *,
        chunk_docs: int = 2000,
        max_retries: int = 5,
        concurrency: int = 1,
        progress: Any = None,
    ) -> BulkResult:
        """Return the result of indexing ``docs`` (create or replace) in chunks.

        Items rejected with 429 or 5xx, and whole chunks that fail to send, are retried
        with exponential backoff and jitter up to ``max_retries`` times; anything still
        failing is listed in the result with its reason, never dropped silently.
        ``concurrency`` chunks are in flight at once (1: one after the other); the chunks
        are drawn from ``docs`` lazily, so at most ``concurrency + 1`` are held in memory.
        ``progress`` (a tqdm bar or None) is advanced by written or failed documents.
        """
        if concurrency < 1:
            raise InvalidRequest(f"bulk concurrency {concurrency!r} must be >= 1")
        result = BulkResult()
        started = time.monotonic()

        def merge(part: BulkResult) -> None:
            result.ok += part.ok
            result.failed += part.failed
            result.refused += part.refused
            result.retries += part.retries
            if progress is not None:
                progress.update(part.ok + len(part.failed))

        if concurrency == 1:
            for chunk in _chunks(docs, chunk_docs):
                merge(self._write_chunk(index, chunk, max_retries=max_retries))
        else:
            # Threads overlap building and serializing the next chunks (Python) with the
            # engine indexing the previous ones; results are merged on this thread only.
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bulk") as pool:
                in_flight: set[Future[BulkResult]] = set()
                try:
                    for chunk in _chunks(docs, chunk_docs):
                        if len(in_flight) >= concurrency:
                            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                            for future in done:
                                merge(future.result())
                        in_flight.add(pool.submit(self._write_chunk, index, chunk, max_retries=max_retries))
                    for future in as_completed(in_flight):
                        merge(future.result())
                except BaseException:
                    for future in in_flight:
                        future.cancel()
                    raise
        result.seconds = time.monotonic() - started
        return result

    def _write_chunk(self, index: str, chunk: list[Doc], *, max_retries: int) -> BulkResult:
        """Return the outcome of one chunk, retried as ``bulk_upsert`` describes.

        Documents whose id the engine would refuse are refused here: both engines fail the
        whole bulk request for one over-long id, which would take every other document down.
        """
        result = BulkResult()
        sendable = []
        for doc in chunk:
            size = len(doc.id.encode("utf-8"))
            if size > MAX_DOC_ID_BYTES:
                result.failed.append((doc.id, f"document id of {size} bytes is longer than the engines' {MAX_DOC_ID_BYTES}"))
                result.refused.append(doc.id)
            else:
                sendable.append(doc)
        chunk = sendable
        what = f"bulk indexing into {index!r}"
        # Each document is serialized once; a retry sends the same bytes of the rejected ones.
        pending = [(doc, _bulk_lines(index, doc)) for doc in chunk]
        attempt = 0
        while pending:
            retry: list[tuple[Doc, bytes]] = []
            try:
                answer = self._bulk_request(b"".join(lines for _, lines in pending), what=what)
            except EngineUnavailable as exc:
                retry = pending
                last_error = str(exc)
            else:
                last_error = "rejected by the engine (429/5xx)"
                if not answer.get("errors") and len(answer.get("items", ())) == len(pending):
                    result.ok += len(pending)
                else:
                    for (doc, lines), item in zip(pending, answer["items"]):
                        outcome = item.get("index") or item.get("update") or {}
                        status = outcome.get("status", 500)
                        if status < 300:
                            result.ok += 1
                        elif status == 429 or status >= 500:
                            retry.append((doc, lines))
                        else:
                            result.failed.append((doc.id, _error_reason(outcome)))
                            result.refused.append(doc.id)
            if retry and attempt < max_retries:
                attempt += 1
                result.retries += 1
                delay = min(0.2 * 2**attempt, 10.0) * (0.5 + random.random())
                _log.warning("bulk: retrying %d docs in %.1fs (attempt %d)", len(retry), delay, attempt)
                time.sleep(delay)
                pending = retry
            else:
                result.failed.extend((doc.id, f"gave up after {attempt} retries: {last_error}") for doc, _ in retry)
                pending = []
        return result

    def update(self, index: str, doc_id: str, partial: dict[str, Any], *, routing: str | None = None) -> None:
        """Merge ``partial`` into an existing document. Raises NotFound if it does not exist."""
        params = {"routing": routing} if routing is not None else None
        self._request(
            "POST", f"/{index}/_update/{_quoted(doc_id)}", body={"doc": partial}, params=params,
            what=f"updating document {doc_id!r} in {index!r}",
        )

    def delete(self, index: str, doc_id: str, *, routing: str | None = None) -> bool:
        """Delete a document; return False if it was not there."""
        params = {"routing": routing} if routing is not None else None
        try:
            self._request("DELETE", f"/{index}/_doc/{_quoted(doc_id)}", params=params, what=f"deleting {doc_id!r}")
            return True
        except NotFound:
            return False

    def get(
        self, index: str, doc_id: str, *, routing: str | None = None, timeout_ms: int | None = None
    ) -> dict[str, Any] | None:
        """Return a document's source, or None if it does not exist."""
        params = {"routing": routing} if routing is not None else None
        try:
            answer = self._request(
                "GET", f"/{index}/_doc/{_quoted(doc_id)}", params=params, what=f"getting {doc_id!r}",
                timeout_ms=timeout_ms,
            )
        except NotFound:
            return None
        return answer.get("_source") if answer.get("found", True) else None

    def mget(
        self, index: str, ids: list[tuple[str, str | None]], *, fields: list[str] | None = None,
        timeout_ms: int | None = None,
    ) -> list[dict[str, Any] | None]:
        """Return the sources of (doc id, routing) pairs in order; None where a document is missing.

        ``fields`` limits each source to those fields (default: the whole source). The engine answers
        200 even when it could not look a document up (its shard unavailable, say, while the engine
        recovers, or the index missing): that is no "missing document", so it raises
        EngineUnavailable, or NotFound for a missing index, rather than return None for it.
        """
        if not ids:
            return []
        docs = [{"_id": doc_id, **({"routing": routing} if routing is not None else {})} for doc_id, routing in ids]
        params = {"_source_includes": ",".join(fields)} if fields else None
        what = f"reading {len(ids)} docs from {index!r}"
        answer = self._request("POST", f"/{index}/_mget", body={"docs": docs}, params=params,
                               what=what, timeout_ms=timeout_ms)
        failed = [d for d in answer["docs"] if d.get("error")]
        if failed:
            error = failed[0]["error"]
            missing_index = isinstance(error, dict) and error.get("type") == "index_not_found_exception"
            raise translate_http_error(404 if missing_index else 503,
                                       f"{len(failed)} of {len(ids)} unreadable ({_error_reason(failed[0])})",
                                       what=what, url=self.settings.url)
        return [d.get("_source") if d.get("found") else None for d in answer["docs"]]

    # -- search ----------------------------------------------------------------------------------
    def search(
        self, index: str, body: dict[str, Any], *, timeout_ms: int | None = None, named_scores: bool = False
    ) -> SearchResult:
        """Return the hits of a neutral-DSL search body, rendered for this engine.

        ``named_scores`` asks for each named clause's score in ``Hit.matched`` (both engines
        take it only as a URL parameter).
        """
        rendered = dialect.render_search(self.kind, body)
        if timeout_ms is not None and "timeout" not in rendered:
            # The engine stops collecting at the deadline and answers with what it has, rather
            # than working on for a caller that has already moved on to the fallback.
            rendered["timeout"] = f"{max(int(timeout_ms * 0.8), 1)}ms"
        params = {"filter_path": SEARCH_FILTER_PATH}
        if named_scores:
            params["include_named_queries_score"] = "true"
        answer = self._search_http.post_json(
            f"/{quote(index, safe=',*')}/_search", orjson.dumps(rendered, option=_ORJSON_OPTIONS), params=params,
            timeout_s=(timeout_ms if timeout_ms is not None else self.settings.timeout_ms) / 1000,
            what=f"searching {index!r}",
        )
        if "hits" not in answer:  # filter_path drops an empty hits section entirely
            return SearchResult([], 0, int(answer.get("took", 0)))
        hits = [_hit(h) for h in answer["hits"].get("hits", ())]
        total = answer["hits"].get("total", {})
        return SearchResult(hits, int(total.get("value", 0) if isinstance(total, dict) else total), answer["took"])

    def count(self, index: str, query: dict[str, Any] | None = None) -> int:
        body = {"query": query} if query else None
        return int(self._request("POST", f"/{index}/_count", body=body, what=f"counting {index!r}")["count"])

    # -- aliases ---------------------------------------------------------------------------------
    def alias_targets(self, alias: str) -> list[str]:
        """Return the indexes the alias points at (empty if the alias does not exist)."""
        try:
            answer = self._request("GET", f"/_alias/{alias}", what=f"reading alias {alias!r}")
        except NotFound:
            return []
        return sorted(answer)

    def swap_alias(self, alias: str, new_index: str) -> list[str]:
        """Point ``alias`` at ``new_index`` only, in one atomic action; return the old targets.

        Both engines apply one `_aliases` request atomically, so a reader never sees the
        alias resolve to nothing or to two indexes.
        """
        old = self.alias_targets(alias)
        actions: list[dict[str, Any]] = [{"remove": {"index": name, "alias": alias}} for name in old if name != new_index]
        actions.append({"add": {"index": new_index, "alias": alias}})
        self._request("POST", "/_aliases", body={"actions": actions}, what=f"swapping alias {alias!r}")
        return [name for name in old if name != new_index]


def _hit(raw: dict[str, Any]) -> Hit:
    # Runs for each of a feed's 200 candidates: plain lookups, no comprehension unless needed.
    fields = raw.get("fields")
    if fields:
        fields = {name: values[0] for name, values in fields.items() if values}
    else:
        fields = {}
    score = raw.get("_score")
    matched = raw.get("matched_queries")
    return Hit(
        raw["_id"] if "_id" in raw else str(fields.get("item_id", "")),
        float(score) if score is not None else 0.0,
        raw.get("_source") or {},
        tuple(raw.get("sort", ())),
        raw.get("_routing"),
        _matched(matched) if matched else {},
        fields,
    )


def _matched(raw: Any) -> dict[str, float]:
    # Without include_named_queries_score the engines return a list of names, with it a map.
    if isinstance(raw, dict):
        return {str(k): float(v) for k, v in raw.items()}
    return {str(name): 0.0 for name in raw or ()}


def _quoted(doc_id: str) -> str:
    # Ids are free text (child ids hold "|" and ":"); the REST path needs them escaped.
    return quote(doc_id, safe="")


def _bulk_lines(index: str, doc: Doc) -> bytes:
    """Return the action and source lines of one document, NDJSON-encoded."""
    meta: dict[str, Any] = {"_index": index, "_id": doc.id}
    if doc.routing is not None:
        meta["routing"] = doc.routing
    # orjson is ~15x faster than json.dumps here, which matters at a million documents.
    source = doc.source if isinstance(doc.source, bytes) else orjson.dumps(doc.source, option=_ORJSON_OPTIONS)
    if doc.partial:
        return b'%b\n{"doc":%b}\n' % (orjson.dumps({"update": meta}), source)
    return b"%b\n%b\n" % (orjson.dumps({"index": meta}), source)


def _chunks(docs: Iterable[Doc], size: int) -> Iterator[list[Doc]]:
    chunk: list[Doc] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def error_reason(body: Any) -> str:
    """Return the engine's one-line reason from an error body (for the backends)."""
    return _error_reason(body) if not isinstance(body, (bytes, str)) else _error_reason(_maybe_json(body))


def _maybe_json(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        return raw
