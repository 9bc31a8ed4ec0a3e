"""The broker client's settings from the system configuration and the environment (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Mapping

from common.config import Config
from services.connector.broker import BrokerConfig

CREDENTIAL_VARS = ("CTRADER_CLIENT_ID", "CTRADER_CLIENT_SECRET", "CTRADER_ACCESS_TOKEN", "CTRADER_ACCOUNT_ID")


class SettingsError(ValueError):
    """The configuration or the environment cannot make a broker connection; the message says what to fix."""


def broker_config(cfg: Config, env: Mapping[str, str]) -> BrokerConfig:
    """The simulator (plain TCP or its self-signed TLS) or real cTrader (verified TLS, credentials from env)."""
    b = cfg.broker
    common = {
        "request_timeout": b.request_timeout_s,
        "order_timeout": b.order_timeout_s,
        "heartbeat_interval": b.heartbeat_interval_s,
    }
    if b.type == "sim":
        s = b.sim
        return BrokerConfig(
            host=s.host,
            port=s.port,
            tls=s.tls,
            verify=False,  # the simulator's certificate is self-signed, made at its start
            client_id=s.client_id,
            client_secret=s.client_secret,
            access_token=s.access_token,
            account_id=s.account_id,
            **common,
        )
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
    return BrokerConfig(
        host=host,
        port=b.port,
        tls=True,
        verify=True,
        ca_file=str(cfg.path(b.ca_file)) if b.ca_file else None,
        client_id=env["CTRADER_CLIENT_ID"],
        client_secret=env["CTRADER_CLIENT_SECRET"],
        access_token=env["CTRADER_ACCESS_TOKEN"],
        account_id=account_id,
        **common,
    )


def describe(bc: BrokerConfig) -> dict:
    """What may be shown about a broker connection (never a credential)."""
    return {"host": bc.host, "port": bc.port, "tls": bc.tls, "verify": bc.verify, "account_id": bc.account_id}
