"""Page cursors: opaque, signed tokens naming a saved feed and how far it was served.

A cursor is ``base64url(json) + "." + hmac``; the HMAC (SHA-256 with the server's cursor
secret, truncated to 16 bytes) makes a forged or edited cursor detectable, so a client
cannot read another user's feed or jump the offset.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from recommender.errors import InvalidRequest

__all__ = ["Cursor", "encode_cursor", "decode_cursor", "MAX_CURSOR_LENGTH"]

MAX_CURSOR_LENGTH = 512
_RESTART = "send the request without a cursor to start from the first page"


@dataclass(frozen=True)
class Cursor:
    feed_id: str
    page: int
    profile_version: str


def _sign(payload: bytes, secret: str) -> str:
    digest = hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def encode_cursor(cursor: Cursor, *, secret: str) -> str:
    """Return the signed token of a cursor."""
    payload = json.dumps({"f": cursor.feed_id, "p": cursor.page, "v": cursor.profile_version},
                         separators=(",", ":")).encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{body}.{_sign(payload, secret)}"


def decode_cursor(token: str, *, secret: str) -> Cursor:
    """Return the cursor a token carries.

    Raises InvalidRequest when the token is too long, malformed or not signed by this secret.
    """
    if len(token) > MAX_CURSOR_LENGTH:
        raise InvalidRequest(f"cursor of {len(token)} characters is too long to be ours; {_RESTART}")
    body, _, signature = token.partition(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (ValueError, TypeError):
        raise InvalidRequest(f"cursor {token[:40]!r} is malformed; {_RESTART}") from None
    # Bytes, not text: compare_digest refuses non-ASCII text with a TypeError.
    if not signature or not hmac.compare_digest(signature.encode("utf-8", "replace"), _sign(payload, secret).encode()):
        raise InvalidRequest(f"cursor {token[:40]!r} is malformed or forged; {_RESTART}")
    try:
        data = json.loads(payload)
        return Cursor(feed_id=str(data["f"]), page=int(data["p"]), profile_version=str(data["v"]))
    except (ValueError, TypeError, KeyError):
        # Signed by our secret yet not ours: a leaked secret or an old format; either way, restart.
        raise InvalidRequest(f"cursor {token[:40]!r} does not hold a feed position; {_RESTART}") from None
