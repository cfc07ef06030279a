"""Our DimeClient and the original DiME2 client (PyPI dime-client, run in its
own venv) exchange every type both ways, over unix and tcp.

The original encodes with dimeb when the server says so: our client
handshakes with dimeb, so the server switches everyone to dimeb (the old
client is told with a "reregister" meta message). Values the old client
cannot handle at all (bool arrays: tag 0x1F is our extension; rank-0
matrices, which its decoder crashes on; numpy scalars other than float64)
are checked to fail on its side, not ours.
"""

import numpy as np
import pytest

import dime

from oldclient import OldClientError
from same import assert_same
from test_types import F32_NAN_PAYLOAD, INT64_MAX, INT64_MIN, NAN_PAYLOAD, UINT64_MAX, rand

C3 = rand((2, 3, 4), "float64")
M = rand((3, 5), "complex64")

# Values both clients can encode, and what the other side decodes.
# (id, value, as our client decodes it, as the old client decodes it); None: the same.
COMMON = [
    ("none", None, None, None),
    ("true", True, None, None),
    ("false", False, None, None),
    ("int", -42, None, None),
    ("int64-max", INT64_MAX, None, None),
    ("int64-min", INT64_MIN, None, None),
    ("float", 1.25, None, None),
    ("neg-zero", -0.0, None, None),
    ("inf", float("-inf"), None, None),
    ("nan-payload", NAN_PAYLOAD, None, None),
    ("complex", complex(1, -0.0), None, None),
    ("complex-zero-imag", 2 + 0j, None, None),
    ("np-float64", np.float64(0.5), 0.5, 0.5),
    ("empty-str", "", None, None),
    ("str", "héllo 😀 wörld", None, None),
    ("list", [1, "a", None, [2.5, True]], None, None),
    ("tuple", (1, (2, "x")), [1, [2, "x"]], [1, [2, "x"]]),
    ("dict", {"a": 1, "b": {"c": [1.5]}, "not a field": "x"}, None, None),
    ("dict-int-keys", {1: "one", 2: "two"}, None, None),
    ("list-of-dicts", [{"a": 1}, {"a": 2}], None, None),
    ("1d", np.arange(5.0), None, None),
    ("2d-c", rand((3, 4), "float64"), None, None),
    ("2d-f", rand((3, 4), "int16", "F"), None, None),
    ("1xN", np.arange(4.0).reshape(1, 4), np.arange(4.0), np.arange(4.0)),
    ("Nx1", np.arange(4, dtype=np.int32).reshape(4, 1), np.arange(4, dtype=np.int32),
     np.arange(4, dtype=np.int32)),
    ("3d-c", C3, None, None),
    ("3d-noncontiguous", C3[:, ::-1, ::2], np.ascontiguousarray(C3[:, ::-1, ::2]),
     np.ascontiguousarray(C3[:, ::-1, ::2])),
    ("4d", rand((2, 3, 2, 2), "uint16"), None, None),
    ("complex-matrix", M, None, None),
    ("complex-strided", M[::2, ::-1], np.ascontiguousarray(M[::2, ::-1]), np.ascontiguousarray(M[::2, ::-1])),
    ("f8-special", np.array([np.nan, NAN_PAYLOAD, np.inf, -np.inf, -0.0]), None, None),
    ("f4-special", np.array([F32_NAN_PAYLOAD, -0.0, np.inf], np.float32), None, None),
    ("int64-extremes", np.array([INT64_MIN, INT64_MAX]), None, None),
    ("uint64-extremes", np.array([0, UINT64_MAX], np.uint64), None, None),
    ("c16-zero-imag", np.zeros(2, np.complex128), None, None),
    ("empty-0x3", np.empty((0, 3)), None, None),
    ("empty-3x0-int8", np.zeros((3, 0), np.int8), None, None),
    ("empty-3d", np.zeros((2, 0, 2), np.float32), None, None),
    ("big-endian", np.arange(6.0).reshape(2, 3).astype(">f8"), np.arange(6.0).reshape(2, 3),
     np.arange(6.0).reshape(2, 3)),
    ("array-in-dict", {"m": np.eye(2), "s": "x"}, None, None),
] + [
    (f"dtype-{dt}", rand((3, 2), dt), None, None)
    for dt in ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
               "float32", "float64", "complex64", "complex128"]
]

# Values only our client can encode: what the old client decodes them as.
OURS_ONLY = [
    ("np-int8", np.int8(-5), -5),
    ("np-int16", np.int16(3), 3),
    ("np-int32", np.int32(-7), -7),
    ("np-uint8", np.uint8(200), 200),
    ("np-uint16", np.uint16(60000), 60000),
    ("np-uint32", np.uint32(4000000000), 4000000000),
    ("np-uint64", np.uint64(UINT64_MAX), UINT64_MAX),
    ("int-beyond-int64", 1 << 63, 1 << 63),
    ("np-float32", np.float32(1.5), 1.5),
    ("np-complex64", np.complex64(1 + 2j), 1 + 2j),
    ("np-bool", np.bool_(False), False),
    ("dict-mixed-keys", {1: "a", "b": 2, None: 3}, {1: "a", "b": 2, None: 3}),
]

