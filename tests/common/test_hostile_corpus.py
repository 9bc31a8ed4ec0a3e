"""The hostile suite's corpus (tests/system/hostile_corpus.py): seeded, every kind present, every frame refused by
the wire's decoder, and no numeric op argument takes NaN or an infinity."""

from system import hostile_corpus as hc

from common import wire


def test_the_corpus_is_deterministic_and_holds_every_kind():
    first = list(hc.corpus(7, 2 * (len(hc.KINDS) + 1), router=True))
    assert first == list(hc.corpus(7, 2 * (len(hc.KINDS) + 1), router=True))
    assert first != list(hc.corpus(8, 2 * (len(hc.KINDS) + 1), router=True))
    assert {f.kind for f in first} == {*hc.KINDS, hc.NO_DELIMITER}
    assert hc.NO_DELIMITER not in {f.kind for f in hc.corpus(7, 100)}


def test_every_corpus_frame_is_refused_by_the_decoder_with_a_wire_code():
    codes = set()
    for frame in hc.corpus(3, 400):
        try:
            wire.decode_request(list(frame.parts))
        except wire.WireError as err:
            codes.add(err.code)
        else:
            raise AssertionError(f"{frame.kind}: accepted {frame.parts[0][:80]!r}")
        assert frame.size <= wire.MAX_REQUEST_BYTES  # within the size gate: the decoder itself is what is tried
    assert codes >= {wire.BAD_MSGPACK, wire.BAD_ENVELOPE, wire.BAD_VERSION, wire.UNKNOWN_OP, wire.BAD_BODY,
                     wire.BAD_FRAMES}


def test_no_numeric_op_argument_accepts_nan_or_infinity():
    assert hc.accepted_nonfinite() == []
