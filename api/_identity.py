"""Who the viewer is: the user of a signed token, never a query parameter or a body field.

Apps send ``Authorization: Bearer <JWT>`` signed by the login service: HS256 with the shared
``HOTFEED_GATEWAY_JWT_SECRET``, or RS256/ES256 verified with the PEM public key in
``HOTFEED_GATEWAY_JWT_PUBLIC_KEY_FILE``. The token must carry ``sub`` (the user id), ``exp``
and the gateway's audience (``HOTFEED_GATEWAY_JWT_AUDIENCE``); the issuer is checked when
one is set. No header means a logged-out viewer. A gateway with no key refuses every token,
so nobody can be anybody by default.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Header, Request

from recommender.errors import ConfigError, Unauthenticated
from recommender.events import MAX_ID_LENGTH
from recommender.settings import GatewaySettings, Settings

__all__ = ["DEV_ADMIN", "TokenVerifier", "admin_identity", "service_token_check", "viewer_id"]

# The admin name recorded in dev mode with no admin tokens configured (everything passes there).
DEV_ADMIN = "dev-mode"


@dataclass(frozen=True)
class TokenVerifier:
    """Checks viewer tokens against the gateway's key, audience and issuer."""

    key: str
    algorithms: tuple[str, ...]
    audience: str
    issuer: str

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> "TokenVerifier | None":
        """Return the verifier for the configured key, or None when no key is configured.

        Raises ConfigError when the public key file cannot be read.
        """
        if settings.jwt_public_key_file is not None:
            try:
                key = settings.jwt_public_key_file.read_text()
            except OSError as exc:
                raise ConfigError(
                    f"HOTFEED_GATEWAY_JWT_PUBLIC_KEY_FILE={str(settings.jwt_public_key_file)!r} cannot be read: {exc}"
                ) from None
            return cls(key, ("RS256", "ES256"), settings.jwt_audience, settings.jwt_issuer)
        if settings.jwt_secret:
            return cls(settings.jwt_secret, ("HS256",), settings.jwt_audience, settings.jwt_issuer)
        return None

    def user_of(self, token: str) -> str:
        """Return the token's user id. Raises Unauthenticated saying what is wrong with the token."""
        try:
            claims = jwt.decode(
                token, self.key, algorithms=list(self.algorithms), audience=self.audience,
                issuer=self.issuer or None, options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired; sign in again") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"the token is not for this service (audience must be {self.audience!r})") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the token comes from an issuer this gateway does not trust") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("the token is malformed or its signature does not verify") from None
        user = claims["sub"]
        if not isinstance(user, str) or not 0 < len(user) <= MAX_ID_LENGTH:
            raise Unauthenticated(f"the token's 'sub' must be a user id of 1..{MAX_ID_LENGTH} characters")
        return user


def viewer_id(request: Request) -> str | None:
    """Return the signed-in user of the request, or None for a logged-out viewer (FastAPI dependency).

    Raises Unauthenticated for a bad token, or for any token when the gateway has no key.
    """
    header = request.headers.get("authorization", "")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send the user's token as 'Authorization: Bearer <token>'")
    verifier: TokenVerifier | None = request.app.state.token_verifier
    if verifier is None:
        raise Unauthenticated("this gateway accepts no user tokens; send the request without Authorization "
                              "for a logged-out feed")
    return verifier.user_of(token.strip())


def service_token_check(settings: Settings, *, what: str):
    """Return a FastAPI dependency that lets a request through only with the service token
    (``Authorization: Bearer <HOTFEED_SERVER_SERVICE_TOKEN>``); with no token set (development
    mode only: the gateway refuses to start otherwise) everything passes."""
    token = settings.server.service_token

    def check(authorization: Annotated[str | None, Header()] = None) -> None:
        if not token:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise Unauthenticated(f"{what} need the header `Authorization: Bearer <service token>`")
        # Constant-time: the token guards profiles and the catalogue.
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise Unauthenticated("the bearer token is not the service token; use HOTFEED_SERVER_SERVICE_TOKEN's value")

    return check


def admin_identity(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """Return the name of the admin whose token (``Authorization: Bearer <token>``, one per
    person in HOTFEED_GATEWAY_ADMIN_TOKENS) the request carries (FastAPI dependency).

    Raises Unauthenticated for any other request. With no admin tokens (development mode
    only: the gateway refuses to start otherwise) every request passes as ``DEV_ADMIN``.
    """
    identities: dict[str, str] = request.app.state.admin_identities
    if not identities:
        return DEV_ADMIN
    scheme, _, given = (authorization or "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise Unauthenticated("admin endpoints need the header `Authorization: Bearer <your admin token>`")
    # Every token is compared, in constant time, so timing tells nothing about which one is close.
    name = None
    for token, who in identities.items():
        if hmac.compare_digest(given.encode(), token.encode()):
            name = who
    if name is None:
        raise Unauthenticated("the bearer token is no admin's token; ask for yours (HOTFEED_GATEWAY_ADMIN_TOKENS)")
    return name
