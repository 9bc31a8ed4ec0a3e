"""The simulator's session requests: version, application and account authorisation, token refresh, and the
server-side ends of a session (token expiry or invalidation, account and client disconnects).

A mixin of SimServer (server.py): it uses the server's sessions, account, token registry and `_send`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from services.connector.ctrader import schemas as proto
from services.connector.sim.account import SimError
from services.connector.sim.auth import VALID

if TYPE_CHECKING:
    from services.connector.sim.connections import Session

log = logging.getLogger(__name__)
oa = proto.oa


class SessionOps:
    def _on_version(self, s: Session, msg: Any, cid: str) -> None:
        self._send(s, oa.ProtoOAVersionRes(version="oracle-sim-1"), cid)

    def _on_app_auth(self, s: Session, msg: Any, cid: str) -> None:
        if s.app_authed:
            raise SimError("CH_CLIENT_ALREADY_AUTHENTICATED", "application already authorised")
        if msg.clientId != self.config.client_id or msg.clientSecret != self.config.client_secret:
            raise SimError("CH_CLIENT_AUTH_FAILURE", "invalid client id or secret")
        s.app_authed = True
        self._send(s, oa.ProtoOAApplicationAuthRes(), cid)

    def _check_token(self, access_token: str) -> None:
        status = self.tokens.status(access_token, self.now_ms)
        if status != VALID:
            raise SimError("CH_ACCESS_TOKEN_INVALID", f"access token {status}")

    def _on_accounts(self, s: Session, msg: Any, cid: str) -> None:
        self._check_token(msg.accessToken)
        res = oa.ProtoOAGetAccountListByAccessTokenRes(accessToken=msg.accessToken)
        res.ctidTraderAccount.add(
            ctidTraderAccountId=self.account.account_id, isLive=False, traderLogin=self.config.trader_login
        )
        self._send(s, res, cid)

    def _on_account_auth(self, s: Session, msg: Any, cid: str) -> None:
        self._check_token(msg.accessToken)
        if msg.ctidTraderAccountId != self.account.account_id:
            raise SimError(
                "CH_CTID_TRADER_ACCOUNT_NOT_FOUND",
                f"account {msg.ctidTraderAccountId} not found for this token",
            )
        s.accounts.add(msg.ctidTraderAccountId)
        s.tokens[msg.ctidTraderAccountId] = msg.accessToken
        self._send(s, oa.ProtoOAAccountAuthRes(ctidTraderAccountId=msg.ctidTraderAccountId), cid)

    def _on_refresh_token(self, s: Session, msg: Any, cid: str) -> None:
        new, old, why = self.tokens.refresh(msg.refreshToken, self.now_ms)
        if new is None:
            raise SimError("INVALID_REQUEST", f"refresh refused: {why}")
        self._save_state()
        expires_in = self.tokens.expires_in_s(new.access_token, self.now_ms) or 0
        self._send(s, oa.ProtoOARefreshTokenRes(accessToken=new.access_token, tokenType="bearer",
                                                expiresIn=expires_in, refreshToken=new.refresh_token), cid)
        self.invalidate_token(old, "the access token was refreshed")

    # ---- the server ends sessions
    def invalidate_token(self, access_token: str, reason: str) -> int:
        """Sessions authorised with `access_token` lose their account (ProtoOAAccountsTokenInvalidatedEvent)."""
        told = 0
        for sess in list(self.sessions):
            gone = [a for a, t in sess.tokens.items() if t == access_token]
            if not gone:
                continue
            for acct in gone:
                self._deauthorise(sess, acct)
            self._send(sess, oa.ProtoOAAccountsTokenInvalidatedEvent(ctidTraderAccountIds=gone, reason=reason))
            told += 1
        return told

    def expire_tokens(self) -> int:
        """Every access token expires now (control `expire_token`); the sessions using one are told."""
        told = 0
        for access in self.tokens.expire(self.now_ms):
            self._announced.add(access)
            told += self.invalidate_token(access, "Access Token is expired")
        self._save_state()
        return told

    def revoke_tokens(self) -> int:
        """Every token is revoked (control `revoke_token`): access and refresh tokens stop working."""
        told = sum(self.invalidate_token(a, "Access Token was revoked") for a in self.tokens.revoke())
        self._save_state()
        return told

    def check_token_expiry(self) -> None:
        """On the server's clock: sessions using an access token that just expired are told."""
        if self._next_expiry_ms is not None and self.now_ms < self._next_expiry_ms:
            return
        for access in self.tokens.due_expiry(self.now_ms, self._announced):
            self._announced.add(access)
            self.invalidate_token(access, "Access Token is expired")
        pending = [t.expires_ms for a, t in self.tokens.tokens.items()
                   if t.expires_ms is not None and a not in self._announced]
        self._next_expiry_ms = min(pending, default=None)

    def account_disconnect(self) -> int:
        """The server drops every session's account (ProtoOAAccountDisconnectEvent): they must authorise again."""
        told = 0
        for sess in list(self.sessions):
            if self.account.account_id in sess.accounts:
                self._deauthorise(sess, self.account.account_id)
                self._send(sess, oa.ProtoOAAccountDisconnectEvent(ctidTraderAccountId=self.account.account_id))
                told += 1
        return told

    def client_disconnect(self, reason: str) -> int:
        """The server cancels every connection (ProtoOAClientDisconnectEvent, then the socket closes)."""
        gone = list(self.sessions)
        for sess in gone:
            self._send(sess, oa.ProtoOAClientDisconnectEvent(reason=reason))
            self._drop_later(sess)
        return len(gone)

    @staticmethod
    def _deauthorise(sess: Session, account_id: int) -> None:
        sess.accounts.discard(account_id)
        sess.tokens.pop(account_id, None)
        sess.spots.clear()
        sess.trendbars.clear()
