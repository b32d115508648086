"""The one exception tree of hotfeed.

    HotfeedError                 base: every error we raise on purpose
    ├── InvalidRequest           a caller sent something malformed (gRPC INVALID_ARGUMENT, HTTP 400)
    │   └── ProfileRejected      a score profile failed validation (HTTP 422)
    ├── Unauthenticated          a call lacks a token or a user it needs (UNAUTHENTICATED, HTTP 401)
    ├── RateLimited              a caller sent more than its share (RESOURCE_EXHAUSTED, HTTP 429)
    ├── NotFound                 an id, index, profile or file does not exist (NOT_FOUND, HTTP 404)
    ├── ConfigError              settings or a checkpoint are unusable (fix the config, then restart)
    ├── ServiceSetupError        a local service could not be installed or started
    ├── EngineUnavailable        the search engine is down, timed out or refused the request shape
    └── StoreUnavailable         Redis is down or timed out

Messages name the field, quote the bad value with ``!r`` and say what to do. Only the
fallback path catches the ``*Unavailable`` classes; everything else reaches the caller.
"""

from __future__ import annotations

__all__ = [
    "HotfeedError",
    "InvalidRequest",
    "ProfileRejected",
    "Unauthenticated",
    "RateLimited",
    "NotFound",
    "ConfigError",
    "ServiceSetupError",
    "EngineUnavailable",
    "StoreUnavailable",
]


class HotfeedError(Exception):
    """Raised when hotfeed refuses or cannot do something; the message says why and what to do."""


class InvalidRequest(HotfeedError):
    """Raised when a request or input file has a wrong type, range or shape."""


class ProfileRejected(InvalidRequest):
    """Raised when a score profile fails schema or reference validation.

    ``problems`` holds one ``(location, message)`` pair per problem (``("components[0].weight",
    "...")``); a problem of the whole document (YAML syntax, size) is located at ``"profile"``.
    """

    def __init__(self, message: str, *, problems: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.problems = problems or (("profile", message),)


class Unauthenticated(HotfeedError):
    """Raised when a call needs a service token or a user id and has none."""


class RateLimited(HotfeedError):
    """Raised when a caller exceeds its rate; ``retry_after_s`` says when it may send again."""

    def __init__(self, message: str, *, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotFound(HotfeedError):
    """Raised when a named thing (item, user, index, profile, file) does not exist."""


class ConfigError(HotfeedError):
    """Raised when settings or an artifact on disk cannot be used as configured."""


class ServiceSetupError(HotfeedError):
    """Raised when a local service (Redis, OpenSearch, Elasticsearch) cannot be installed or started."""


class EngineUnavailable(HotfeedError):
    """Raised when the search engine cannot be reached, times out or fails the request."""


class StoreUnavailable(HotfeedError):
    """Raised when Redis cannot be reached or times out."""
