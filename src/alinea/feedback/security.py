"""Passwords, browser sessions, API tokens and CSRF tokens.

- Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile: 64 MiB, 3 passes).
- A browser session is a random token in an HttpOnly, SameSite=Lax cookie; the database keeps only its SHA-256, so a
  leaked database does not leak live sessions. Logging out or disabling the user ends it at once.
- An API token (for programs: the loop drives the app through the API) is sent as `Authorization: Bearer <token>`;
  again only its SHA-256 is stored. Tokens carry 256 random bits, so a fast hash is enough (no password stretching).
- CSRF: every HTML form carries a token that is an HMAC of the session cookie under the server's secret (the
  "signed double-submit" pattern); before login, of a random pre-session cookie. A cross-site page can make the
  browser send our cookies but cannot read them, so it cannot compute the token. Cookie-authenticated API calls that
  change data send the same token in the `X-CSRF-Token` header; bearer-token calls need none (no ambient cookie).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

SESSION_COOKIE = "alinea_session"
PRE_SESSION_COOKIE = "alinea_pre"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
TOKEN_PREFIX = "aln_"
MIN_PASSWORD = 8

_hasher = PasswordHasher()


def set_password_hasher(hasher: PasswordHasher) -> None:
    """Replace the hasher (tests use argon2's cheapest parameters; hashes made with any parameters still verify)."""
    global _hasher
    _hasher = hasher


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches; a malformed stored hash counts as a mismatch."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_rules(password: str) -> str | None:
    """Why a new password is refused, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD:
        return f"at least {MIN_PASSWORD} characters"
    if len(password) > 1024:
        return "at most 1024 characters"
    return None


def digest(token: str) -> str:
    """The SHA-256 (hex) under which a session or API token is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token(prefix: str = "") -> str:
    """256 random bits, URL-safe."""
    return prefix + secrets.token_urlsafe(32)


def new_api_token() -> str:
    return new_token(TOKEN_PREFIX)


def csrf_token(secret_key: str, cookie_value: str) -> str:
    """The CSRF token bound to one session (or pre-session) cookie."""
    return hmac.new(secret_key.encode(), b"csrf:" + cookie_value.encode(), hashlib.sha256).hexdigest()


def csrf_valid(secret_key: str, cookie_value: str | None, token: str | None) -> bool:
    if not cookie_value or not token:
        return False
    return hmac.compare_digest(csrf_token(secret_key, cookie_value), token)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user's fields that routes need, and how they proved it."""

    user_id: int
    username: str
    role: str
    locale: str | None
    via: str
    """'cookie' (a browser session) or 'token' (an API token)."""
    cookie: str | None = None
    """The session cookie's value (to derive the CSRF token), when via == 'cookie'."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
