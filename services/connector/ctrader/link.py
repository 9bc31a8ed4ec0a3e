"""The current Open API session as the adapter's parts see it: one request path, the account, readiness, events.

The client (client.py) replaces the transport at each (re)connection; providers, data and execution only call
`request` / `send` and never hold a transport themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from google.protobuf.message import Message

from services.connector.ctrader.requests_wire import Encoded
from services.connector.ctrader.transport import ConnectionClosed, ErrorResponse, RequestTimeout, Transport
from services.connector.port import BrokerConnectionError, BrokerRequestError, BrokerTimeout


class Link:
    def __init__(self, ready_timeout: float) -> None:
        self.transport: Transport | None = None
        self.account_id: int | None = None
        self.ready = asyncio.Event()  # the session is authorised, reconciled and subscribed
        self.ready_timeout = ready_timeout
        self.refused = ""  # the broker refused the credentials and a person must act: nobody waits for a session
        self._refusal = asyncio.Event()
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def is_open(self) -> bool:
        return self.transport is not None and self.transport.is_open

    async def request(self, msg: Message, timeout: float | None = None) -> Any:
        tr = self.transport
        if tr is None or not tr.is_open:
            raise BrokerConnectionError("not connected")
        try:
            return await tr.request(msg, timeout)
        except ConnectionClosed as exc:
            raise BrokerConnectionError(str(exc)) from exc
        except RequestTimeout as exc:
            raise BrokerTimeout(str(exc)) from exc
        except ErrorResponse as exc:
            raise BrokerRequestError(exc.code, exc.description) from exc

    async def send(self, msg: Message | Encoded, client_msg_id: str) -> None:
        """Send without awaiting an answer (orders: their outcome is an event)."""
        tr = self.transport
        if tr is None or not tr.is_open:
            raise BrokerConnectionError("not connected")
        try:
            await tr.send(msg, client_msg_id)
        except ConnectionClosed as exc:
            raise BrokerConnectionError(str(exc)) from exc

    def refuse(self, why: str) -> None:
        """Credentials refused: whoever waits for the session is told now, not after the ready timeout."""
        self.refused = why
        if why:
            self._refusal.set()
        else:
            self._refusal.clear()

    async def wait_ready(self) -> None:
        if self.ready.is_set():
            return
        if self.refused:
            raise BrokerConnectionError(f"broker not connected: {self.refused}")
        ready = asyncio.ensure_future(self.ready.wait())
        refusal = asyncio.ensure_future(self._refusal.wait())
        try:
            await asyncio.wait({ready, refusal}, timeout=self.ready_timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            refusal.cancel()
        if not self.ready.is_set():
            why = f": {self.refused}" if self.refused else ""
            raise BrokerConnectionError(f"broker not connected{why}")

    def emit(self, event: Any) -> None:
        self.events.put_nowait(event)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def cancel_background(self) -> None:
        for task in list(self._background):
            task.cancel()
