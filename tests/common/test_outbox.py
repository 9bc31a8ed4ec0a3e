import uuid

import pytest

from common.outbox import NAMESPACE, Outbox, record_id


@pytest.mark.parametrize("key", [("signals", "EURUSD", 1483308000),
                                 ("acks", "EURUSD", 1483308000, "OPEN", "x-O", 0, 123),
                                 ("acks", "SYN01", None, "CLOSE", "", 2, 0), ("events", "é", 1.5)])
def test_record_id_is_the_uuid5_of_its_natural_key(key):
    """Ids stored by earlier versions (made with uuid.uuid5) stay the ids of the same records."""
    assert record_id(*key) == str(uuid.uuid5(NAMESPACE, "|".join(map(str, key))))


def test_record_id_is_deterministic_per_natural_key():
    assert record_id("trades", "EURUSD", 1483308000, "OPEN") == record_id("trades", "EURUSD", 1483308000, "OPEN")
    assert record_id("trades", "EURUSD", 1483308000, "OPEN") != record_id("trades", "EURUSD", 1483311600, "OPEN")
    assert record_id("trades", "x") != record_id("events", "x")


def test_records_stay_until_acknowledged_and_are_retried_with_the_same_ids():
    box = Outbox(max_batch=2)
    for i in range(3):
        box.add("trades", {"id": f"t{i}"})
    box.add("events", {"id": "e0"})
    assert box.next_batch() == ("trades", [{"id": "t0"}, {"id": "t1"}])
    assert box.next_batch() is None  # one batch in flight at a time
    box.on_failure()  # timeout: nothing lost
    assert box.next_batch() == ("trades", [{"id": "t0"}, {"id": "t1"}])
    box.on_reply(["t0"], {})  # partial ack: t1 is retried
    assert box.next_batch() == ("trades", [{"id": "t1"}, {"id": "t2"}])
    box.on_reply(["t1", "t2"], {})
    assert box.next_batch() == ("events", [{"id": "e0"}])
    box.on_reply([], {"e0": "invalid"})
    assert len(box) == 0 and box.acked == 3 and box.rejected == {"e0": "invalid"}


def test_adding_the_same_id_twice_keeps_one_record():
    box = Outbox()
    box.add("trades", {"id": "a", "v": 1})
    box.add("trades", {"id": "a", "v": 1})
    assert len(box) == 1


def test_a_record_without_id_is_refused():
    with pytest.raises(ValueError, match="needs a string 'id'"):
        Outbox().add("trades", {"symbol": "EURUSD"})
