"""The dashboard's HTTP side (stdlib ``http.server``, one thread per connection): the page and its static files,
``/api/snapshot`` (the whole view once) and ``/events`` (Server-Sent Events: the whole view, then its changes).

Read-only and bounded: GET and HEAD only (anything else 405), a fixed table of paths (anything else 404; no path
ever reaches the file system), no request body (413), a request line of 2 KiB at most (414), ``max_clients`` live
streams (503 past it), a ``client_queue`` of updates per stream: a browser that falls behind is dropped and counted,
never waited for (the loop that folds the wire only ever does ``put_nowait``).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import urlsplit

from services.web import access

log = logging.getLogger("oracle.web")

MAX_PATH_CHARS = 2048
KEEPALIVE_S = 15.0  # an SSE comment this often on a quiet stream (proxies and browsers keep it open)
SNAPSHOT_WAIT_S = 5.0
SOCKET_TIMEOUT_S = 10.0  # reading a request, writing to a browser: a stuck peer is dropped after this

# path -> (file under static/, content type): the only paths served besides /api/snapshot and /events
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/vendor/uplot/uPlot.iife.min.js": ("vendor/uplot/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "/vendor/uplot/uPlot.min.css": ("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    "/vendor/uplot/LICENSE": ("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def load_static() -> dict[str, tuple[bytes, str]]:
    """The static files, read once from the installed package (package data: pyproject.toml)."""
    root = resources.files("services.web") / "static"
    return {path: ((root / name).read_bytes(), ctype) for path, (name, ctype) in STATIC.items()}


@dataclass(eq=False)
class Client:
    """One browser's stream: what the loop has for it, waiting to be written."""

    updates: queue.Queue
    dropped: threading.Event = field(default_factory=threading.Event)


class Hub:
    """The live streams: the loop thread ``publish``es each update (``put_nowait``: never blocks) and hands each
    new stream its snapshot first; connection threads ``join`` and ``leave``."""

    def __init__(self, max_clients: int, client_queue: int):
        self.max_clients, self.client_queue = max_clients, client_queue
        self.lock = threading.Lock()
        self.clients: set[Client] = set()
        self.joining: list[Client] = []
        self.dropped = 0  # streams dropped for falling behind
        self.refused = 0  # streams refused past max_clients
        self.served = 0  # streams ever joined

    def join(self) -> Client | None:
        with self.lock:
            if len(self.clients) + len(self.joining) >= self.max_clients:
                self.refused += 1
                return None
            client = Client(queue.Queue(self.client_queue))
            self.joining.append(client)
            self.served += 1
            return client

    def leave(self, client: Client) -> None:
        with self.lock:
            self.clients.discard(client)
            if client in self.joining:
                self.joining.remove(client)

    def wants_snapshot(self) -> bool:
        with self.lock:
            return bool(self.joining)

    def publish(self, update: bytes | None, snapshot: bytes | None) -> None:
        """``update`` to the streams already live (None: nothing changed), then ``snapshot`` to the new ones."""
        with self.lock:
            if update is not None:
                for client in list(self.clients):
                    try:
                        client.updates.put_nowait(update)
                    except queue.Full:
                        client.dropped.set()
                        self.clients.discard(client)
                        self.dropped += 1
                        log.warning("a browser fell %d updates behind: dropped (%d so far)", self.client_queue,
                                    self.dropped)
            if snapshot is not None:
                for client in self.joining:
                    client.updates.put_nowait(snapshot)  # its queue is empty
                    self.clients.add(client)
                self.joining = []

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {"browsers": len(self.clients), "browsers_served": self.served,
                    "browsers_dropped": self.dropped, "browsers_refused": self.refused}


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 16

    def __init__(self, address: tuple[str, int], hub: Hub, token: str, files: dict[str, tuple[bytes, str]]):
        self.hub, self.token, self.files = hub, token, files
        self.stopping = threading.Event()
        super().__init__(address, Handler)

    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    timeout = SOCKET_TIMEOUT_S
    server_version = "oracle-web"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def _refuse_method(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only: GET and HEAD only\n", "text/plain; charset=utf-8",
                   extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method  # noqa: N815

    def _serve(self, head: bool) -> None:
        if len(self.path) > MAX_PATH_CHARS:
            return self._send(HTTPStatus.REQUEST_URI_TOO_LONG, b"path too long\n", "text/plain; charset=utf-8")
        if self.headers.get("Content-Length", "0") != "0" or self.headers.get("Transfer-Encoding"):
            return self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"no request body here\n",
                              "text/plain; charset=utf-8")
        parts = urlsplit(self.path)
        path = parts.path
        if path not in self.server.files and path not in ("/api/snapshot", "/events"):
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
        token = self.server.token
        if not access.authorized(token, self.headers.get("Authorization"), parts.query, self.headers.get("Cookie")):
            return self._send(HTTPStatus.UNAUTHORIZED, b"a token is required: open the link with ?token=...\n",
                              "text/plain; charset=utf-8", extra={"WWW-Authenticate": "Bearer"})
        extra = {}
        if token and access.query_token(parts.query):  # the link a person opened: the page's requests carry it
            extra["Set-Cookie"] = f"{access.COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
        if path == "/events":
            return self._stream(head)
        if path == "/api/snapshot":
            return self._snapshot(head)
        body, ctype = self.server.files[path]
        self._send(HTTPStatus.OK, body, ctype, head=head, extra=extra)

    def _send(self, status: HTTPStatus, body: bytes, ctype: str, head: bool = False,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in {**HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        if status >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _snapshot(self, head: bool) -> None:
        client = self.server.hub.join()
        if client is None:
            return self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"too many browsers\n", "text/plain; charset=utf-8")
        try:
            first = client.updates.get(timeout=SNAPSHOT_WAIT_S)
        except queue.Empty:
            return self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"no snapshot in time\n", "text/plain; charset=utf-8")
        finally:
            self.server.hub.leave(client)
        self._send(HTTPStatus.OK, first, "application/json", head=head)

    def _stream(self, head: bool) -> None:
        hub = self.server.hub
        client = hub.join()
        if client is None:
            return self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"too many browsers\n", "text/plain; charset=utf-8")
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            for k, v in HEADERS.items():
                self.send_header(k, v)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if head:
                return
            self.wfile.write(b"retry: 2000\n\n")
            self.wfile.flush()
            while not client.dropped.is_set() and not self.server.stopping.is_set():
                try:
                    data = client.updates.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    self.wfile.write(b": keepalive\n\n")
                else:
                    self.wfile.write(b"data: " + data + b"\n\n")
                self.wfile.flush()
        except OSError:  # the browser went away, or stopped reading for SOCKET_TIMEOUT_S
            pass
        finally:
            hub.leave(client)
