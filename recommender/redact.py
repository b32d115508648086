"""Credentials never reach a message or a log line: the one place that masks them."""

from __future__ import annotations

import re

__all__ = ["redact_url", "redact"]

# scheme://user:password@host -> scheme://user:***@host (and a bare password: ://:pw@).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]*)@")


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (the user name stays, for context)."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def redact(text: object) -> str:
    """Return ``str(text)`` with the password of every URL in it masked."""
    return redact_url(str(text))
