"""A PostgREST-compatible endpoint for tests: enough of `POST /rest/v1/<table>` to answer what
supabase-py 2.x sends for insert and upsert, storing into a real PostgreSQL database.

Understood: query `on_conflict=<cols>` and `columns=<quoted cols>`; header `Prefer` with
`return=representation|minimal` and `resolution=merge-duplicates|ignore-duplicates`; a JSON array or
object body; `apikey` and `Authorization: Bearer <key>` must both carry the configured key (401 otherwise).
Errors come back as PostgREST does: JSON `{code, message, details, hint}` with the SQLSTATE as code and
409 for unique/foreign-key violations, 400 for other data errors.

Fault injection: `stub.faults` is a queue consumed one per request: `("status", 503)` answers that status
with a PostgREST error body, `("html", 502)` a non-JSON proxy page, `("slow", seconds)` sleeps and then
processes the request normally (so a client that timed out may still have been written, as in real
life). `stub.down = True` answers 503 to everything until cleared.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

CONFLICT_CODES = {"23505", "23503"}


class PostgrestStub:
    def __init__(self, dsn: str, key: str):
        self.dsn = dsn
        self.key = key
        self.faults: deque[tuple[str, Any]] = deque()
        self.down = False
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition()
        self._in_flight = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                with stub._idle:
                    stub._in_flight += 1
                try:
                    stub._handle(self)
                finally:
                    with stub._idle:
                        stub._in_flight -= 1
                        stub._idle.notify_all()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> PostgrestStub:
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, after the requests in flight are done (a slow one still writes)."""
        self.server.shutdown()
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout)
        self.server.server_close()

    # ---- request handling ---------------------------------------------------------------------

    def _reply(self, h: BaseHTTPRequestHandler, status: int, body: Any = None, *, raw: bytes | None = None,
               content_type: str = "application/json") -> None:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, message: str,
               details: str | None = None) -> None:
        self._reply(h, status, {"code": code, "message": message, "details": details, "hint": None})

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length)
        url = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self._lock:
            self.requests.append({"method": "POST", "path": url.path, "query": query,
                                  "headers": {k.lower(): v for k, v in h.headers.items()}})
            fault = self.faults.popleft() if self.faults else None
            down = self.down
        if down:
            return self._error(h, 503, "PGRST000", "Could not connect to the database (stub outage)")
        if fault is not None:
            kind, arg = fault
            if kind == "status":
                return self._error(h, arg, "PGRST000" if arg >= 500 else "23505", f"injected {arg}")
            if kind == "html":
                return self._reply(h, arg, raw=b"<html>bad gateway</html>", content_type="text/html")
            if kind == "slow":
                time.sleep(arg)
        if h.headers.get("apikey") != self.key or h.headers.get("Authorization") != f"Bearer {self.key}":
            return self._error(h, 401, "PGRST301", "JWT invalid or missing apikey")
        parts = url.path.strip("/").split("/")
        if len(parts) != 3 or parts[:2] != ["rest", "v1"]:
            return self._error(h, 404, "PGRST125", f"invalid path {url.path}")
        table = parts[2]
        try:
            body = json.loads(raw or b"null")
        except json.JSONDecodeError as exc:
            return self._error(h, 400, "PGRST102", f"Empty or invalid json: {exc}")
        rows = [body] if isinstance(body, dict) else body
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return self._error(h, 400, "PGRST102", "body must be a JSON object or an array of objects")
        prefer = {p.split("=")[0].strip(): p.split("=")[1].strip()
                  for p in h.headers.get("Prefer", "").split(",") if "=" in p}
        if "columns" in query:
            cols = [c.strip().strip('"') for c in query["columns"].split(",") if c.strip()]
        else:
            cols = list(rows[0]) if rows else []
        try:
            status, out = self._insert(table, rows, cols, query.get("on_conflict"), prefer)
        except psycopg.Error as exc:
            code = exc.sqlstate or "XX000"
            status = 409 if code in CONFLICT_CODES else 404 if code == "42P01" else \
                400 if code[:2] in ("22", "23", "42") else 500
            return self._error(h, status, code, str(exc).strip().splitlines()[0],
                               getattr(exc.diag, "message_detail", None))
        if prefer.get("return") == "representation":
            return self._reply(h, status, out)
        return self._reply(h, status)

    def _insert(self, table: str, rows: list[dict[str, Any]], cols: list[str], on_conflict: str | None,
                prefer: dict[str, str]) -> tuple[int, list[Any]]:
        t = sql.Identifier(table)
        col_list = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
        query = sql.SQL("INSERT INTO {t} ({cols}) SELECT {cols} FROM jsonb_populate_recordset(NULL::{t}, %s)").format(
            t=t, cols=col_list)
        resolution = prefer.get("resolution")
        if resolution in ("merge-duplicates", "ignore-duplicates"):
            target = sql.SQL(", ").join(sql.Identifier(c.strip()) for c in (on_conflict or "id").split(","))
            if resolution == "ignore-duplicates":
                query += sql.SQL(" ON CONFLICT ({target}) DO NOTHING").format(target=target)
            else:
                sets = sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in cols)
                query += sql.SQL(" ON CONFLICT ({target}) DO UPDATE SET {sets}").format(target=target, sets=sets)
        query += sql.SQL(" RETURNING to_jsonb({t}.*)").format(t=t)
        with psycopg.connect(self.dsn) as conn:
            out = [r[0] for r in conn.execute(query, (Jsonb(rows),)).fetchall()]
        return 201, out
