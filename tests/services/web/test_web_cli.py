"""`oracle web` in the foreground, as a user without supervisord runs it: it prints its URL, serves the page with the
system down (saying what it could not read), stops on Ctrl-C; and it refuses a non-loopback address without a token."""

import json
import signal
import subprocess
import urllib.request

from harness import VENV, Home, wait_for


def test_oracle_web_prints_its_url_serves_with_the_system_down_and_stops_on_ctrl_c(tmp_path):
    home = Home(tmp_path, {"web": {"history_timeout_ms": 200, "port": 0}})
    proc = subprocess.Popen([str(VENV / "bin" / "oracle"), "web"], env=home.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("oracle web: serving the dashboard on http://127.0.0.1:"), (line, proc.stderr.read())
        url = line.split(" on ")[1].strip()
        with urllib.request.urlopen(url, timeout=10) as res:
            assert res.status == 200 and b"<title>Oracle Trader</title>" in res.read()

        def snapshot() -> dict | None:
            with urllib.request.urlopen(url + "api/snapshot", timeout=10) as res:
                view = json.loads(res.read())
            return view if view["history_note"] else None

        view = wait_for(snapshot, 20, "the snapshot saying what it could not read")
        assert view["system"]["state"] == "UNKNOWN" and view["curve"] == []
        assert "status: status to ipc://" in view["history_note"] and "no reply" in view["history_note"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        home.close()


def test_another_address_than_loopback_needs_a_token(tmp_path):
    home = Home(tmp_path)
    env = {k: v for k, v in home.env.items() if k != "ORACLE_WEB_TOKEN"}
    res = subprocess.run([str(VENV / "bin" / "python"), "-m", "services.web", "--host", "0.0.0.0"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert "web: host 0.0.0.0 is not loopback: set a token in the environment variable ORACLE_WEB_TOKEN" in res.stderr
    home.close()
