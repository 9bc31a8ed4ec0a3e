import msgpack
import pytest

from common import messages, schema, wire


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


GOOD_HB = {
    "service": "executor",
    "pid": 1,
    "epoch": 2,
    "state": "RUNNING",
    "uptime_s": 1.0,
    "rss_bytes": 3,
}


def envelope(**over):
    env = {"v": 1, "type": "hb", "src": "executor", "epoch": 2, "seq": 1, "ts": 5, "body": dict(GOOD_HB)}
    env.update(over)
    return env


def test_pub_round_trip_keeps_every_field():
    bar = messages.Bar("EURUSD", "H1", 1483308000, 1.05236, 1.05253, 1.05221, 1.05227, 143539993.3)
    frames = wire.encode_pub("bar.EURUSD.H1", "connector", 7, 42, 123, bar)
    env = wire.decode_pub(frames)
    assert (env.topic, env.type, env.src, env.epoch, env.seq, env.ts) == (
        "bar.EURUSD.H1",
        "bar",
        "connector",
        7,
        42,
        123,
    )
    assert env.body == bar


@pytest.mark.parametrize(
    "frames, code",
    [
        ([b"hb.x"], wire.BAD_FRAMES),
        ([b"hb.x", b"a", b"b"], wire.BAD_FRAMES),
        ([b"\xff\xfe", pack(envelope())], wire.BAD_TOPIC),
        ([b"hb.x", b"\xc1\xc1garbage"], wire.BAD_MSGPACK),
        ([b"hb.x", pack([1, 2, 3])], wire.BAD_ENVELOPE),
        ([b"hb.x", pack(envelope(v=99))], wire.BAD_VERSION),
        ([b"hb.x", pack({k: v for k, v in envelope().items() if k != "seq"})], wire.BAD_ENVELOPE),
        ([b"hb.x", pack(envelope(seq="1"))], wire.BAD_ENVELOPE),
        ([b"hb.x", pack(envelope(seq=True))], wire.BAD_ENVELOPE),
        ([b"hb.x", pack({k: v for k, v in envelope().items() if k != "body"})], wire.BAD_ENVELOPE),
        ([b"hb.x", pack(envelope(type="no_such_type"))], wire.UNKNOWN_TYPE),
        ([b"hb.x", pack(envelope(body={"service": "x"}))], wire.BAD_BODY),
        ([b"hb.x", pack(envelope(body={**GOOD_HB, "pid": "one"}))], wire.BAD_BODY),
        ([b"hb.x", pack(envelope(body={**GOOD_HB, "pid": None}))], wire.BAD_BODY),
        ([b"hb.x", pack(envelope(body=[1]))], wire.BAD_BODY),
    ],
)
def test_malformed_pub_frames_get_their_own_code(frames, code):
    with pytest.raises(wire.WireError) as exc:
        wire.decode_pub(frames)
    assert exc.value.code == code


def test_unknown_fields_are_ignored_for_forward_compatibility():
    env = wire.decode_pub([b"hb.x", pack(envelope(body={**GOOD_HB, "new_field": 1}))])
    assert env.body.service == "executor"


def test_float_fields_accept_integers_but_not_booleans():
    bar = {"symbol": "X", "timeframe": "H1", "time": 1, "open": 1, "high": 2, "low": 1, "close": 2, "volume": 0}
    assert messages.from_wire(messages.Bar, bar).open == 1
    with pytest.raises(messages.SchemaError, match="^open: expected float, got bool$"):
        messages.from_wire(messages.Bar, {**bar, "open": True})


def test_request_round_trip_and_reply():
    data = wire.encode_request("step", "r-1", messages.StepArgs("executor.sync", {"a": 1}))
    req = wire.decode_request([data])
    assert (req.op, req.id, req.args) == ("step", "r-1", messages.StepArgs("executor.sync", {"a": 1}))
    reply = wire.decode_reply([wire.encode_reply("r-1", messages.StepResult("executor.sync", True))], "step")
    assert reply.ok and reply.result == messages.StepResult("executor.sync", True)
    err = wire.decode_reply([wire.encode_error("r-1", "boom", "it broke")], "step")
    assert (err.ok, err.error_code, err.error_message) == (False, "boom", "it broke")


@pytest.mark.parametrize(
    "frames, code, has_id",
    [
        ([b"a", b"b"], wire.BAD_FRAMES, False),
        ([b"\xc1"], wire.BAD_MSGPACK, False),
        ([pack("just a string")], wire.BAD_ENVELOPE, False),
        ([pack({"v": 2, "op": "status", "id": "1"})], wire.BAD_VERSION, False),
        ([pack({"v": 1, "id": "1"})], wire.BAD_ENVELOPE, False),
        ([pack({"v": 1, "op": "status"})], wire.BAD_ENVELOPE, False),
        ([pack({"v": 1, "op": "fly", "id": "7"})], wire.UNKNOWN_OP, True),
        ([pack({"v": 1, "op": "step", "id": "7", "args": {}})], wire.BAD_BODY, True),
        ([pack({"v": 1, "op": "step", "id": "7", "args": {"step": 3}})], wire.BAD_BODY, True),
    ],
)
def test_malformed_requests(frames, code, has_id):
    with pytest.raises(wire.WireError) as exc:
        wire.decode_request(frames)
    assert exc.value.code == code
    assert isinstance(exc.value, wire.RequestError) == has_id


