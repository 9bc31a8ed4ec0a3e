import io
import logging

import pytest

from common import logs


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"client_secret": "s3", "symbol": "EURUSD"}, {"client_secret": "***", "symbol": "EURUSD"}),
        ({"nested": [{"access_token": "t", "n": 1}]}, {"nested": [{"access_token": "***", "n": 1}]}),
        ({"SUPABASE_KEY": "k", "dsn": "postgres://u:p@h/db"}, {"SUPABASE_KEY": "***", "dsn": "***"}),
        ([1, "plain"], [1, "plain"]),
    ],
)
def test_redact(value, expected):
    assert logs.redact(value) == expected


def test_structured_line_has_fields_and_no_secret(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.setup("executor", "INFO", "text")
    try:
        logs.event(logging.getLogger("t"), logging.INFO, "order sent", symbol="EURUSD", access_token="abc")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    err = capsys.readouterr().err
    assert "executor order sent symbol=EURUSD access_token=***" in err
    assert "abc" not in err


# ---- limits (issue 16) -------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def limited_logger(limit: logs.KindLimit, fmt: str = "text") -> tuple[logging.Logger, io.StringIO, logs.LimitedHandler]:
    out = io.StringIO()
    handler = logs.LimitedHandler(out, limit)
    handler.setFormatter(logs._Formatter("orchestrator", fmt == "json"))
    logger = logging.getLogger(f"t.limits.{id(limit)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out, handler


def test_lines_of_one_kind_are_rate_limited_and_the_dropped_ones_counted():
    clock = Clock()
    logger, out, handler = limited_logger(logs.KindLimit(lines=5, window_s=10.0, clock=clock))
    logger.info("started pid=%d", 1)  # a boot line, of a kind of its own
    for i in range(1000):
        logger.warning("bad request from %s", f"peer-{i}")
    logger.info("ready")
    lines = out.getvalue().splitlines()
    assert sum("bad request from" in line for line in lines) == 5
    assert "started pid=1" in lines[0] and "ready" in lines[-1]  # other kinds are not held back
    clock.now = 10.0  # the window ends: its count is the next line
    logger.warning("bad request from %s", "peer-x")
    lines = out.getvalue().splitlines()
    assert "995 line(s) dropped (over 5 per 10 s of one kind)" in lines[-2] and "'bad request from %s'" in lines[-2]
    assert lines[-1].endswith("bad request from peer-x")
    assert handler.limit.dropped_total == 995
    for _ in range(10):
        logger.warning("bad request from %s", "peer-y")
    handler.close()  # at exit: the open window's count too (peer-x and 4 more logged in it)
    assert out.getvalue().splitlines()[-1].endswith("6 line(s) dropped (over 5 per 10 s of one kind): "
                                                    f"{logger.name} WARNING 'bad request from %s'")


def test_ever_new_kinds_share_one_window_past_the_limit_of_kinds():
    logger, out, handler = limited_logger(logs.KindLimit(lines=3, window_s=10.0, max_kinds=4, clock=Clock()))
    for i in range(100):
        logger.warning(f"op {i} unknown")  # an f-string: each line a kind of its own
    assert len(out.getvalue().splitlines()) == 4 + 3
    handler.close()
    assert "93 line(s) dropped" in out.getvalue().splitlines()[-1]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_long_message_field_and_traceback_are_clipped(fmt):
    logger, out, _ = limited_logger(logs.KindLimit(clock=Clock()), fmt)
    logs.event(logger, logging.WARNING, "unknown op " + "o" * 100_000, op="p" * 100_000)
    try:
        raise ValueError("v" * 100_000)
    except ValueError:
        logger.exception("handler failed")
    text = out.getvalue()
    assert len(text) < logs.MAX_MESSAGE_CHARS + logs.MAX_FIELD_CHARS + logs.MAX_TRACEBACK_CHARS + 1000
    assert "...[100011 chars]" in text and "...[100000 chars]" in text


def test_a_process_that_learns_its_program_name_later_logs_under_it(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.setup("preditor", "INFO", "text")
    try:
        logs.set_service("preditor-1")  # a preditor shard, once its configuration is read
        logs.event(logging.getLogger("t"), logging.INFO, "model loaded", symbol="EURUSD")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    assert "preditor-1 model loaded symbol=EURUSD" in capsys.readouterr().err
