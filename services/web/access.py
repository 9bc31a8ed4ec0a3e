"""Who may see the dashboard: pure checks (the shell reads the environment and the request).

Loopback (127.0.0.1, ::1, localhost) is open to the user's own browser; any other bind address needs a token,
refused at start without one. With a token every request must carry it: ``Authorization: Bearer <token>``, or
``?token=<token>`` (the link a person opens: the answer sets it as a cookie, HttpOnly and SameSite=Strict, which the
page's own requests then carry), compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

MIN_TOKEN_CHARS = 16
COOKIE = "oracle_web_token"


class AccessError(ValueError):
    """The dashboard cannot start as configured (the message says why and what to set)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def required_token(host: str, token_env: str, env: dict[str, str]) -> str:
    """The token requests must carry ("" on loopback without one); AccessError when ``host`` is not loopback and
    ``token_env`` holds no token, or a token too short to be one."""
    token = env.get(token_env, "")
    if token and len(token) < MIN_TOKEN_CHARS:
        raise AccessError(f"web: {token_env} holds {len(token)} characters; a token needs {MIN_TOKEN_CHARS} at least")
    if not token and not is_loopback(host):
        raise AccessError(f"web: host {host} is not loopback: set a token in the environment variable {token_env} "
                          f"(web.token_env), e.g. {token_env}=$(openssl rand -hex 24)")
    return token


def query_token(query: str) -> str:
    """The ``token`` of a query string ("" when absent, repeated or the query is malformed)."""
    try:
        values = parse_qs(query, max_num_fields=8).get("token", [])
    except ValueError:
        return ""
    return values[0] if len(values) == 1 else ""


def cookie_token(cookie_header: str | None) -> str:
    if not cookie_header:
        return ""
    jar = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return ""
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else ""


def authorized(token: str, authorization: str | None, query: str, cookie_header: str | None = None) -> bool:
    """Whether a request carries ``token`` (always true when there is none to carry)."""
    if not token:
        return True
    given = ""
    if authorization and authorization.startswith("Bearer "):
        given = authorization[len("Bearer "):].strip()
    given = given or query_token(query) or cookie_token(cookie_header)
    return hmac.compare_digest(given.encode(), token.encode())
