"""The broker behind the port, chosen by `broker.type`: a new broker is a new adapter registered here, not an `if`
in the connector service.

`sim` and `ctrader` are both the cTrader adapter: the bundled simulator speaks the real Open API protocol, so the
adapter's code runs in every demo and test. The adapter's token pair is kept in `<data_dir>/<broker.token_file>`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from common.config import Config
from services.connector.port import BrokerPort


class SettingsError(ValueError):
    """The configuration or the environment cannot make a broker; the message says what to fix."""


def _ctrader(cfg: Config, env: Mapping[str, str]) -> Any:
    from services.connector.ctrader import settings, tokens
    from services.connector.ctrader.client import CTraderBroker

    try:
        conf, env_pair = settings.broker_config(cfg, env)
    except settings.SettingsError as exc:
        raise SettingsError(str(exc)) from None
    store = tokens.TokenStore(token_path(cfg))
    try:
        keeper = tokens.TokenKeeper.open(env_pair, store, time.time())
    except (ValueError, OSError) as exc:
        raise SettingsError(str(exc)) from None
    return CTraderBroker(conf, keeper)


BROKERS: dict[str, Callable[[Config, Mapping[str, str]], BrokerPort]] = {"ctrader": _ctrader, "sim": _ctrader}


def token_path(cfg: Config) -> Path:
    return cfg.path(cfg.data_dir) / cfg.broker.token_file


def make_broker(cfg: Config, env: Mapping[str, str]) -> BrokerPort:
    """The configured broker; SettingsError (what to fix) when the configuration or environment cannot make it."""
    try:
        build = BROKERS[cfg.broker.type]
    except KeyError:
        raise SettingsError(f"unknown broker.type {cfg.broker.type!r}; known: {', '.join(sorted(BROKERS))}") from None
    return build(cfg, env)
