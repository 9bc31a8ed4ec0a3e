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


def test_every_registered_event_round_trips_with_its_required_fields():
    samples = {
        int: 1,
        float: 1.5,
        str: "s",
        bool: True,
        dict: {"k": 1},
        list: [1],
    }
    for name, cls in messages.EVENTS.items():
        spec = schema.fields_of(cls)
        raw = {f.name: samples[next(k for k in f.kinds if k in samples)] for f in spec if f.required}
        record = messages.from_wire(cls, raw)
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