SAMPLES = {int: 1, float: 1.5, str: "s", bool: True, dict: {"k": 1}, list: [1]}


def minimal(cls: type) -> dict:
    """The required fields of ``cls`` filled with samples; a list of records (a run's bars) holds one minimal one."""
    raw = {}
    for f in schema.fields_of(cls):
        if not f.required:
            continue
        kind = next((k for k in f.kinds if k in SAMPLES), None)
        raw[f.name] = SAMPLES[kind] if kind is not None else [
            minimal(getattr(messages, f.expected.removeprefix("list of ")))]
    return raw


def test_every_registered_event_round_trips_with_its_required_fields():
    for name, cls in messages.EVENTS.items():
        record = messages.from_wire(cls, minimal(cls))
        frames = wire.encode_pub(f"{name}.x", "t", 1, 1, 1, record)
        assert wire.decode_pub(frames).body == record


@pytest.mark.parametrize("over", [{"v": True}, {"v": 1.0}, {"epoch": 2.0}, {"src": b"executor"}])
def test_an_envelope_field_of_a_near_type_is_refused_by_name(over):
    with pytest.raises(wire.WireError) as exc:
        wire.decode_pub([b"hb.x", pack(envelope(**over))])
    assert exc.value.code == wire.BAD_ENVELOPE and f"'{next(iter(over))}'" in exc.value.message


def test_a_reply_whose_ok_is_not_a_boolean_is_refused():
    with pytest.raises(wire.WireError) as exc:
        wire.decode_reply([pack({"v": 1, "id": "r", "ok": 1, "result": {}})], "ping")
    assert exc.value.code == wire.BAD_ENVELOPE and "'ok'" in exc.value.message
    with pytest.raises(wire.WireError) as exc:
        wire.decode_reply([pack({"v": True, "id": "r", "ok": True, "result": {}})], "ping")
    assert exc.value.code == wire.BAD_ENVELOPE and "'v'" in exc.value.message


def test_a_request_with_a_near_type_id_or_op_is_refused():
    for raw in ({"v": 1, "op": "ping", "id": 7}, {"v": 1, "op": b"ping", "id": "7"},
                {"v": 1.0, "op": "ping", "id": "7"}):
        with pytest.raises(wire.WireError) as exc:
            wire.decode_request([pack(raw)])
        assert exc.value.code == wire.BAD_ENVELOPE and not isinstance(exc.value, wire.RequestError), raw


# ---- limits (issue 16) -------------------------------------------------------------------------

def amplification_ping(n: int) -> bytes:
    """A valid ``ping`` whose args are an array of ``n`` empty lists (one 72-byte list per byte when decoded)."""
    head = b"\x84" + b"".join(pack(x) for x in ("v", 1, "op", "ping", "id", "amp-1", "args"))
    return head + b"\xdd" + n.to_bytes(4, "big") + b"\x90" * n


def peak_alloc(fn) -> int:
    """The peak of Python allocations while ``fn`` runs (tracemalloc), in bytes."""
    import tracemalloc
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def refused(fn) -> wire.WireError:
    with pytest.raises(wire.WireError) as exc:
        fn()
    return exc.value


def test_the_amplification_frame_is_refused_unread_with_a_clear_error():
    frame = amplification_ping(20_000_000)
    peak = peak_alloc(lambda: refused(lambda: wire.decode_request([frame])))
    err = refused(lambda: wire.decode_request([frame]))
    assert err.code == wire.TOO_LARGE
    assert f"request of {len(frame)} bytes, over the limit of {wire.MAX_REQUEST_BYTES}" in err.message
    assert peak < 1_000_000  # nothing was built (decoded, it is 1.4 GB of lists)


def test_the_amplification_frame_as_a_reply_or_a_pub_payload_is_refused_by_msgpack_limits():
    frame = amplification_ping(20_000_000)  # under MAX_MESSAGE_BYTES: the array's length is what is refused
    err = refused(lambda: wire.decode_reply([frame], "ping"))
    assert err.code == wire.TOO_LARGE and "exceeds max_array_len" in err.message
    peak = peak_alloc(lambda: refused(lambda: wire.decode_pub([b"hb.x", frame])))
    assert peak < 1_000_000


