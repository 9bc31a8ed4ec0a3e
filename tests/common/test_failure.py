"""The permanent-failure record (common/failure.py): written atomically, of one start, cleared by the next."""

import json
import time

from common import failure


def test_a_record_is_of_the_start_that_wrote_it(tmp_path):
    folder = tmp_path / "failed"
    assert failure.read(folder, "connector") is None  # no directory yet: no failure
    failure.write(folder, failure.Failure("connector", 42, "CTRADER_CLIENT_ID not set", 1000.5))
    assert failure.read(folder, "connector") == failure.Failure("connector", 42, "CTRADER_CLIENT_ID not set", 1000.5)
    assert [p.name for p in folder.iterdir()] == ["connector.json"]  # no temporary file left beside it
    assert failure.of_start(folder, "connector", 1000) == "CTRADER_CLIENT_ID not set"  # supervisord's whole seconds
    assert failure.of_start(folder, "connector", 1001) == ""  # a later start: a past life's record
    failure.clear(folder, "connector")
    failure.clear(folder, "connector")  # nothing to clear: fine
    assert failure.read(folder, "connector") is None


def test_a_record_that_is_not_one_says_so(tmp_path):
    folder = tmp_path / "failed"
    folder.mkdir()
    (folder / "paper.json").write_text(json.dumps({"program": "paper"}))
    found = failure.read(folder, "paper")
    assert found is not None and "is not a failure record" in found.cause


def test_started_by_hand_it_exits_at_once_and_under_supervisord_after_the_hold():
    slept: list[float] = []
    now = time.monotonic()
    assert failure.hold_then_exit_code(now, env={}, sleep=slept.append) == failure.EXIT_PERMANENT
    assert slept == []
    assert failure.hold_then_exit_code(now, env={"SUPERVISOR_ENABLED": "1"}, sleep=slept.append) == 78
    assert len(slept) == 1 and 0 < slept[0] <= failure.HOLD_S
