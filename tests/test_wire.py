"""The wire form: round trips, what encode refuses, and what decode refuses (only WireError)."""

from __future__ import annotations

import contextlib
import enum
import gc
import weakref

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgpack import ExtType, Timestamp

from abaco._channel_values import (
    CHANNEL_CLASSES,
    Channel,
    Kind,
    QueueChannel,
    ReplyChannel,
    Transport,
)
from abaco._wire import CHANNEL_EXT_CODE, DEFAULT_MAX_DEPTH, decode, encode
from abaco.errors import WireError

INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1

addresses = st.text(
    st.characters(min_codepoint=33, exclude_categories=["Cs"]), min_size=1, max_size=40
)
channels = st.builds(
    lambda cls, transport, address: cls(transport, address),
    st.sampled_from(list(CHANNEL_CLASSES.values())),
    st.sampled_from(Transport),
    addresses,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, UINT64_MAX)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | channels
)
keys = st.text() | st.integers(INT64_MIN, UINT64_MAX)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=25,
)


def as_received(value):
    """What a value looks like after a round trip: tuples become lists."""
    if isinstance(value, list | tuple):
        return [as_received(item) for item in value]
    if isinstance(value, dict):
        return {key: as_received(item) for key, item in value.items()}
    return value


def channels_in(value):
    if isinstance(value, Channel):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from channels_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from channels_in(item)


def ext(code, payload):
    return msgpack.packb(ExtType(code, payload))


def channel_ext(fields):
    return ext(CHANNEL_EXT_CODE, msgpack.packb(fields))


def nested_lists(depth):
    """A frame of ``depth`` nested one-element arrays around a 0."""
    return b"\x91" * depth + b"\x00"


# -- round trips ------------------------------------------------------------------------


@given(values)
def test_any_value_round_trips(value):
    received = decode(encode(value, max_depth=100), max_depth=100)
    assert received == as_received(value)


@given(values)
def test_received_channels_are_equal_hash_equal_and_of_the_same_class(value):
    sent = list(channels_in(value))
    received = list(channels_in(decode(encode(value, max_depth=100), max_depth=100)))
    assert received == sent
    assert [hash(c) for c in received] == [hash(c) for c in sent]
    assert [type(c) for c in received] == [type(c) for c in sent]


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("transport", list(Transport))
def test_each_kind_and_transport_round_trips(kind, transport):
    channel = CHANNEL_CLASSES[kind](transport, "ns:ch:x")
    received = decode(encode(channel))
    assert type(received) is CHANNEL_CLASSES[kind]
    assert received == channel
    assert (received.kind, received.transport, received.address) == (kind, transport, "ns:ch:x")


def test_the_same_channel_received_twice_is_equal():
    channel = ReplyChannel(Transport.REDIS, "ns:ch:reply:1")
    first, second = decode(encode([channel, {"again": channel}]))
    assert first == second["again"] == decode(encode(channel))
    assert hash(first) == hash(second["again"]) == hash(channel)
    assert {first, second["again"], channel} == {channel}


def test_tuples_become_lists():
    assert decode(encode((1, (2, [3, (4,)]), {"t": ()}))) == [1, [2, [3, [4]]], {"t": []}]


def test_scalars_keep_their_types():
    value = [None, True, 0, INT64_MIN, UINT64_MAX, -0.0, 1.5, "é", b"\x00\xff", {1: "a", "b": 2}]
    received = decode(encode(value))
    assert received == value
    assert [type(v) for v in received] == [type(v) for v in value]


def test_bind_is_applied_to_every_decoded_channel():
    channel = QueueChannel(Transport.REDIS, "q")
    received = decode(encode({"a": channel, "b": [channel]}), bind=lambda c: ("bound", c))
    assert received == {"a": ("bound", channel), "b": [("bound", channel)]}


def test_a_bound_channel_encodes_as_unbound_and_is_not_kept_alive():
    class FakeHub:
        pass

    hub = FakeHub()
    bound = QueueChannel(Transport.REDIS, "q:bound", hub=hub)
    assert encode(bound) == encode(QueueChannel(Transport.REDIS, "q:bound"))
    gone = weakref.ref(hub)
    del hub, bound
    gc.collect()
    assert gone() is None


