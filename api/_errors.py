"""The one table from gRPC status codes and HotfeedError classes to HTTP statuses.

Every error leaves the gateway as JSON ``{"detail": "<what is wrong and what to do>"}``.
"""

from __future__ import annotations

import logging

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from recommender.errors import (
    EngineUnavailable,
    HotfeedError,
    InvalidRequest,
    NotFound,
    ProfileRejected,
    RateLimited,
    StoreUnavailable,
    Unauthenticated,
)
from recommender.redact import redact

__all__ = ["HTTP_STATUS_BY_GRPC_CODE", "HTTP_STATUS_BY_ERROR", "http_status_of", "install_error_handlers"]

_log = logging.getLogger("hotfeed.gateway")

HTTP_STATUS_BY_GRPC_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# Most specific first: ProfileRejected is an InvalidRequest but gets its own status.
HTTP_STATUS_BY_ERROR: tuple[tuple[type[HotfeedError], int], ...] = (
    (ProfileRejected, 422),
    (InvalidRequest, 400),
    (Unauthenticated, 401),
    (RateLimited, 429),
    (NotFound, 404),
    (StoreUnavailable, 503),
    (EngineUnavailable, 503),
)
# A gRPC code outside the table means the recommender failed in a way the caller cannot fix.
_UPSTREAM_FAILED = 502


def http_status_of(error: HotfeedError | grpc.StatusCode) -> int:
    """Return the HTTP status for one of our errors or a gRPC status code (500/502 when unmapped)."""
    if isinstance(error, grpc.StatusCode):
        return HTTP_STATUS_BY_GRPC_CODE.get(error, _UPSTREAM_FAILED)
    for cls, status in HTTP_STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 500


def _grpc_error(request: Request, exc: grpc.RpcError) -> JSONResponse:
    code: grpc.StatusCode = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    status = http_status_of(code)
    # Clients hear what failed; where it lives and how to restart it is for the log only.
    if code == grpc.StatusCode.UNAVAILABLE:
        detail = "the recommender is unavailable; retry shortly"
        target = request.app.state.settings.gateway.grpc_target
        _log.warning("the recommender at %r is unavailable (%s); start it with `hotfeed serve`", target, details)
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        # An endpoint with its own, longer gRPC deadline (previews) sets request.state.call_timeout_ms.
        timeout_ms = getattr(request.state, "call_timeout_ms", None) or request.app.state.settings.gateway.deadline_ms
        detail = f"the recommender did not answer within {timeout_ms} ms; retry"
    elif status >= 500:
        detail = f"the recommender failed ({code.name}); retry, and report the X-Request-ID if it persists"
    else:
        detail = details or f"the recommender answered {code.name}"
    if status >= 500:
        _log.warning("%s %s -> %d: gRPC %s %s", request.method, request.url.path, status, code.name, redact(details))
    return JSONResponse({"detail": detail}, status_code=status)


_UNAVAILABLE_DETAIL = {
    StoreUnavailable: "the profile and session store is unavailable; retry shortly",
    EngineUnavailable: "the search engine is unavailable; retry shortly",
}


def _hotfeed_error(request: Request, exc: HotfeedError) -> JSONResponse:
    status = http_status_of(exc)
    detail = str(exc)
    if status >= 500:
        _log.warning("%s %s -> %d: %s", request.method, request.url.path, status, redact(exc))
        detail = next((d for cls, d in _UNAVAILABLE_DETAIL.items() if isinstance(exc, cls)),
                      "the gateway failed; retry, and report the X-Request-ID if it persists")
    headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))} if isinstance(exc, RateLimited) else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _where(loc: tuple) -> str:
    # ("query", "page_size") -> "query parameter 'page_size'"; ("body", 3, "type") -> "body[3].type".
    if loc and loc[0] in ("query", "path", "header") and len(loc) > 1:
        return f"{loc[0]} parameter {loc[1]!r}"
    out = str(loc[0]) if loc else "request"
    for part in loc[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for err in exc.errors():
        where = _where(tuple(err.get("loc", ())))
        if err.get("type") == "missing":
            problems.append(f"{where} is required; add it")
        else:
            problems.append(f"{where} {err.get('input')!r}: {err.get('msg')}")
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn gRPC errors, HotfeedErrors and bad parameters into JSON."""
    app.add_exception_handler(grpc.RpcError, _grpc_error)
    app.add_exception_handler(HotfeedError, _hotfeed_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
