"""No INFO line per ack: the acks are counted, DEBUG carries each, one INFO line a minute sums them by status."""

from __future__ import annotations

import logging
import time

from services.executor.service import SUMMARY_S
from tests.services.executor.test_executor_shell import Rig


def test_acks_are_summed_once_a_minute_not_logged_one_by_one_at_info(tmp_path, caplog):
    rig = Rig(tmp_path)
    try:
        rig.boot()
        with caplog.at_level(logging.INFO, logger="oracle.executor"):
            rig.signal(1, 0)
            rig.signal(2, 1)
            assert [r for r in caplog.records if r.getMessage() == "ack"] == []
            rig.ex._summarize(time.monotonic())  # within the minute: no summary yet
            assert [r for r in caplog.records if r.getMessage() == "acks"] == []
            rig.ex._summarize(time.monotonic() + SUMMARY_S + 1)
            [summary] = [r for r in caplog.records if r.getMessage() == "acks"]
            assert summary.levelno == logging.INFO and summary.fields["OK"] == 2
            rig.ex._summarize(time.monotonic() + 3 * SUMMARY_S)  # nothing since: no line
            assert len([r for r in caplog.records if r.getMessage() == "acks"]) == 1
        with caplog.at_level(logging.DEBUG, logger="oracle.executor"):
            rig.signal(3, 0)
        assert [r.levelno for r in caplog.records if r.getMessage() == "ack"] == [logging.DEBUG]
    finally:
        rig.close()