# -- encode refuses ---------------------------------------------------------------------


class Color(enum.StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "match"),
    [
        pytest.param({1, 2}, "type builtins.set", id="set"),
        pytest.param(object(), "type builtins.object", id="object"),
        pytest.param([Color.RED], r"type tests\.test_wire\.Color", id="str-subclass"),
        pytest.param(2**64, "int outside", id="int-too-big"),
        pytest.param([INT64_MIN - 1], "int outside", id="int-too-small"),
        pytest.param({1.5: 1}, "map key of type float", id="float-key"),
        pytest.param({"ok": {None: 1}}, "map key of type NoneType", id="none-key"),
        pytest.param({True: 1}, "map key of type bool", id="bool-key"),
        pytest.param({b"k": 1}, "map key of type bytes", id="bytes-key"),
        pytest.param({(1,): 1}, "map key of type tuple", id="tuple-key"),
        pytest.param(bytearray(b"x"), "type bytearray", id="bytearray"),
        pytest.param([memoryview(b"x")], "type memoryview", id="memoryview"),
        pytest.param(ExtType(5, b"x"), "type ExtType", id="raw-ext"),
        pytest.param({"t": Timestamp(1)}, "type Timestamp", id="timestamp"),
        pytest.param(
            Channel(Transport.REDIS, "a"), "type abaco._channel_values.Channel", id="base"
        ),
        pytest.param("\ud800", "surrogates", id="surrogate"),
    ],
)
def test_encode_refuses_what_is_not_in_the_format(value, match):
    with pytest.raises(WireError, match=match):
        encode(value)


def test_encode_refuses_nesting_past_max_depth_and_cycles():
    deep: list[object] = []
    for _ in range(DEFAULT_MAX_DEPTH - 1):
        deep = [deep]
    assert decode(encode(deep)) == deep
    with pytest.raises(WireError, match="deeper than 32 levels"):
        encode([deep])
    with pytest.raises(WireError, match="deeper than 3 levels"):
        encode({"a": [{"b": []}]}, max_depth=3)
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(WireError, match="deeper than"):
        encode(cycle)
    very_deep: list[object] = []
    for _ in range(2000):
        very_deep = [very_deep]
    with pytest.raises(WireError, match="nested too deep"):
        encode(very_deep, max_depth=10_000)  # past Python's recursion limit


# -- decode refuses ---------------------------------------------------------------------

VALID = encode({"a": [1, 2, ReplyChannel(Transport.ZMQ, "tcp://h:1")], "b": b"\x00"})


