import pytest

from common.order_label import (
    MAX_CLIENT_ORDER_ID,
    MAX_LABEL,
    OrderAction,
    OrderLabel,
    OrderLabelError,
    balance_field,
    client_order_id,
    encode,
    is_ours,
    parse,
    parse_client_order_id,
    symbol_tag,
)

BAR = 1_764_115_200  # 2025-11-26 00:00 UTC


@pytest.mark.parametrize("symbol,bar_time,action,seq,expected", [
    ("EURUSD", BAR, OrderAction.OPEN, 0, "EURUSD-t6b400-O"),
    ("EURUSD", BAR, OrderAction.CLOSE, 0, "EURUSD-t6b400-C"),
    ("EURUSD", BAR + 900, OrderAction.OPEN, 0, "EURUSD-t6b4p0-O"),
    ("EURUSD", BAR, OrderAction.MANUAL_CLOSE, 37, "EURUSD-t6b400-M11"),
    ("XAUUSD", 0, OrderAction.EMERGENCY_CLOSE, 0, "XAUUSD-0-E"),
])
def test_client_order_id(symbol, bar_time, action, seq, expected):
    cid = client_order_id(symbol, bar_time, action, seq)
    assert cid == expected
    parsed = parse_client_order_id(cid)
    assert (parsed.bar_time, parsed.action, parsed.seq) == (bar_time, action, seq)
    assert parsed.is_for(symbol)


def test_client_order_id_is_deterministic_and_distinct():
    ids = {client_order_id(s, t, a) for s in ("EURUSD", "US500", "US500.cash", "us500")
           for t in (BAR, BAR + 900) for a in OrderAction}
    assert len(ids) == 4 * 2 * len(OrderAction)
    once = client_order_id("EURUSD", BAR, OrderAction.OPEN)
    assert client_order_id("EURUSD", BAR, OrderAction.OPEN) == once


@pytest.mark.parametrize("symbol", ["US500.cash", "EURUSD.pro", "GER40/EUR", "AVERYLONGSYMBOLNAME123",
                                    "日経"])
def test_odd_symbols_get_a_safe_tagged_id(symbol):
    cid = client_order_id(symbol, 2**40, OrderAction.OPEN, seq=2**40)
    assert len(cid) <= MAX_CLIENT_ORDER_ID
    assert "|" not in cid and "." not in cid
    assert parse_client_order_id(cid).is_for(symbol)
    assert not parse_client_order_id(cid).is_for("EURUSD")


def test_symbol_tag_plain_symbol_is_itself():
    assert symbol_tag("EURUSD") == "EURUSD"
    assert symbol_tag("US500.cash").startswith("US500CASH_")


@pytest.mark.parametrize("bad", ["", "EURUSD", "EURUSD-x-Q", "eurusd-1-O", "EURUSD--O"])
def test_parse_client_order_id_rejects(bad):
    with pytest.raises(OrderLabelError):
        parse_client_order_id(bad)


def test_client_order_id_rejects_negative_time():
    with pytest.raises(OrderLabelError):
        client_order_id("EURUSD", -1, OrderAction.OPEN)


CID = "EURUSD-t6b400-O"
LABELS = [
    (OrderLabel(CID, 3, 1, 1, 10234, 0.5, 12.4, 0.8, "a1b2c3d4"),
     "OT1|EURUSD-t6b400-O|3|1|1|10234|0.5|12.40|0.8|a1b2c3d4"),
    (OrderLabel(CID), "OT1|EURUSD-t6b400-O||||||||"),
    (OrderLabel(CID, 0, 6, 3, -120, -2.5, -0.05, 15.0, ""),
     "OT1|EURUSD-t6b400-O|0|6|3|-120|-2.5|-0.05|15.0|"),
]


@pytest.mark.parametrize("label,text", LABELS)
def test_label_round_trip(label, text):
    assert encode(label) == text
    assert parse(text) == label
    assert encode(parse(text)) == text
    assert len(text) <= MAX_LABEL


def test_worst_case_label_fits():
    longest_cid = client_order_id("AVERYLONGSYMBOLNAME123", 2**40, OrderAction.MANUAL_CLOSE, seq=10**9)
    label = OrderLabel(longest_cid, 99, 6, 3, -999_999_999, -999.9, -9_999_999.99, 999.9, "ffffffff")
    assert len(encode(label)) <= MAX_LABEL


def test_label_too_long_is_an_error_not_a_truncation():
    label = OrderLabel(CID, 3, 1, 1, 10234, 0.5, 1e80, 0.8, "a1b2c3d4")
    with pytest.raises(OrderLabelError, match="limit is 100"):
        encode(label)


@pytest.mark.parametrize("label", [
    OrderLabel("not|an|id"),
    OrderLabel(CID, action_index=7),
    OrderLabel(CID, intensity=4),
    OrderLabel(CID, hmm_state=-1),
    OrderLabel(CID, model_hash="XYZ"),
    OrderLabel(CID, model_hash="a1b2c3d4e"),
])
def test_encode_rejects_invalid_fields(label):
    with pytest.raises(OrderLabelError):
        encode(label)


@pytest.mark.parametrize("text", [
    "OT2|EURUSD-t6b400-O|3|1|1|10234|0.5|12.40|0.8|",
    "OT1|EURUSD-t6b400-O|3|1|1|10234|0.5|12.40",
    "OT1|EURUSD-t6b400-O|x|1|1|10234|0.5|12.40|0.8|",
    "O|2.0|3|1|1|10234|0.5|0.00",  # the reference's old format is not ours
    "manual trade",
])
def test_parse_rejects(text):
    with pytest.raises(OrderLabelError):
        parse(text)


@pytest.mark.parametrize("text,ours", [("OT1|x", True), ("manual", False), ("", False), (None, False)])
def test_is_ours(text, ours):
    assert is_ours(text) == ours


def test_balance_field_truncates():
    assert balance_field(10234.99) == 10234
    assert balance_field(-5.5) == -5
