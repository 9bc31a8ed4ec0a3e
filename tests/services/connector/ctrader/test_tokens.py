"""The token pair's lifecycle: which pair to start with, when to refresh, the 0600 file."""

from __future__ import annotations

import json
import stat

import pytest

from services.connector.ctrader import tokens
from services.connector.ctrader.tokens import StoredTokens, TokenKeeper, TokenPair, TokenStore

ENV = TokenPair("env-access", "env-refresh")
ENV_FP = tokens.fingerprint("env-access", "env-refresh")
REFRESHED = TokenPair("new-access", "new-refresh", 5_000.0)


@pytest.mark.parametrize(("env", "stored", "use", "writes"), [
    (None, None, None, None),                                                    # nothing at all
    (ENV, None, ENV, StoredTokens(ENV, ENV_FP, "environment")),                  # first start: the environment
    (ENV, StoredTokens(REFRESHED, ENV_FP, "refresh"), REFRESHED, None),          # refreshed since: the file
    (None, StoredTokens(REFRESHED, ENV_FP, "refresh"), REFRESHED, None),         # no environment: the file
    (TokenPair("other", "r2"), StoredTokens(REFRESHED, ENV_FP, "refresh"),       # the operator changed the env
     TokenPair("other", "r2"), StoredTokens(TokenPair("other", "r2"), tokens.fingerprint("other", "r2"),
                                            "environment")),
    (ENV, StoredTokens(REFRESHED, None, "operator"), REFRESHED,                  # handed in before any env seen
     StoredTokens(REFRESHED, ENV_FP, "operator")),
])
def test_the_pair_to_start_with(env, stored, use, writes) -> None:
    assert tokens.choose(env, stored) == (use, writes)


@pytest.mark.parametrize(("pair", "now", "due"), [
    (TokenPair("a", "r", None), 0.0, False),             # expiry unknown: the broker says when it is dead
    (TokenPair("a", "", None), 0.0, False),              # no refresh token: never
    (TokenPair("a", "r", 1_000.0), 0.0, False),          # far from expiry
    (TokenPair("a", "r", 1_000.0), 900.0, True),         # within the margin (100 s)
    (TokenPair("a", "r", 1_000.0), 2_000.0, True),       # expired
])
def test_refresh_is_due_before_expiry(pair, now, due) -> None:
    assert tokens.refresh_due(pair, now, margin_s=100.0) is due


def test_a_pair_never_prints_its_tokens() -> None:
    assert "env-access" not in repr(ENV) and "env-refresh" not in repr(ENV) and "env-access" not in str([ENV])


def test_the_file_is_0600_and_round_trips(tmp_path) -> None:
    store = TokenStore(tmp_path / "data" / "broker-tokens.json")
    stored = StoredTokens(REFRESHED, ENV_FP, "refresh")
    store.save(stored)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.load() == stored
    assert not (tmp_path / "data" / "broker-tokens.json.tmp").exists()


@pytest.mark.parametrize("text", ["", "{", "[]", '{"v": 2, "access_token": "a"}', '{"v": 1}',
                                  '{"v": 1, "access_token": ""}'])
def test_an_unreadable_file_is_an_error_naming_it(tmp_path, text) -> None:
    path = tmp_path / "broker-tokens.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="broker-tokens.json"):
        TokenStore(path).load()


def test_a_refreshed_pair_is_stored_before_it_is_used_and_a_pair_handed_in_is_taken(tmp_path) -> None:
    store = TokenStore(tmp_path / "broker-tokens.json")
    keeper = TokenKeeper.open(ENV, store, now=100.0)
    # a pair handed in is taken as fresh: 30 days from now
    assert keeper.pair == TokenPair("env-access", "env-refresh", 100.0 + tokens.ASSUMED_LIFETIME_S)
    assert json.loads(store.path.read_text())["source"] == "environment"
    keeper.invalid = True
    keeper.adopt_refresh("new-access", "new-refresh", 3_600.0, now=1_000.0)
    assert keeper.pair == TokenPair("new-access", "new-refresh", 4_600.0) and not keeper.invalid
    assert store.load() == StoredTokens(keeper.pair, ENV_FP, "refresh")
    assert TokenKeeper.open(ENV, store, now=2_000.0).pair == keeper.pair  # the next start prefers the file
    assert not keeper.reload(now=2_000.0)  # nothing new
    store.save(StoredTokens(TokenPair("handed-in", "r3"), ENV_FP, "operator"))
    assert keeper.reload(now=2_000.0)
    assert keeper.pair == TokenPair("handed-in", "r3", 2_000.0 + tokens.ASSUMED_LIFETIME_S)


def test_no_pair_anywhere_is_an_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="no broker token"):
        TokenKeeper.open(None, TokenStore(tmp_path / "t.json"), now=0.0)
