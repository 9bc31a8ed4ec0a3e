"""Where messages go: a generic webhook (JSON with the message's id, text and notices) or the Telegram preset
(``POST <telegram_api>/bot<token>/sendMessage`` with ``chat_id`` and ``text``; the message's id on its last line).
Pure: the secrets are passed in (read from the environment by the shell); a request's ``label`` is what may be
logged (never the URL: it holds the token or the webhook's secret path).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from common import config


class SinkError(ValueError):
    """The sink cannot be set up (a variable missing): the message names the key and the variable."""


@dataclass(frozen=True, slots=True)
class Sink:
    kind: str  # webhook | telegram
    url: str  # secret: never logged
    chat_id: str = ""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    body: bytes
    headers: dict[str, str]
    label: str  # for logs


def sink_from(cfg: config.Config, env: dict[str, str]) -> Sink | None:
    """The configured sink (None: ``sink: none``); SinkError naming every missing variable."""
    n = cfg.notifier
    errors = config.notifier_env_errors(cfg, env)
    if errors:
        raise SinkError("; ".join(errors))
    if n.sink == "webhook":
        return Sink("webhook", env[n.webhook_url_env].strip())
    if n.sink == "telegram":
        token = env[n.token_env].strip()
        return Sink("telegram", f"{n.telegram_api.rstrip('/')}/bot{token}/sendMessage", env[n.chat_id_env].strip())
    return None


def request_for(sink: Sink, message_id: str, text: str, payload: dict[str, Any]) -> HttpRequest:
    headers = {"Content-Type": "application/json", "User-Agent": "oracle-trader-notifier",
               "Idempotency-Key": message_id}
    if sink.kind == "telegram":
        body = {"chat_id": sink.chat_id, "text": f"{text}\n[id {message_id}]", "disable_web_page_preview": True}
        return HttpRequest(sink.url, json.dumps(body).encode(), headers, "telegram sendMessage")
    return HttpRequest(sink.url, json.dumps(payload).encode(), headers, "webhook")
