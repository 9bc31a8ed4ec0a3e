"""A webhook receiver for the notifier's tests: http.server in a thread on a free loopback port (real sockets)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Webhook:
    """A webhook receiver: every POST recorded with the status it was answered (`answer`: an HTTP status, or None
    to close the connection without an answer)."""

    def __init__(self) -> None:
        self.answer: int | None = 200
        self.posts: list[tuple[int | None, dict]] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hook.lock:
                    answer = hook.answer
                    hook.posts.append((answer, body))
                if answer is None:
                    self.close_connection = True
                    return
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def acked(self) -> list[dict]:
        with self.lock:
            return [body for answer, body in self.posts if answer is not None and 200 <= answer < 300]

    def failed(self) -> int:
        with self.lock:
            return sum(1 for answer, _ in self.posts if answer is None or answer >= 300)

    def acked_notices(self) -> list[dict]:
        return [n for body in self.acked() for n in body["notices"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
