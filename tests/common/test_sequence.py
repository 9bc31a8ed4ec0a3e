import pytest

from common.sequence import Delivery, SequenceTracker


@pytest.mark.parametrize(
    "stream, expected",
    [
        ([("a", 1, 1), ("a", 1, 2), ("a", 1, 3)], [Delivery.FIRST, Delivery.IN_ORDER, Delivery.IN_ORDER]),
        ([("a", 1, 5), ("a", 1, 9)], [Delivery.FIRST, Delivery.GAP]),
        ([("a", 1, 5), ("a", 2, 1)], [Delivery.FIRST, Delivery.NEW_EPOCH]),
        ([("a", 2, 5), ("a", 1, 6)], [Delivery.FIRST, Delivery.STALE_EPOCH]),
        ([("a", 1, 5), ("a", 1, 5), ("a", 1, 4)], [Delivery.FIRST, Delivery.DUPLICATE, Delivery.DUPLICATE]),
        ([("a", 1, 1), ("b", 1, 7), ("a", 1, 2)], [Delivery.FIRST, Delivery.FIRST, Delivery.IN_ORDER]),
    ],
)
def test_classification(stream, expected):
    t = SequenceTracker()
    assert [t.observe(*m).delivery for m in stream] == expected


def test_counters_report_gaps_missed_restarts_and_drops():
    t = SequenceTracker()
    seen = [t.observe("a", 1, 1), t.observe("a", 1, 4), t.observe("a", 1, 4), t.observe("a", 2, 1)]
    assert seen[1].missed == 2
    assert [s.accept for s in seen] == [True, True, False, True]
    assert t.counters() == {"gaps": 1, "missed": 2, "restarts": 1, "dropped": 1}