# Values only the old client can encode that we decode: (id, value, ours).
OLD_ONLY = [
    ("0d", np.array(2.5), np.array(2.5)),
    ("0d-int8", np.array(-1, np.int8), np.array(-1, np.int8)),
]


def expected(value, override):
    return value if override is None else override


@pytest.fixture
def mixed(server, transport):
    ours = server.client(transport, "g")     # first: the server's serialization is dimeb
    old = server.old(transport, "g")
    assert old.attr("serialization") == "dimeb"
    return ours, old


def check_all(cases, got):
    failures = []
    assert list(got) == [c[0] for c in cases], "names and order"
    for case_id, want in ((c[0], c[1]) for c in cases):
        try:
            assert_same(want, got[case_id], case_id)
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n".join(failures)


def test_ours_to_old(mixed):
    ours, old = mixed
    cases = [(c[0], c[1], c[3]) for c in COMMON] + [(c[0], c[1], c[2]) for c in OURS_ONLY]
    ours.send_r("g", **{c[0]: c[1] for c in cases})
    got = old.call("sync_r")
    check_all([(c[0], expected(c[1], c[2])) for c in cases], got)


def test_old_to_ours(mixed):
    ours, old = mixed
    cases = [(c[0], c[1], c[2]) for c in COMMON] + OLD_ONLY
    old.call("send_r", "g", **{c[0]: c[1] for c in cases})
    assert ours.wait(10) >= 1
    got = ours.sync_r()
    check_all([(c[0], expected(c[1], c[2])) for c in cases], got)


def test_workspace_and_broadcast_both_ways(mixed):
    ours, old = mixed
    ours["w"] = np.arange(6, dtype=np.int64).reshape(2, 3)
    ours.broadcast("w")
    assert old.call("sync") == {"w"}
    assert_same(ours["w"], old.call("__getitem__", "w"))
    old.call("broadcast_r", back=[1, "two", {"three": 3.0}])
    assert ours.sync() == {"back"}
    assert ours["back"] == [1, "two", {"three": 3.0}]
    assert old.call("sync_r") == {}          # broadcast never reaches the sender
    assert ours.sync_r() == {}


def test_group_mixing_both_clients(server, transport):
    ours1 = server.client(transport, "g")
    old1 = server.old(transport, "g")
    old2 = server.old(transport, "g")
    old1.call("send_r", "g", x=np.eye(3))
    for got in (ours1.sync_r(), old1.call("sync_r"), old2.call("sync_r")):
        assert_same(np.eye(3), got["x"])
    assert sorted(ours1.devices()) == ["g"] == sorted(old1.call("devices"))
    old2.call("leave", "g")
    ours1.send_r("g", y=1)
    assert old2.call("sync_r") == {}
    assert old1.call("sync_r") == {"y": 1}


def test_wait_wakes_for_the_old_clients_message(mixed):
    ours, old = mixed
    with pytest.raises(TimeoutError):
        ours.wait(0.2)
    old.call("send_r", "g", z="now")
    assert ours.wait(10) == 1
    assert ours.sync_r() == {"z": "now"}
    ours.send_r("g", back="then")
    assert old.call("wait") >= 1


def test_bool_arrays_are_our_extension_the_old_client_cannot_read(mixed):
    ours, old = mixed
    ours.send_r("g", b=np.array([True, False]))
    with pytest.raises(OldClientError) as info:
        old.call("sync_r")
    assert info.value.kind == "KeyError"       # its decoder has no tag 0x1F


def test_rank0_matrices_crash_the_old_decoder_not_ours(mixed):
    ours, old = mixed
    ours.send_r("g", z=np.array(1.0))
    with pytest.raises(OldClientError):
        old.call("sync_r")


def test_old_client_cannot_encode_numpy_scalars_or_bool_arrays(mixed):
    _, old = mixed
    for v in (np.float32(1), np.array([True])):
        with pytest.raises(OldClientError):
            old.call("send_r", "g", v=v)


def test_pickle_from_an_old_client_raises_naming_the_variable(server, transport):
    """An old client that connected first talks pickle; when ours connects the
    server switches to dimeb. The old client's first send still goes out as
    pickle (it learns of the switch from the reply), then it re-sends the
    batch in dimeb: we report the pickle one clearly and get the dimeb copy."""
    old = server.old(transport, "g")
    assert old.attr("serialization") == "pickle"
    ours = server.client(transport, "g")
    old.call("send_r", "g", pickled=[1, 2, 3])
    assert old.attr("serialization") == "dimeb"
    with pytest.raises(dime.DimeCodecError) as info:
        ours.sync_r()
    assert "pickled" in str(info.value) and "pickle" in str(info.value)
    assert ours.sync_r() == {"pickled": [1, 2, 3]}
    ours.send_r("g", after=True)
    assert old.call("sync_r")["after"] is True    # (it also got its own messages: it is in g)
