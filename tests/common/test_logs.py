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
