"""The connector's loop sleeps until its next timer when nothing is out, and turns every 100 ms while anything is
(service.py `poll_timeout_ms`)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from common import bus, config
from services.connector.service import BUSY_POLL_MS, QUIET_POLL_MS, TOKEN_LOOK_S, Connector


@pytest.fixture
def connector(tmp_path: Path):
    cfg = config.Config.model_validate({"version": "2", "home": str(tmp_path), "connector": {"publish_grace_s": 0}})
    c = Connector(cfg)
    yield c
    c.on_stop()


def test_the_loop_turns_often_until_the_connection_state_is_said(connector):
    assert not connector._state_said
    assert connector.poll_timeout_ms() == BUSY_POLL_MS


def test_quiet_the_loop_sleeps_until_its_next_timer_at_most_a_second(connector):
    connector._state_said = True  # said by the first turn after the publish grace
    connector._next_token_look = time.monotonic() + TOKEN_LOOK_S
    assert connector.poll_timeout_ms() == QUIET_POLL_MS
    connector._next_token_look = time.monotonic() - 1  # due: the next turn at the busy period at the latest
    assert connector.poll_timeout_ms() == BUSY_POLL_MS


def test_an_event_queued_keeps_the_loop_turning(connector):
    connector._state_said = True
    connector._next_token_look = time.monotonic() + TOKEN_LOOK_S
    connector.bridge.put("an event the drain's limit left")
    assert connector.poll_timeout_ms() == BUSY_POLL_MS
    assert connector.bridge.take_events(10) == ["an event the drain's limit left"]
    assert connector.poll_timeout_ms() == QUIET_POLL_MS


def test_a_request_held_for_the_broker_keeps_the_loop_turning(connector):
    connector._state_said = True
    connector._next_token_look = time.monotonic() + TOKEN_LOOK_S

    async def order() -> None:
        return None

    connector.bridge.defer(order(), lambda r: r, "order", 5.0, hold=True)
    assert connector.poll_timeout_ms() == BUSY_POLL_MS
    connector.bridge.refuse_held(bus.OpError("internal", "not sent"))
    assert connector.poll_timeout_ms() == QUIET_POLL_MS
