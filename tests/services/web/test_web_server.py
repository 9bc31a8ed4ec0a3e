"""The dashboard's HTTP side (services/web/server.py, access.py) on a real socket: paths, methods, sizes, the token,
the event stream and a browser that falls behind."""

import http.client
import json
import threading

import pytest

from services.web import access
from services.web.server import DashboardServer, Hub, load_static

TOKEN = "t" * 24


@pytest.fixture
def serve():
    servers = []

    def start(token: str = "", max_clients: int = 4, client_queue: int = 8) -> DashboardServer:
        server = DashboardServer(("127.0.0.1", 0), Hub(max_clients, client_queue), token, load_static())
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stopping.set()
        server.shutdown()
        server.server_close()


def ask(server: DashboardServer, method: str, path: str, body: bytes | None = None,
        headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    res = conn.getresponse()
    out = (res.status, dict(res.getheaders()), res.read())
    conn.close()
    return out


def test_the_page_and_its_shipped_chart_library(serve):
    server = serve()
    status, headers, body = ask(server, "GET", "/")
    assert status == 200 and b"uPlot.iife.min.js" in body and "default-src 'self'" in headers["Content-Security-Policy"]
    status, _, lib = ask(server, "GET", "/vendor/uplot/uPlot.iife.min.js")
    assert status == 200 and b"uPlot" in lib and len(lib) > 40_000
    assert b"MIT" in ask(server, "GET", "/vendor/uplot/LICENSE")[2]


@pytest.mark.parametrize("path", ["/nope", "/../pyproject.toml", "/static/app.js", "/app.js/", "//etc/passwd",
                                  "/vendor/uplot/../../service.py", "/%2e%2e/service.py"])
def test_an_unknown_path_is_404(serve, path):
    assert ask(serve(), "GET", path)[0] == 404


def test_read_only_and_bounded(serve):
    server = serve()
    status, headers, _ = ask(server, "POST", "/api/snapshot", body=b"{}")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    for method in ("PUT", "DELETE", "PATCH"):
        assert ask(server, method, "/")[0] == 405
    assert ask(server, "GET", "/", body=b"x" * 10, headers={"Content-Length": "10"})[0] == 413
    assert ask(server, "GET", "/" + "a" * 3000)[0] == 414


def test_a_token_is_required_when_one_is_set(serve):
    server = serve(TOKEN)
    assert ask(server, "GET", "/")[0] == 401
    assert ask(server, "GET", "/?token=wrong")[0] == 401
    assert ask(server, "GET", "/app.js", headers={"Authorization": "Bearer nope"})[0] == 401
    status, headers, _ = ask(server, "GET", f"/?token={TOKEN}")
    assert status == 200 and headers["Set-Cookie"].startswith(f"{access.COOKIE}={TOKEN}; HttpOnly; SameSite=Strict")
    assert ask(server, "GET", "/app.js", headers={"Cookie": f"{access.COOKIE}={TOKEN}"})[0] == 200
    assert ask(server, "GET", "/app.js", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200


@pytest.mark.parametrize(("host", "env", "error"), [
    ("127.0.0.1", {}, ""), ("::1", {}, ""), ("localhost", {}, ""),
    ("0.0.0.0", {}, "host 0.0.0.0 is not loopback: set a token in the environment variable ORACLE_WEB_TOKEN"),
    ("0.0.0.0", {"ORACLE_WEB_TOKEN": "short"}, "ORACLE_WEB_TOKEN holds 5 characters; a token needs 16"),
])
def test_any_other_address_than_loopback_needs_a_token(host, env, error):
    if error:
        with pytest.raises(access.AccessError, match=error):
            access.required_token(host, "ORACLE_WEB_TOKEN", env)
    else:
        assert access.required_token(host, "ORACLE_WEB_TOKEN", env) == ""
    assert access.required_token("10.1.2.3", "T", {"T": TOKEN}) == TOKEN


def read_event(stream: http.client.HTTPResponse) -> dict:
    while True:
        line = stream.readline()
        assert line, "the stream ended"
        if line.startswith(b"data: "):
            return json.loads(line[len(b"data: "):])


def open_stream(server: DashboardServer) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    conn.request("GET", "/events")
    res = conn.getresponse()
    assert res.status == 200 and res.getheader("Content-Type") == "text/event-stream"
    return conn, res


def publish_until_joined(hub: Hub, snapshot: bytes) -> None:
    """The loop's side: the snapshot to whoever waits for one (the connection thread joins on its own time)."""
    while not hub.wants_snapshot():
        threading.Event().wait(0.01)
    hub.publish(None, snapshot)


def test_the_stream_gives_the_snapshot_then_the_changes(serve):
    server = serve()
    joiner = threading.Thread(target=publish_until_joined, args=(server.hub, b'{"full": true}'))
    joiner.start()
    conn, stream = open_stream(server)
    joiner.join()
    assert read_event(stream) == {"full": True}
    server.hub.publish(b'{"full": false, "n": 1}', None)
    assert read_event(stream) == {"full": False, "n": 1}
    assert server.hub.counts()["browsers"] == 1
    conn.close()


def test_a_browser_that_falls_behind_is_dropped_and_counted_and_others_go_on(serve):
    server = serve(client_queue=2)
    hub = server.hub
    slow, fast = hub.join(), hub.join()  # two streams; only the fast one is read
    hub.publish(None, b"snap")
    got = [fast.updates.get_nowait()]
    for n in range(3):
        hub.publish(str(n).encode(), None)  # never blocks
        got.append(fast.updates.get_nowait())
    assert slow.dropped.is_set() and got == [b"snap", b"0", b"1", b"2"]
    assert hub.counts() == {"browsers": 1, "browsers_served": 2, "browsers_dropped": 1, "browsers_refused": 0}


def test_past_max_clients_a_browser_is_refused(serve):
    server = serve(max_clients=1)
    assert server.hub.join() is not None
    assert ask(server, "GET", "/events")[0] == 503
    assert server.hub.counts()["browsers_refused"] == 1
