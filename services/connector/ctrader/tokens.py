"""The Open API token pair's lifecycle: which pair to use, when to refresh it, and where it is kept.

An access token lasts about 30 days; ``ProtoOARefreshTokenReq`` trades the refresh token for a new pair (the
refresh token changes too, and the old access token is invalidated). The pair in use is kept in a 0600 file under
the data dir, written (and fsynced) before the new access token is used, so a crash right after a refresh never
loses the only valid refresh token. At start the file is preferred to the environment, unless the environment
holds a pair the file has not seen (the operator changed it): then the environment wins.

Pure decisions (`choose`, `refresh_due`) take values; `TokenStore` is the file. Tokens are never logged: only a
short fingerprint of them is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from common import durable

TOKEN_FILE_VERSION = 1
# how long a pair handed in (environment, operator) is taken to last: an access token lasts about 30 days from its
# issue, and a pair is normally handed in fresh. An older one fails earlier: the broker says so and we refresh then.
ASSUMED_LIFETIME_S = 2_628_000


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str = ""
    expires_at: float | None = None  # broker time (Unix s) the access token stops working; None: not known

    def __repr__(self) -> str:  # never print a token
        return f"TokenPair(access={fingerprint(self.access_token)}, expires_at={self.expires_at})"


@dataclass(frozen=True)
class StoredTokens:
    pair: TokenPair
    env_fingerprint: str | None  # the environment pair this file superseded (None: not known)
    source: str  # environment | refresh | operator


def fingerprint(*secrets: str) -> str:
    """A short, one-way name for secrets: safe to log and to compare."""
    return hashlib.sha256("\0".join(secrets).encode()).hexdigest()[:12]


def choose(env: TokenPair | None, stored: StoredTokens | None) -> tuple[TokenPair | None, StoredTokens | None]:
    """The pair to start with, and what to write to the file (None: leave it).

    - no file: the environment's pair (recorded, so a later refresh knows which environment pair it replaced);
    - a file and an environment pair it has seen (or none): the file's pair (it is newer: refreshed or handed in);
    - a file and an environment pair it has not seen: the operator changed the environment, which wins.
    """
    env_fp = fingerprint(env.access_token, env.refresh_token) if env is not None else None
    if stored is None:
        if env is None:
            return None, None
        return env, StoredTokens(env, env_fp, "environment")
    if env is None or stored.env_fingerprint == env_fp:
        return stored.pair, None
    if stored.env_fingerprint is None:  # handed in before any environment pair was seen: adopt this one as seen
        return stored.pair, replace(stored, env_fingerprint=env_fp)
    return env, StoredTokens(env, env_fp, "environment")


def refresh_due(pair: TokenPair, now: float, margin_s: float) -> bool:
    """Refresh when the access token expires within `margin_s` (an unknown expiry: never on our own; the broker
    says when it is dead). Never without a refresh token."""
    if not pair.refresh_token or pair.expires_at is None:
        return False
    return pair.expires_at - now <= margin_s


def dated(pair: TokenPair, now: float) -> TokenPair:
    """A pair handed in without an expiry is taken as fresh (ASSUMED_LIFETIME_S from `now`)."""
    return pair if pair.expires_at is not None else replace(pair, expires_at=now + ASSUMED_LIFETIME_S)


def refreshed(old: StoredTokens | None, access: str, refresh: str, expires_in_s: float, now: float) -> StoredTokens:
    """The file's content after a refresh (the environment pair it superseded carries over)."""
    pair = TokenPair(access, refresh, now + expires_in_s)
    return StoredTokens(pair, old.env_fingerprint if old else None, "refresh")


class TokenStore:
    """The 0600 JSON file holding the pair in use (I/O)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> StoredTokens | None:
        """The stored pair; None when there is no file. ValueError (naming the file) when it is unreadable."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(f"token file {self.path} is unreadable: {exc}") from None
        try:
            if raw.get("v") != TOKEN_FILE_VERSION:
                raise ValueError(f"version {raw.get('v')!r}")
            exp = raw.get("expires_at")
            pair = TokenPair(str(raw["access_token"]), str(raw.get("refresh_token") or ""),
                             float(exp) if exp is not None else None)
            if not pair.access_token:
                raise ValueError("empty access_token")
            return StoredTokens(pair, raw.get("env_fingerprint"), str(raw.get("source") or "file"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"token file {self.path} is not a token file: {exc}") from None

    def save(self, stored: StoredTokens) -> None:
        """Atomically, mode 0600 from its creation (never readable by others, even for a moment)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"v": TOKEN_FILE_VERSION, **asdict(stored.pair), "env_fingerprint": stored.env_fingerprint,
                "source": stored.source}
        durable.write_atomic(self.path, json.dumps(data, sort_keys=True), mode=0o600)

    def stamp(self) -> tuple[int, int] | None:
        """(mtime ns, size) of the file, to notice a pair handed in while running; None without a file."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size


class TokenKeeper:
    """The pair in use, and the store it is kept in (None: memory only, for tests and tools)."""

    def __init__(self, pair: TokenPair, store: TokenStore | None = None, stored: StoredTokens | None = None) -> None:
        self.pair = pair
        self.store = store
        self._stored = stored
        self.invalid = False  # the broker said the access token no longer works: refresh before using it

    @classmethod
    def open(cls, env: TokenPair | None, store: TokenStore, now: float) -> TokenKeeper:
        """From the environment's pair and the file (see `choose`); ValueError when there is neither."""
        stored = store.load()
        pair, write = choose(env, stored)
        if pair is None:
            raise ValueError(f"no broker token: none in the environment and no token file {store.path}")
        if pair.expires_at is None:
            pair = dated(pair, now)
            write = replace(write or stored, pair=pair)  # type: ignore[arg-type]
        if write is not None:
            store.save(write)
            stored = write
        return cls(pair, store, stored)

    def adopt_refresh(self, access: str, refresh: str, expires_in_s: float, now: float) -> None:
        """Keep a refreshed pair: written to the file first, then used."""
        stored = refreshed(self._stored, access, refresh, expires_in_s, now)
        if self.store is not None:
            self.store.save(stored)
        self._stored, self.pair, self.invalid = stored, stored.pair, False

    def reload(self, now: float) -> bool:
        """Take the file's pair when it differs from the one in use (handed in while running). True if changed."""
        if self.store is None:
            return False
        stored = self.store.load()
        if stored is None or stored.pair == self.pair:
            return False
        if stored.pair.expires_at is None:
            stored = replace(stored, pair=dated(stored.pair, now))
            self.store.save(stored)
        self._stored, self.pair, self.invalid = stored, stored.pair, False
        return True
