"""The cTrader adapter's settings from the system configuration and the environment (pure: no I/O).

`broker.type: ctrader` is a real account (verified TLS, credentials from the environment only); `broker.type: sim`
is the bundled simulator, which speaks the same protocol (its own credentials, from `broker.sim`; TLS verified
against the certificate it keeps in the data dir).
"""

from __future__ import annotations

from collections.abc import Mapping

from common import preflight
from common.config import Config
from services.connector.ctrader.client import CTraderConfig
from services.connector.ctrader.tokens import TokenPair

CREDENTIAL_VARS = preflight.CTRADER_CREDENTIALS  # checked before the process starts too (common/preflight.py)
REFRESH_VAR = preflight.CTRADER_REFRESH


class SettingsError(ValueError):
    """The configuration or the environment cannot make a broker connection; the message says what to fix."""


def broker_config(cfg: Config, env: Mapping[str, str]) -> tuple[CTraderConfig, TokenPair]:
    """The connection's settings and the token pair the environment (or the simulator's settings) gives."""
    b = cfg.broker
    common = {
        "request_timeout": b.request_timeout_s,
        "order_timeout": b.order_timeout_s,
        "heartbeat_interval": b.heartbeat_interval_s,
        "token_refresh_margin_s": b.token_refresh_margin_s,
    }
    if b.type == "sim":
        s = b.sim
        conf = CTraderConfig(
            host=s.host, port=s.port, tls=s.tls,
            verify=s.tls,  # its self-signed certificate, trusted explicitly, verified like a real server's
            ca_file=str(cfg.path(cfg.data_dir) / s.cert_file) if s.tls else None,
            client_id=s.client_id, client_secret=s.client_secret, account_id=s.account_id, **common,
        )
        return conf, TokenPair(s.access_token, s.refresh_token)
    missing = [v for v in CREDENTIAL_VARS if not env.get(v)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise SettingsError(f"broker.type is ctrader but {', '.join(missing)} {verb} not set in the environment")
    try:
        account_id = int(env["CTRADER_ACCOUNT_ID"])
    except ValueError:
        raise SettingsError("CTRADER_ACCOUNT_ID must be the numeric ctidTraderAccountId (not the login)") from None
    host = b.hosts.get(b.environment)
    if not host:
        raise SettingsError(f"broker.hosts has no host for broker.environment {b.environment!r}")
    conf = CTraderConfig(
        host=host, port=b.port, tls=True, verify=True,
        ca_file=str(cfg.path(b.ca_file)) if b.ca_file else None,
        client_id=env["CTRADER_CLIENT_ID"], client_secret=env["CTRADER_CLIENT_SECRET"], account_id=account_id,
        **common,
    )
    return conf, TokenPair(env["CTRADER_ACCESS_TOKEN"], env.get(REFRESH_VAR, ""))
