"""Instrument specifications and the account's reference data, from the Open API (the instrument provider).

Loaded at every session start: assets, the symbol list, each symbol's full specification (in batches of 100), and
the trader (deposit asset, money digits, leverage). Conversion chains from a quote asset to the deposit asset come
from ``ProtoOASymbolsForConversionReq`` and are kept for the session.
"""

from __future__ import annotations

import logging
from typing import Any

from services.connector.ctrader import parsing
from services.connector.ctrader import schemas as proto
from services.connector.ctrader.link import Link
from services.connector.ctrader.parsing import SymbolSpec
from services.connector.port import BrokerRequestError, Instrument, SymbolNotFoundError

log = logging.getLogger(__name__)
oa = proto.oa
SYMBOL_BATCH = 100


class Instruments:
    def __init__(self, link: Link) -> None:
        self.link = link
        self.specs: dict[str, SymbolSpec] = {}
        self.by_id: dict[int, str] = {}
        self.assets: dict[int, str] = {}  # asset id -> name
        self.calendars: dict[str, Any] = {}
        self.deposit_asset = ""
        self.deposit_asset_id: int | None = None
        self.money_digits = 2
        self.leverage = 0.0
        self._chains: dict[str, list[str]] = {}  # quote asset -> symbols converting it into the deposit asset

    async def load(self) -> None:
        acct = self.link.account_id
        try:
            res = await self.link.request(oa.ProtoOAAssetListReq(ctidTraderAccountId=acct))
            self.assets = {a.assetId: a.name for a in res.asset}
        except BrokerRequestError as exc:
            log.warning("asset list refused (%s): asset ids stand for their names", exc)
            self.assets = {}
        light = (await self.link.request(oa.ProtoOASymbolsListReq(ctidTraderAccountId=acct))).symbol
        by_id = {s.symbolId: s for s in light}
        ids = list(by_id)
        specs: dict[str, SymbolSpec] = {}
        calendars: dict[str, Any] = {}
        for i in range(0, len(ids), SYMBOL_BATCH):
            res = await self.link.request(
                oa.ProtoOASymbolByIdReq(ctidTraderAccountId=acct, symbolId=ids[i : i + SYMBOL_BATCH])
            )
            for full in res.symbol:
                spec = parsing.symbol_spec(by_id[full.symbolId], full, self.assets)
                specs[spec.name] = spec
                try:
                    calendars[spec.name] = parsing.calendar(full)
                except ValueError as exc:  # e.g. a time zone this machine does not know
                    log.warning("%s: trading calendar unreadable (%s): closed markets known from refusals only",
                                spec.name, exc)
        self.specs = specs
        self.calendars = {n: c for n, c in calendars.items() if c is not None}
        self.by_id = {s.symbol_id: n for n, s in specs.items()}
        self._chains = {}

    def apply_trader(self, trader: Any) -> float:
        """The trader's reference data; returns the balance (account money)."""
        self.money_digits = trader.moneyDigits if trader.HasField("moneyDigits") else 2
        has_leverage = trader.HasField("leverageInCents")
        self.leverage = parsing.leverage_from_wire(trader.leverageInCents) if has_leverage else 0.0
        self.deposit_asset_id = trader.depositAssetId
        self.deposit_asset = self.assets.get(trader.depositAssetId, str(trader.depositAssetId))
        return parsing.money_from_wire(trader.balance, self.money_digits)

    def spec(self, symbol: str) -> SymbolSpec:
        try:
            return self.specs[symbol]
        except KeyError:
            raise SymbolNotFoundError(f"unknown symbol {symbol!r}") from None

    def name_of(self, symbol_id: int) -> str | None:
        return self.by_id.get(symbol_id)

    def instrument(self, symbol: str, price: float | None = None) -> Instrument:
        return parsing.instrument(self.spec(symbol), price, self.calendars.get(symbol))

    def asset_id(self, name: str) -> int | None:
        for aid, n in self.assets.items():
            if n == name:
                return aid
        return None

    async def conversion_chain(self, quote_asset: str) -> list[str]:
        """The symbols that convert `quote_asset` into the deposit asset, in order (the broker's chain)."""
        if quote_asset == self.deposit_asset:
            return []
        if quote_asset in self._chains:
            return self._chains[quote_asset]
        first, last = self.asset_id(quote_asset), self.deposit_asset_id
        chain: list[str] = []
        if first is not None and last is not None:
            try:
                res = await self.link.request(oa.ProtoOASymbolsForConversionReq(
                    ctidTraderAccountId=self.link.account_id, firstAssetId=first, lastAssetId=last))
                chain = [s.symbolName for s in res.symbol if s.symbolName in self.specs]
            except BrokerRequestError as exc:
                log.warning("conversion chain %s -> %s refused (%s): looking for a direct pair", quote_asset,
                            self.deposit_asset, exc)
        if not chain:  # the broker gave none (or the assets are unnamed): a direct pair, when the list has one
            chain = [n for n, s in self.specs.items() if {s.base_asset, s.quote_asset} == {quote_asset,
                                                                                         self.deposit_asset}][:1]
        self._chains[quote_asset] = chain
        return chain

    def known_chain(self, quote_asset: str) -> list[str] | None:
        return [] if quote_asset == self.deposit_asset else self._chains.get(quote_asset)
