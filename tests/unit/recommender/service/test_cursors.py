"""Signed page cursors: round trip, forgery, malformed and oversized tokens."""

from __future__ import annotations

import pytest

from recommender.errors import InvalidRequest
from recommender.service.cursors import Cursor, decode_cursor, encode_cursor


def test_a_cursor_round_trips():
    cursor = Cursor("feed-1", 3, "v7")
    assert decode_cursor(encode_cursor(cursor, secret="s"), secret="s") == cursor


def test_a_cursor_signed_with_another_secret_is_rejected():
    token = encode_cursor(Cursor("feed-1", 1, "v1"), secret="theirs")
    with pytest.raises(InvalidRequest, match="forged"):
        decode_cursor(token, secret="ours")


def test_an_edited_cursor_is_rejected():
    token = encode_cursor(Cursor("feed-1", 1, "v1"), secret="s")
    body, sig = token.split(".")
    edited = encode_cursor(Cursor("feed-1", 9, "v1"), secret="s").split(".")[0] + "." + sig
    with pytest.raises(InvalidRequest, match="forged"):
        decode_cursor(edited, secret="s")


@pytest.mark.parametrize("token", ["", "no-dot", "!!!.???", "x" * 513])
def test_malformed_cursors_are_rejected_with_the_fix(token):
    with pytest.raises(InvalidRequest, match="without a cursor"):
        decode_cursor(token, secret="s")


@pytest.mark.parametrize("token", ["abc.é", "é.é", "abc.\x00"])
def test_non_ascii_cursors_are_invalid_not_internal_errors(token):
    with pytest.raises(InvalidRequest, match="without a cursor"):
        decode_cursor(token, secret="s")


def test_a_signed_token_that_holds_no_feed_position_is_invalid():
    import base64
    import hashlib
    import hmac

    payload = b"not json at all"
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    sig = base64.urlsafe_b64encode(hmac.new(b"s", payload, hashlib.sha256).digest()[:16]).decode().rstrip("=")
    with pytest.raises(InvalidRequest, match="does not hold a feed position"):
        decode_cursor(f"{body}.{sig}", secret="s")
