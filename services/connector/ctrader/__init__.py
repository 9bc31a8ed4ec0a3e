"""The cTrader Open API adapter behind the broker port (services/connector/port.py), in NautilusTrader's shape:

| module | role | pure? |
|---|---|---|
| `schemas.py` | the Open API message classes (loaded without Twisted), envelope, 4-byte length framing | yes |
| `periods.py` | timeframe names <-> ProtoOATrendbarPeriod (bar lengths from `common/timeframes.py`) | yes |
| `parsing.py` | every unit conversion (1/100000 prices, volume cents, moneyDigits, ms), protobuf -> domain values, |
|  | broker error codes -> typed order errors | yes |
| `spots.py`, `execution_wire.py` | the frequent frames read without the protobuf runtime (spot events, history |
|  | answers, an order's ORDER_ACCEPTED and its fill), from the generated descriptors | yes |
| `bars.py` | closed-bar filter, history merge, live bar-close detection from trendbars | yes |
| `tokens.py` | the token pair's lifecycle (which pair, when to refresh) and its 0600 file | decisions pure, file I/O |
| `ratelimit.py` | sliding-window rate limit decision | yes |
| `transport.py` | asyncio TLS/TCP: correlation by clientMsgId, heartbeats, 50/s + 5/s limits, dead lines | I/O |
| `link.py` | the current session's request path, readiness and event queue, shared by the parts below | I/O |
| `providers.py` | instruments: assets, symbol specifications, the trader's reference data, conversion chains | I/O |
| `data.py` | quotes, history, live bars (several timeframes per symbol), market open/closed | I/O |
| `execution.py` | orders, the positions book, reconcile, deals, the account | I/O |
| `client.py` | `CTraderBroker`: session, authorisation and token refresh, reconnects; the port's face | I/O |
"""

from services.connector.ctrader.client import CTraderBroker, CTraderConfig

__all__ = ["CTraderBroker", "CTraderConfig"]