def test_a_dense_frame_under_every_length_limit_is_refused_after_a_bounded_number_of_containers():
    # 2 MB of empty maps in arrays of 60 000: each array's length is allowed, their number is not
    maps = pack({"v": 1, "op": "ping", "id": "x", "args": [[{}] * 60_000] * 30})
    assert len(maps) < wire.MAX_REQUEST_BYTES
    peak = peak_alloc(lambda: refused(lambda: wire.decode_request([maps])))
    err = refused(lambda: wire.decode_request([maps]))
    assert err.code == wire.TOO_LARGE and "arrays and maps" in err.message
    assert peak < 20_000_000  # decoded whole, 1.8 M dicts: ~130 MB


@pytest.mark.parametrize("size", [64 * 1024 + 1, 3_000_000])
def test_legitimate_large_messages_decode_within_the_limits(size):
    n = size // 51 + 1  # bars of history, as the connector answers them: [time, o, h, l, c, volume]
    bars = [[1_500_000_000 + i * 3600, 1.05236, 1.05253, 1.05221, 1.05227, 143539993.3] for i in range(n)]
    frame = wire.encode_reply("c-1", messages.HistoryResult("EURUSD", "H1", bars))
    assert len(frame) > wire.CHECKED_FROM
    reply = wire.decode_reply([frame], "history")
    assert reply.ok and reply.result.bars == bars


def test_a_large_legitimate_write_request_decodes():
    data = {f"k{j}": "v" * 40 for j in range(10)}
    records = [{"id": f"{i:036d}", "table": "events", "message": "m" * 400, "data": data} for i in range(200)]
    frame = wire.encode_request("write", "paper-1", messages.WriteArgs({"events": records}))
    assert len(frame) > wire.CHECKED_FROM
    assert wire.decode_request([frame]).args.tables == {"events": records}


def test_a_long_op_name_is_clipped_in_the_error():
    err = refused(lambda: wire.decode_request([pack({"v": 1, "op": "x" * 100_000, "id": "a-1", "args": {}})]))
    assert err.code == wire.UNKNOWN_OP and err.req_id == "a-1"
    assert len(err.message) < 200 and "...[100000 chars]" in err.message
    reply = wire.decode_reply([wire.encode_error("a-1", "handler_error", "y" * 100_000)], "ping")
    assert len(reply.error_message) == wire.MAX_ERROR_CHARS and reply.error_message.endswith("[100000 chars]")


def test_a_long_request_id_is_refused_not_echoed():
    err = refused(lambda: wire.decode_request([pack({"v": 1, "op": "ping", "id": "i" * 10_000, "args": {}})]))
    assert err.code == wire.BAD_ENVELOPE and not isinstance(err, wire.RequestError)
    assert "request id of 10000 chars" in err.message


def test_a_long_topic_or_type_is_refused_and_clipped():
    assert refused(lambda: wire.decode_pub([b"hb." + b"x" * 5000, pack(envelope())])).code == wire.BAD_TOPIC
    err = refused(lambda: wire.decode_pub([b"hb.x", pack(envelope(type="t" * 100_000))]))
    assert err.code == wire.UNKNOWN_TYPE and len(err.message) < 200


# frames the hostile suite found accepted (tests/system/hostile_corpus.py): a msgpack ext type inside a map field
# (step's args, query's where, signals_since's since) reached the handler as an ExtType or Timestamp object
EXTS = [msgpack.ExtType(5, b"abc"), msgpack.ExtType(0, b""), msgpack.Timestamp(1_700_000_000, 0)]


@pytest.mark.parametrize("ext", EXTS, ids=["ext", "empty-ext", "timestamp"])
@pytest.mark.parametrize("op,args", [
    ("step", {"step": "warmup", "args": {"k": None}}),
    ("query", {"table": "events", "where": {"k": None}}),
    ("signals_since", {"since": {"EURUSD": None}}),
])
def test_an_ext_type_inside_a_map_field_is_refused(ext, op, args):
    args = {k: ({kk: ext for kk in v} if isinstance(v, dict) else v) for k, v in args.items()}
    frame = pack({"v": 1, "op": op, "id": "x-1", "args": args})
    with pytest.raises(wire.WireError) as exc:
        wire.decode_request([frame])
    assert exc.value.code == wire.BAD_MSGPACK and "ext type" in exc.value.message


@pytest.mark.parametrize("ext", EXTS, ids=["ext", "empty-ext", "timestamp"])
def test_an_ext_type_is_refused_in_a_large_frame_and_a_pub_payload(ext):
    big = pack({"v": 1, "op": "query", "id": "x-2", "args": {"table": "events", "where": {"k": ext},
                                                              "pad": "p" * (wire.CHECKED_FROM + 10)}})
    with pytest.raises(wire.WireError) as exc:
        wire.decode_request([big])
    assert exc.value.code == wire.BAD_MSGPACK and "ext type" in exc.value.message
    with pytest.raises(wire.WireError) as exc:
        wire.decode_pub([b"hb.executor", pack(envelope(body={**GOOD_HB, "x": ext}))])
    assert exc.value.code == wire.BAD_MSGPACK
