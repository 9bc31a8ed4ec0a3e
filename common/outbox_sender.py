"""The sending side of persistence writes in the service runtime (runtime.py): ``persist`` keeps a record in the
outbox (outbox.py, pure) and writes it through to a spool file, so a record survives a kill; the loop sends the
oldest unacknowledged ones to persistence, one batch in flight, once the records of a burst (a bar) are gathered
(``outbox_quiet_ms``, ``outbox_linger_ms``: a few requests per bar instead of one per loop pass, each with its fixed
costs at both ends; the loop sleeps until then, runtime ``_due_ms``); at stop the outbox gets a last chance to empty.

A mixin of ``runtime.Service``: it uses the service's outbox, config, zmq context and wire error counts.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import ClassVar

from common import bus, logs, messages, plain_json, wire

log = logging.getLogger("oracle.runtime")


class OutboxSender:
    # a batch leaves in the first loop pass after no record was handed over for `outbox_quiet_ms`, or at the latest
    # `outbox_linger_ms` after the first one gathered (the loop wakes then; or at once with a full batch): the
    # records are in the spool meanwhile, only their ack waits. 30 ms: an executor's bar hands over its signals and
    # acks within a few ms, and the acks of its orders after the broker's round trip, some tens of ms later; the
    # loop is not woken for the quiet time alone (a pass of its own costs a busy service more than it saves)
    outbox_quiet_ms: ClassVar[float] = 30.0
    outbox_linger_ms: ClassVar[float] = 60.0
    # does persistence's answer wake the loop? False: it is taken at the loop's next wake for anything else (the
    # next heartbeat at the latest, or the request's timeout): one wake fewer per batch, for a service whose records
    # are not waited for (paper); stored by persistence whenever it answered
    outbox_answer_wakes: ClassVar[bool] = True

    def persist(self, table: str, record: dict) -> None:
        """Hand a record (with its ``id``) to persistence; it is retried until acknowledged, also by the next
        process after a crash or a kill -9: the record is written through to the outbox's spool file
        (``<data_dir>/outbox/<service>.jsonl``) before this returns, and the file is emptied whenever
        everything is acknowledged."""
        if record.get("id") in self.outbox.pending:
            return
        self.outbox.add(table, record, time.monotonic())
        try:
            line = plain_json.dumps({"table": table, "record": record}) + b"\n"
        except (TypeError, ValueError) as exc:  # not JSON: kept in memory only
            log.error("record %s not spooled: %s", record.get("id"), exc)
            return
        os.write(self._open_spool(), line)  # in the OS once written: survives the process

    def persist_many(self, table: str, records: list[dict], spool: bool = True) -> None:
        """``persist`` for several records of one table (a run's): spooled with one write, in the OS before this
        returns as each would be. ``spool=False``: kept in memory only, for records the service makes again
        after a restart from what it committed before handing them over (paper's, from its book)."""
        now = time.monotonic()
        lines: list[bytes] = []
        for record in records:
            if record.get("id") in self.outbox.pending:
                continue
            self.outbox.add(table, record, now)
            if not spool:
                continue
            try:
                lines.append(plain_json.dumps({"table": table, "record": record}) + b"\n")
            except (TypeError, ValueError) as exc:  # not JSON: kept in memory only
                log.error("record %s not spooled: %s", record.get("id"), exc)
        if lines:
            os.write(self._open_spool(), b"".join(lines))

    def _open_spool(self) -> int:
        if self._spool is None:
            path = self._spool_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._spool = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return self._spool

    def _spool_path(self) -> Path:
        return self.cfg.path(self.cfg.data_dir) / "outbox" / f"{self.name}.jsonl"

    def _restore_outbox(self) -> None:
        """The records an earlier process of this service handed over without an acknowledgement (a duplicate of
        one that was stored is acknowledged again: ids are deterministic and the store deduplicates)."""
        try:
            lines = self._spool_path().read_bytes().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                entry = json.loads(line)
                self.outbox.add(entry["table"], entry["record"])
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by the kill
        if len(self.outbox):
            self._open_spool()  # emptied when they are acknowledged
            logs.event(log, logging.INFO, "outbox restored", records=len(self.outbox))

    def _outbox_due(self) -> float | None:
        """When the loop must wake to drive the outbox (None: nothing to send, or a batch in flight): at the
        linger's end (outbox.py ``wake_at``); a pass before it sends what is quiet."""
        send_at = self.outbox.wake_at()
        if send_at is None or self.name == "persistence":  # persistence stores its own records, sends none
            return None
        return max(send_at, self._store_retry_at)

    def _drive_outbox(self, now: float) -> None:
        """Send the oldest unacknowledged records to persistence (one batch in flight, once gathered)."""
        if self._store is None:
            if not len(self.outbox) or self.name == "persistence":
                return
            self._store = bus.Requester(
                self.ctx, self.cfg.endpoint("persistence", "rep"), self.name, self.cfg.runtime.request_timeout_ms
            )
        req = self._store
        if req.pending is not None:
            try:
                reply = req.take_reply()
            except bus.RequestTimeout:
                self.outbox.on_failure()
                self._store_retry_at = now + 1.0
                return
            except wire.WireError as err:
                self.errors.record(err, "REQ persistence")
                req.reset()
                self.outbox.on_failure()
                return
            if reply is None:
                return
            if not reply.ok:
                refusal = f"{reply.error_code}: {reply.error_message}"
                if refusal != self._store_refusal:  # once per distinct refusal, not every retry
                    log.warning("persistence refused a write (%s); records kept and retried", refusal)
                self._store_refusal = refusal
                self.outbox.on_failure()
                self._store_retry_at = now + 1.0
                return
            self.outbox.on_reply(reply.result.acked, reply.result.rejected)
            if not len(self.outbox):  # everything acknowledged: nothing to hand over any more
                if self._spool is not None:
                    os.ftruncate(self._spool, 0)
                # the heartbeat says so in this loop pass (its ``info.outbox`` gone), not up to an interval later:
                # the backlog `oracle top` and the orchestrator show clears when it clears, and a subscriber (the
                # pipeline bench) knows a burst's records are stored without asking
                self.beat_soon()
            for rid, why in reply.result.rejected.items():
                log.error("persistence rejected record %s: %s", rid, why)
            self._store_refusal = ""
            # records waiting behind this batch (past max_batch) go now, in this pass (not in a pass of their own)
        send_at = self.outbox.send_at()
        if send_at is not None and now >= send_at and now >= self._store_retry_at:
            batch = self.outbox.next_batch()
            if batch is not None:
                req.send(messages.OP_WRITE.name, messages.WriteArgs(batch))
                self.count("outbox_writes")

    def _flush_outbox(self) -> None:
        """The last sends before the process exits (half the stop timeout at most), then the spool file closed:
        what is still unacknowledged stays in it for the next start."""
        flush_until = time.monotonic() + self.cfg.runtime.stop_timeout_s / 2
        self._store_retry_at = 0.0  # no back-off now: this is the last chance
        self.outbox.gathering_since = None  # and no gathering
        while len(self.outbox) and time.monotonic() < flush_until:  # give persistence a chance to ack
            self.count("outbox_flush_turns")
            self._drive_outbox(time.monotonic())
            if self._store is not None and self._store.pending is not None:
                self._store.sock.poll(50)
            else:  # nothing in flight (persistence refused or did not answer: asked again at its retry time)
                time.sleep(max(0.01, min(self._store_retry_at, flush_until) - time.monotonic()))
        if len(self.outbox):
            log.warning("stopping with %d records not yet acknowledged by persistence (kept in %s for the next "
                        "start)", len(self.outbox), self._spool_path())
        if self._spool is not None:
            os.close(self._spool)
