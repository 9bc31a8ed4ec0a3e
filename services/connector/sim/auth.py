"""The simulator's OAuth tokens, as a real cTrader server keeps them (pure: the server passes its clock in).

- An access token expires `lifetime_s` after it is issued, on the server's clock (the replay clock): an accelerated
  replay reaches a 30-day expiry in minutes, as an account left running for a month would.
- ``ProtoOARefreshTokenReq`` trades a refresh token for a new pair; the old access token and the old refresh token
  stop working at once (the server then tells the sessions authorised with the old token:
  ``ProtoOAAccountsTokenInvalidatedEvent``).
- Faults: expire or revoke the current access token now; refuse the next refreshes (a revoked application).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

VALID, EXPIRED, UNKNOWN = "valid", "expired", "unknown"


@dataclass
class IssuedToken:
    access_token: str
    refresh_token: str
    expires_ms: int | None  # server time; None = never


@dataclass
class TokenRegistry:
    lifetime_s: int = 2_628_000
    tokens: dict[str, IssuedToken] = field(default_factory=dict)  # by access token
    refresh_refusals: int = 0  # the next this many refreshes are refused (a fault)

    @classmethod
    def initial(cls, access_token: str, refresh_token: str, lifetime_s: int, now_ms: int) -> TokenRegistry:
        reg = cls(lifetime_s)
        reg.tokens[access_token] = IssuedToken(access_token, refresh_token, now_ms + lifetime_s * 1000)
        return reg

    def status(self, access_token: str, now_ms: int) -> str:
        tok = self.tokens.get(access_token)
        if tok is None:
            return UNKNOWN
        return EXPIRED if tok.expires_ms is not None and now_ms >= tok.expires_ms else VALID

    def expires_in_s(self, access_token: str, now_ms: int) -> int | None:
        tok = self.tokens.get(access_token)
        if tok is None or tok.expires_ms is None:
            return None
        return max(0, (tok.expires_ms - now_ms) // 1000)

    def refresh(self, refresh_token: str, now_ms: int) -> tuple[IssuedToken | None, str, str]:
        """(new pair, the access token it replaces, "") or (None, "", error description)."""
        if self.refresh_refusals > 0:
            self.refresh_refusals -= 1
            return None, "", "the refresh token was revoked"
        old = next((t for t in self.tokens.values() if t.refresh_token == refresh_token), None)
        if old is None:
            return None, "", "unknown or already used refresh token"
        del self.tokens[old.access_token]
        return self.issue(now_ms), old.access_token, ""

    def issue(self, now_ms: int) -> IssuedToken:
        """A new pair, as the OAuth flow in a browser gives one (what a person hands in after a revocation)."""
        new = IssuedToken("sim-" + secrets.token_hex(12), "simr-" + secrets.token_hex(12),
                          now_ms + self.lifetime_s * 1000)
        self.tokens[new.access_token] = new
        return new

    def expire(self, now_ms: int) -> list[str]:
        """Every access token expires now (the refresh tokens still work); returns the expired ones."""
        for tok in self.tokens.values():
            tok.expires_ms = now_ms
        return list(self.tokens)

    def revoke(self) -> list[str]:
        """Every token is revoked: access and refresh tokens stop working; returns the revoked access tokens."""
        gone = list(self.tokens)
        self.tokens.clear()
        return gone

    def due_expiry(self, now_ms: int, announced: set[str]) -> list[str]:
        """Access tokens that expired by `now_ms` and were not announced yet."""
        return [a for a, t in self.tokens.items()
                if t.expires_ms is not None and now_ms >= t.expires_ms and a not in announced]

    def to_json(self) -> dict[str, Any]:
        return {"lifetime_s": self.lifetime_s,
                "tokens": [{"access_token": t.access_token, "refresh_token": t.refresh_token,
                            "expires_ms": t.expires_ms} for t in self.tokens.values()]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenRegistry:
        reg = cls(int(data["lifetime_s"]))
        for t in data["tokens"]:
            tok = IssuedToken(str(t["access_token"]), str(t["refresh_token"]), t.get("expires_ms"))
            reg.tokens[tok.access_token] = tok
        return reg
