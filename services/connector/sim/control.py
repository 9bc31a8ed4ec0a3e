"""The simulator's control interface: one JSON object per line over TCP on 127.0.0.1 (the control port).

Request `{"cmd": NAME, ...arguments}`, reply `{"ok": true, ...}` or `{"ok": false, "error": "..."}`.

| cmd | arguments | effect |
|---|---|---|
| status | | server time, cursor, next point, every symbol's market open/closed and next point, account |
| pause / resume | | stop / restart the timed replay |
| speed | value | simulated seconds per wall second (0 = manual) |
| advance | ticks=1 / bars / until | process now (also while paused); replies after the frames are written |
| drop | refuse_s=0 | abort every client connection; refuse new ones for refuse_s seconds |
| silent | seconds | send nothing and ignore every request for that long (connection stays open) |
| delay | seconds, count=1, types=[names] | hold the next `count` outgoing frames of those message types |
| swallow | count=1, types=[names] | ignore the next `count` incoming requests of those types (lost) |
| reject_orders | count=1, code="NOT_ENOUGH_MONEY" | reject the next `count` new orders (ORDER_REJECTED) |
| throttle | count=1, types=[names] | refuse the next `count` requests of those types: REQUEST_FREQUENCY_EXCEEDED |
| partial_fills | count=1, fraction=0.5 | the next `count` market orders fill in two deals (the rest a point worse) |
| slippage | count=1, points | the next `count` market orders fill `points` worse than the quote |
| expire_token | | every access token expires now (sessions: ProtoOAAccountsTokenInvalidatedEvent) |
| revoke_token | | every access and refresh token stops working (sessions told as above) |
| refuse_refresh | count=1 | refuse the next `count` ProtoOARefreshTokenReq |
| issue_token | | a new token pair (as the OAuth flow gives one): `access_token`, `refresh_token` |
| order_error | count=1, code | refuse the next `count` orders/closes/amendments: ProtoOAOrderErrorEvent(code) |
| account_disconnect | | every session loses its account (ProtoOAAccountDisconnectEvent) |
| client_disconnect | reason | ProtoOAClientDisconnectEvent to every session, then their connections close |
| clear | | remove every fault rule |
| save | | write the state file now |
| orders | | every filled order, oldest first (order and position id, side, volume, price, client order id, closing) |
| deals | | every deal, oldest first (prices, volumes, gross profit, swap, commission, balance after a close) |

Types are message names such as "ProtoOAExecutionEvent" or "ProtoOANewOrderReq"; no types = any.

`advance` takes one of: `ticks` N, the next N instants (an instant is every symbol's point at one second); `bars`
N, up to the first instant of the bar of the configured timeframe N bars ahead, so the bars before it close;
`until` T (Unix s), every instant up to T, the clock then standing at T (a closed market shows as closed).
`status` has `server_time` (s), `bar_index` (the CSV bar holding the clock), `bar_time` (the configured
timeframe's bar holding it), `next_point_time`, per symbol `open` and `next_point`, and `requests`: the requests
handled since the start, by message name (e.g. how many ProtoOAGetTrendbarsReq a reconnect's gap fill took).
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.connector.sim.server import SimServer


def handle(server: SimServer, req: dict[str, Any]) -> dict[str, Any]:
    cmd = req.get("cmd")
    loop_time = asyncio.get_running_loop().time()
    faults = server.faults
    if cmd == "status":
        return {"ok": True, **server.status()}
    if cmd == "pause":
        server.paused = True
    elif cmd == "resume":
        server.paused = False
        server.wake()
    elif cmd == "speed":
        server.speed = float(req["value"])
        server.wake()
    elif cmd == "advance":
        given = [k for k in ("ticks", "bars", "until") if k in req]
        if len(given) > 1:
            return {"ok": False, "error": f"advance takes one of ticks, bars, until; got {', '.join(given)}"}
        if "until" in req:
            done = server.advance_until(int(req["until"]))
        elif "bars" in req:
            done = server.advance_bars(int(req["bars"]))
        else:
            done = server.advance(int(req.get("ticks", 1)))
        return {"ok": True, "ticks": done, **server.status()}
    elif cmd == "drop":
        faults.refuse_until = loop_time + float(req.get("refuse_s", 0))
        dropped = len(server.sessions)
        for s in list(server.sessions):
            server._drop(s)
        return {"ok": True, "dropped": dropped}
    elif cmd == "silent":
        faults.silent_until = loop_time + float(req["seconds"])
    elif cmd == "delay":
        faults.delay.append(
            {"seconds": float(req["seconds"]), "count": int(req.get("count", 1)), "types": req.get("types")}
        )
    elif cmd == "swallow":
        faults.swallow.append({"count": int(req.get("count", 1)), "types": req.get("types")})
    elif cmd == "reject_orders":
        faults.reject.append({"count": int(req.get("count", 1)), "code": req.get("code", "NOT_ENOUGH_MONEY")})
    elif cmd == "throttle":
        faults.throttle.append({"count": int(req.get("count", 1)), "types": req.get("types")})
    elif cmd == "partial_fills":
        fraction = float(req.get("fraction", 0.5))
        if not 0 < fraction < 1:
            return {"ok": False, "error": f"fraction must be between 0 and 1, not {fraction}"}
        faults.partial.append({"count": int(req.get("count", 1)), "fraction": fraction})
    elif cmd == "slippage":
        faults.slippage.append({"count": int(req.get("count", 1)), "points": int(req["points"])})
    elif cmd == "expire_token":
        return {"ok": True, "sessions_told": server.expire_tokens()}
    elif cmd == "revoke_token":
        return {"ok": True, "sessions_told": server.revoke_tokens()}
    elif cmd == "refuse_refresh":
        server.tokens.refresh_refusals += int(req.get("count", 1))
    elif cmd == "issue_token":
        tok = server.tokens.issue(server.now_ms)
        server._save_state()
        return {"ok": True, "access_token": tok.access_token, "refresh_token": tok.refresh_token}
    elif cmd == "order_error":
        faults.order_error.append({"count": int(req.get("count", 1)), "code": str(req["code"])})
    elif cmd == "account_disconnect":
        return {"ok": True, "sessions_told": server.account_disconnect()}
    elif cmd == "client_disconnect":
        return {"ok": True, "sessions_told": server.client_disconnect(str(req.get("reason", "disconnected")))}
    elif cmd == "clear":
        for rules in (faults.delay, faults.swallow, faults.reject, faults.throttle, faults.partial, faults.slippage,
                      faults.order_error):
            rules.clear()
        server.tokens.refresh_refusals = 0
        faults.silent_until = faults.refuse_until = 0.0
    elif cmd == "save":
        server._save_state()
    elif cmd == "orders":
        return {"ok": True, "orders": [asdict(o) for o in server.account.orders]}
    elif cmd == "deals":
        return {"ok": True, "deals": [asdict(d) for d in server.account.deals]}
    else:
        return {"ok": False, "error": f"unknown command {cmd!r}"}
    return {"ok": True}


def control(
    port: int, cmd: str, host: str = "127.0.0.1", timeout: float = 10.0, **args: Any
) -> dict[str, Any]:
    """Send one control command (blocking) and return the reply."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise RuntimeError(reply.get("error", "control command failed"))
    return reply


async def acontrol(port: int, cmd: str, host: str = "127.0.0.1", **args: Any) -> dict[str, Any]:
    """Send one control command from asyncio code."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        await writer.drain()
        reply = json.loads(await reader.readline())
    finally:
        writer.close()
    if not reply.get("ok"):
        raise RuntimeError(reply.get("error", "control command failed"))
    return reply