# Faults the decoder itself finds, with no library exception to chain from.
FOUND_BY_DECODER = {
    "arity",
    "bool-key",
    "bytes-key",
    "channel-key",
    "float-key",
    "none-key",
    "not-array",
    "not-str",
    "timestamp-ext",
    "unknown-ext",
}


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        pytest.param(b"", "malformed frame: .*incomplete", id="empty"),
        pytest.param(VALID[:-1], "malformed frame: .*incomplete", id="truncated"),
        pytest.param(VALID + b"\x00\x01", "2 trailing bytes", id="trailing"),
        pytest.param(b"\xc1", "starts no msgpack type", id="reserved-byte"),
        pytest.param(b"\xa1\xff", "malformed frame: .*utf-8", id="bad-utf8"),
        pytest.param(ext(5, b"x"), "unknown extension type 5", id="unknown-ext"),
        pytest.param(msgpack.packb(Timestamp(1)), "type Timestamp", id="timestamp-ext"),
        pytest.param(channel_ext(["queue", "redis"]), "3 strings.*array of 2", id="arity"),
        pytest.param(channel_ext(["queue", "redis", 1]), "3 strings.*int", id="not-str"),
        pytest.param(channel_ext({"k": 1}), "3 strings.*got a dict", id="not-array"),
        pytest.param(ext(CHANNEL_EXT_CODE, b""), "channel payload.*incomplete", id="empty-payload"),
        pytest.param(
            ext(CHANNEL_EXT_CODE, msgpack.packb(["queue", "redis", "a"]) + b"\x00"),
            "channel payload.*extra data",
            id="payload-trailing",
        ),
        pytest.param(channel_ext(["pipe", "redis", "a"]), "'pipe' is not a valid Kind", id="kind"),
        pytest.param(channel_ext(["queue", "tcp", "a"]), "'tcp' is not a valid Transport", id="tr"),
        pytest.param(channel_ext(["queue", "redis", "a b"]), "channel address", id="address"),
        pytest.param(channel_ext(["queue", "redis", ""]), "channel address", id="no-address"),
        pytest.param(msgpack.packb({1.5: 1}), "map key of type float", id="float-key"),
        pytest.param(msgpack.packb({"a": {None: 1}}), "map key of type NoneType", id="none-key"),
        pytest.param(msgpack.packb({True: 1}), "map key of type bool", id="bool-key"),
        pytest.param(msgpack.packb([{b"k": 1}]), "map key of type bytes", id="bytes-key"),
        pytest.param(b"\x81\x91\x01\x01", "unhashable type: 'list'", id="list-key"),
        pytest.param(
            b"\x81" + channel_ext(["queue", "redis", "a"]) + b"\x01",
            "map key of type QueueChannel",
            id="channel-key",
        ),
    ],
)
def test_decode_refuses_a_malformed_frame(request, frame, match):
    with pytest.raises(WireError, match=match) as caught:
        decode(frame)
    # Chained from the library's exception, unless the decoder found the fault itself.
    found_by_decoder = request.node.callspec.id in FOUND_BY_DECODER
    assert (caught.value.__cause__ is None) == found_by_decoder


def test_an_oversized_frame_is_refused_before_it_is_unpacked():
    assert decode(encode("x" * 100), max_size=102) == "x" * 100
    with pytest.raises(WireError, match="101 bytes is over the limit of 100 bytes") as caught:
        decode(b"\xc1" * 101, max_size=100)  # garbage: unpacking would say so instead
    assert caught.value.__cause__ is None


def test_declared_lengths_cannot_outgrow_the_frame():
    with pytest.raises(WireError, match="exceeds max_array_len"):
        decode(b"\xdd\x7f\xff\xff\xff")  # an array of 2**31 - 1 items, in 5 bytes


def test_nesting_past_max_depth_is_refused():
    assert decode(nested_lists(DEFAULT_MAX_DEPTH)) is not None
    with pytest.raises(WireError, match="deeper than 32 levels"):
        decode(nested_lists(DEFAULT_MAX_DEPTH + 1))
    with pytest.raises(WireError, match="deeper than 2 levels"):
        decode(msgpack.packb({"a": {"b": [1]}}), max_depth=2)
    with pytest.raises(WireError, match="nested too deep"):
        decode(nested_lists(5000))  # past msgpack's own stack, whatever max_depth says
    with pytest.raises(WireError, match="nested too deep"):
        decode(nested_lists(1020), max_depth=10_000)  # past Python's recursion limit


# -- decode raises nothing but WireError ------------------------------------------------


def decode_or_wire_error(frame, **limits):
    with contextlib.suppress(WireError):
        decode(frame, **limits)


@settings(max_examples=500)
@given(st.binary(max_size=200), st.integers(1, 300), st.integers(0, 40))
def test_random_bytes_raise_nothing_but_wire_error(frame, max_size, max_depth):
    decode_or_wire_error(frame)
    decode_or_wire_error(frame, max_size=max_size, max_depth=max_depth)


@st.composite
def mutated_frames(draw):
    frame = bytearray(encode(draw(values), max_depth=100))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(frame)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and at < len(frame):
            frame[at] = draw(st.integers(0, 255))
        elif action == "insert":
            frame[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif action == "delete":
            del frame[at : at + draw(st.integers(1, 4))]
        else:
            del frame[at:]
    return bytes(frame)


@settings(max_examples=500)
@given(mutated_frames())
def test_mutated_frames_raise_nothing_but_wire_error(frame):
    decode_or_wire_error(frame)
