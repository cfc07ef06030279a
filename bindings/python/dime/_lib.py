"""Loading libdime with ctypes, and the signature of every symbol of dime.h.

The library is looked for, in order:

1. ``$DIME_LIBRARY`` (a path to the shared library), an explicit override;
2. the one bundled in this package (``dime/libdime.so``), which the
   dime-broker wheel carries (``pip install ./bindings/python`` builds it);
3. for development, ``target/release/libdime.so`` then
   ``target/debug/libdime.so`` of the repository this package sits in
   (searched upwards from the package and from the virtual environment, so
   an in-tree checkout and a venv inside the repository find it).

``SIGNATURES`` declares ``restype``/``argtypes`` for every function of
``include/dime.h``; ``tests/test_header.py`` checks the two agree.
Opaque handles (``dime_client *``, ``dime_value *``, ``dime_pattern *`` ...) are ``c_void_p``.
"""

import ctypes
import os
import pathlib
import sys
from ctypes import (CFUNCTYPE, POINTER, c_bool, c_char_p, c_double, c_float, c_int, c_int8,
                    c_int16, c_int32, c_int64, c_size_t, c_uint8, c_uint16, c_uint32, c_uint64,
                    c_void_p)

_LIBNAMES = {"darwin": "libdime.dylib", "win32": "dime.dll"}
LIBNAME = _LIBNAMES.get(sys.platform, "libdime.so")

# ---------------------------------------------------------------- constants

STATUS_OK = 0
STATUS_NULL_ARGUMENT = 7001
STATUS_INVALID_ARGUMENT = 7002
STATUS_WRONG_TYPE = 7003
STATUS_OUT_OF_RANGE = 7004
STATUS_NOT_FOUND = 7005
STATUS_CONNECTION_LOST = 7101
STATUS_CLOSED = 7102
STATUS_PROTOCOL_ERROR = 7103
STATUS_SERVER_ERROR = 7104
STATUS_TIMEOUT = 7105
STATUS_CODEC_ERROR = 7106
STATUS_UNSUPPORTED = 7107
STATUS_NOT_PERMITTED = 7108
STATUS_REMOTE_ERROR = 7201
STATUS_PROVIDER_LOST = 7202
STATUS_CANCELLED = 7203
STATUS_NO_PROVIDER = 7204
STATUS_END_OF_STREAM = 7205
STATUS_PANIC = 7999

# file transfer (dime_files_*)
STATUS_CANCELLED = 7203
STATUS_NO_PROVIDER = 7204
STATUS_FILE_NOT_FOUND = 7301
STATUS_PERMISSION_DENIED = 7302
STATUS_CHECKSUM_MISMATCH = 7303
STATUS_FILE_CHANGED = 7304
STATUS_IO_ERROR = 7305

KIND_INVALID = -1
KIND_NULL = 0
KIND_BOOL = 1
KIND_INT8 = 3
KIND_INT16 = 4
KIND_INT32 = 5
KIND_INT64 = 6
KIND_UINT8 = 7
KIND_UINT16 = 8
KIND_UINT32 = 9
KIND_UINT64 = 10
KIND_SINGLE = 11
KIND_DOUBLE = 12
KIND_COMPLEX_SINGLE = 13
KIND_COMPLEX_DOUBLE = 14
KIND_MATRIX = 16
KIND_STRING = 32
KIND_LIST = 33
KIND_MAP = 34

CLASS_INT8 = 3
CLASS_INT16 = 4
CLASS_INT32 = 5
CLASS_INT64 = 6
CLASS_UINT8 = 7
CLASS_UINT16 = 8
CLASS_UINT32 = 9
CLASS_UINT64 = 10
CLASS_SINGLE = 11
CLASS_DOUBLE = 12
CLASS_COMPLEX_SINGLE = 13
CLASS_COMPLEX_DOUBLE = 14
CLASS_LOGICAL = 15

CLASS_ANY = 0          # dime_pattern_add_matrix: any class

LAYOUT_COLUMN_MAJOR = 0
LAYOUT_ROW_MAJOR = 1

CONNECT_DIME2 = 0
CONNECT_LAYOUT = 1
CONNECT_SHM = 2
CONNECT_SHM_NOW = 4
CONNECT_CUT_THROUGH = 8
CONNECT_DEFAULT = CONNECT_LAYOUT | CONNECT_SHM | CONNECT_SHM_NOW

WAIT_FOREVER = -1
SYNC_ALL = -1
PIPELINE_WINDOW = 1024  # dime_set_pipeline: the window DIME_PIPELINE=on gives
RANK_ANY = -1          # dime_pattern_add_matrix: any rank

# ---------------------------------------------------------------- signatures

P = POINTER
status = c_int      # enum dime_status
kind = c_int        # enum dime_kind
cls = c_uint32      # dime_class
h = c_void_p        # any opaque handle: dime_client *, dime_value *, dime_messages *
ph = P(c_void_p)    # an out handle (dime_value **) or an array of handles
strs = P(c_char_p)  # const char *const *
fnptr = c_void_p    # a C function pointer (pass ctypes.cast(CFUNCTYPE(...)(f), c_void_p))

#: dime_call_fn: int32_t (*)(void *userdata, const dime_value *args, dime_value **result)
CALL_FN = CFUNCTYPE(c_int32, c_void_p, c_void_p, P(c_void_p))
#: dime_drop_fn: void (*)(void *userdata)
DROP_FN = CFUNCTYPE(None, c_void_p)
#: ``int32_t (*)(void *userdata, const dime_value *args, dime_request *request)``
STREAM_FN = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_void_p)

#: name -> (restype, argtypes), one entry per function of include/dime.h.
SIGNATURES = {
    "dime_last_error": (c_char_p, []),
    "dime_last_errno": (c_int, []),
    "dime_version": (c_char_p, []),
    # values
    "dime_value_kind": (kind, [h]),
    "dime_value_free": (None, [h]),
    "dime_value_clone": (status, [h, ph]),
    "dime_value_new_null": (h, []),
    "dime_value_new_bool": (h, [c_bool]),
    "dime_value_new_int8": (h, [c_int8]),
    "dime_value_new_int16": (h, [c_int16]),
    "dime_value_new_int32": (h, [c_int32]),
    "dime_value_new_int64": (h, [c_int64]),
    "dime_value_new_uint8": (h, [c_uint8]),
    "dime_value_new_uint16": (h, [c_uint16]),
    "dime_value_new_uint32": (h, [c_uint32]),
    "dime_value_new_uint64": (h, [c_uint64]),
    "dime_value_new_single": (h, [c_float]),
    "dime_value_new_double": (h, [c_double]),
    "dime_value_new_complex_single": (h, [c_float, c_float]),
    "dime_value_new_complex_double": (h, [c_double, c_double]),
    "dime_value_get_bool": (status, [h, P(c_bool)]),
    "dime_value_get_int8": (status, [h, P(c_int8)]),
    "dime_value_get_int16": (status, [h, P(c_int16)]),
    "dime_value_get_int32": (status, [h, P(c_int32)]),
    "dime_value_get_int64": (status, [h, P(c_int64)]),
    "dime_value_get_uint8": (status, [h, P(c_uint8)]),
    "dime_value_get_uint16": (status, [h, P(c_uint16)]),
    "dime_value_get_uint32": (status, [h, P(c_uint32)]),
    "dime_value_get_uint64": (status, [h, P(c_uint64)]),
    "dime_value_get_single": (status, [h, P(c_float)]),
    "dime_value_get_double": (status, [h, P(c_double)]),
    "dime_value_get_complex_single": (status, [h, P(c_float), P(c_float)]),
    "dime_value_get_complex_double": (status, [h, P(c_double), P(c_double)]),
    "dime_value_new_string": (status, [c_char_p, c_size_t, ph]),
    "dime_value_get_string": (status, [h, P(c_void_p), P(c_size_t)]),
    # matrices
    "dime_class_size": (c_size_t, [cls]),
    "dime_value_new_matrix": (status, [cls, c_size_t, P(c_size_t), c_void_p, ph]),
    "dime_value_new_matrix_borrowed": (status, [cls, c_size_t, P(c_size_t), c_void_p, ph]),
    "dime_value_new_matrix_borrowed_row_major": (status, [cls, c_size_t, P(c_size_t), c_void_p, ph]),
    "dime_matrix_class": (status, [h, P(cls)]),
    "dime_matrix_rank": (status, [h, P(c_size_t)]),
    "dime_matrix_dims": (status, [h, P(P(c_size_t))]),
    "dime_matrix_numel": (status, [h, P(c_size_t)]),
    "dime_matrix_data": (status, [h, P(c_void_p), P(c_size_t)]),
    "dime_matrix_take_data": (status, [h, P(c_void_p), P(c_size_t)]),
    "dime_matrix_layout": (status, [h, P(c_uint32)]),
    "dime_matrix_stored_data": (status, [h, P(c_void_p), P(c_size_t)]),
    "dime_matrix_take_stored_data": (status, [h, P(c_void_p), P(c_size_t)]),
    "dime_matrix_copy_column_major": (status, [h, c_void_p, c_size_t]),
    "dime_data_free": (None, [c_void_p, c_size_t]),
    # lists and maps
    "dime_value_new_list": (h, []),
    "dime_value_new_map": (h, []),
    "dime_value_list_len": (status, [h, P(c_size_t)]),
    "dime_value_list_get": (status, [h, c_size_t, ph]),
    "dime_value_list_append": (status, [h, h]),
    "dime_value_list_take": (status, [h, c_size_t, ph]),
    "dime_value_map_len": (status, [h, P(c_size_t)]),
    "dime_value_map_key_at": (status, [h, c_size_t, ph]),
    "dime_value_map_value_at": (status, [h, c_size_t, ph]),
    "dime_value_map_get": (status, [h, c_char_p, ph]),
    "dime_value_map_set": (status, [h, c_char_p, h]),
    "dime_value_map_set_value": (status, [h, h, h]),
    "dime_value_map_take_at": (status, [h, c_size_t, ph]),
    # client
    "dime_connect": (status, [c_char_p, ph]),
    "dime_connect_with": (status, [c_char_p, h, ph]),
    "dime_connect_options_new": (status, [ph]),
    "dime_connect_options_set_flags": (status, [h, c_uint32]),
    "dime_connect_options_set_token": (status, [h, c_char_p]),
    "dime_connect_options_set_tls_ca": (status, [h, c_char_p]),
    "dime_connect_options_set_tls_client_cert": (status, [h, c_char_p, c_char_p]),
    "dime_connect_options_free": (None, [h]),
    "dime_close": (status, [h]),
    "dime_client_free": (None, [h]),
    "dime_join": (status, [h, strs, c_size_t]),
    "dime_leave": (status, [h, strs, c_size_t]),
    "dime_send": (status, [h, c_char_p, c_char_p, h]),
    "dime_send_many": (status, [h, c_char_p, strs, ph, c_size_t]),
    "dime_broadcast": (status, [h, c_char_p, h]),
    "dime_broadcast_many": (status, [h, strs, ph, c_size_t]),
    "dime_set_pipeline": (status, [h, c_size_t]),
    "dime_pipeline_window": (status, [h, P(c_size_t)]),
    "dime_unacknowledged": (status, [h, P(c_size_t)]),
    "dime_flush": (status, [h]),
    "dime_wait": (status, [h, c_int64, P(c_size_t)]),
    "dime_devices": (status, [h, ph]),
    "dime_devices_encoded": (status, [h, P(c_void_p), P(c_size_t)]),
    "dime_server_supports": (status, [h, c_char_p, P(c_bool)]),
    "dime_server_extensions": (status, [h, ph]),
    "dime_sync": (status, [h, c_int64, ph]),
    "dime_messages_len": (c_size_t, [h]),
    "dime_messages_get": (status, [h, c_size_t, P(c_void_p), ph]),
    "dime_messages_take": (status, [h, c_size_t, ph]),
    "dime_messages_free": (None, [h]),
    "dime_sync_encoded": (status, [h, c_int64, ph]),
    "dime_messages_payload": (status, [h, c_size_t, P(c_void_p), P(c_void_p), P(c_size_t)]),
    # values as dimeb bytes (the lean path, _dimeb.py)
    "dime_value_encode": (status, [h, P(c_void_p), P(c_size_t)]),
    "dime_value_decode": (status, [c_void_p, c_size_t, ph]),
    "dime_send_encoded": (status, [h, c_char_p, c_char_p, c_void_p, c_size_t]),
    "dime_send_encoded_many": (status, [h, c_char_p, strs, P(c_void_p), P(c_size_t), c_size_t]),
    "dime_broadcast_encoded": (status, [h, c_char_p, c_void_p, c_size_t]),
    "dime_broadcast_encoded_many": (status, [h, strs, P(c_void_p), P(c_size_t), c_size_t]),
    # shared dictionaries ("share": NULL or "" is the default one)
    "share_set": (status, [h, c_char_p, c_char_p, h]),
    "share_get": (status, [h, c_char_p, c_char_p, ph]),
    "share_del": (status, [h, c_char_p, c_char_p, P(c_bool)]),
    "share_pop": (status, [h, c_char_p, c_char_p, ph]),
    "share_contains": (status, [h, c_char_p, c_char_p, P(c_bool)]),
    "share_keys": (status, [h, c_char_p, ph]),
    "share_len": (status, [h, c_char_p, P(c_size_t)]),
    "share_clear": (status, [h, c_char_p]),
    "share_get_many": (status, [h, c_char_p, strs, c_size_t, ph]),
    "share_set_many": (status, [h, c_char_p, h]),
    "share_incr": (status, [h, c_char_p, c_char_p, h, ph]),
    "share_cas": (status, [h, c_char_p, c_char_p, h, h, P(c_bool)]),
    "share_wait_key": (status, [h, c_char_p, c_char_p, c_int64, ph]),
    "share_lock": (status, [h, c_char_p, c_char_p, c_int64]),
    "share_try_lock": (status, [h, c_char_p, c_char_p]),
    "share_unlock": (status, [h, c_char_p, c_char_p]),
    "share_lock_lease": (status, [h, c_char_p, c_char_p, c_int64, c_int64, P(c_uint64)]),
    "share_lock_renew": (status, [h, c_char_p, c_char_p, c_int64, P(c_uint64)]),
    "share_set_fenced": (status, [h, c_char_p, c_char_p, h, c_uint64]),
    "share_del_fenced": (status, [h, c_char_p, c_char_p, c_uint64, P(c_bool)]),
    # watches (dime_watch_position * is passed as a c_void_p)
    "dime_watch_share": (status, [h, c_char_p, c_char_p, c_void_p, ph]),
    "dime_watch_space": (status, [h, c_char_p, c_void_p, ph]),
    "dime_watch_groups": (status, [h, c_char_p, c_void_p, ph]),
    "dime_watch_next": (status, [h, c_int64, ph]),
    "dime_watch_get_position": (status, [h, c_void_p]),
    "dime_watch_free": (None, [h]),
    "dime_event_kind": (c_int32, [h]),
    "dime_event_seq": (c_uint64, [h]),
    "dime_event_topic": (c_char_p, [h]),
    "dime_event_key": (c_char_p, [h]),
    "dime_event_value": (h, [h]),
    "dime_event_client": (c_int64, [h]),
    "dime_event_message": (c_char_p, [h]),
    "dime_event_free": (None, [h]),
    # tuple spaces
    "dime_pattern_new": (h, []),
    "dime_pattern_free": (None, [h]),
    "dime_pattern_len": (c_size_t, [h]),
    "dime_pattern_add_value": (status, [h, h]),
    "dime_pattern_add_any": (status, [h]),
    "dime_pattern_add_type": (status, [h, c_char_p]),
    "dime_pattern_add_matrix": (status, [h, cls, c_int32]),
    "dime_pattern_add_range": (status, [h, c_double, c_double, c_bool, c_bool]),
    "dime_out": (status, [h, c_char_p, h]),
    "dime_in": (status, [h, c_char_p, h, c_int64, ph]),
    "dime_rd": (status, [h, c_char_p, h, c_int64, ph]),
    "dime_inp": (status, [h, c_char_p, h, ph]),
    "dime_rdp": (status, [h, c_char_p, h, ph]),
    "dime_count": (status, [h, c_char_p, h, P(c_size_t)]),
    # remote calls: calling (dime_future *)
    "dime_call_options": (status, [h, c_size_t, c_int64]),
    "dime_call": (status, [h, c_char_p, h, c_int64, ph]),
    "dime_call_encoded": (status, [h, c_char_p, c_void_p, c_size_t, c_int64, ph]),
    "dime_future_wait": (status, [h, c_int64]),
    "dime_future_done": (c_int32, [h]),
    "dime_future_result": (status, [h, ph]),
    "dime_future_payload": (status, [h, P(c_void_p), P(c_size_t)]),
    "dime_future_error": (status, [h, ph, ph, ph]),
    "dime_future_cancel": (status, [h]),
    "dime_future_free": (None, [h]),
    "dime_future_id": (c_uint64, [h]),
    "dime_track_completions": (status, [h]),
    "dime_next_completed": (status, [h, c_int64, P(c_uint64)]),
    # remote calls: providing (dime_request *)
    "dime_provide": (status, [h, c_char_p, c_uint32]),
    "dime_provide_own_queue": (status, [h, c_char_p, c_uint32]),
    "dime_unprovide": (status, [h, c_char_p]),
    "dime_next_call": (status, [h, c_int64, ph]),
    "dime_next_call_of": (status, [h, c_char_p, c_int64, ph]),
    "dime_request_function": (c_char_p, [h]),
    "dime_request_args": (h, [h]),
    "dime_request_take_args": (status, [h, ph]),
    "dime_request_payload": (status, [h, P(c_void_p), P(c_size_t)]),
    "dime_reply": (status, [h, h]),
    "dime_reply_encoded": (status, [h, c_void_p, c_size_t]),
    "dime_reply_error": (status, [h, c_char_p, c_char_p, c_char_p]),
    "dime_request_free": (None, [h]),
    "dime_provide_callback": (status, [h, c_char_p, c_uint32, CALL_FN, c_void_p, DROP_FN]),
    # streams: consuming (dime_stream *) and producing (a stream's dime_request *)
    "dime_stream_open": (status, [h, c_char_p, h, c_uint64, c_uint64, c_int64, ph]),
    "dime_stream_next": (status, [h, c_int64, ph]),
    "dime_stream_next_encoded": (status, [h, c_int64, P(P(c_uint8)), P(c_size_t)]),
    "dime_stream_next_many": (status, [h, c_int64, c_size_t, c_size_t, P(P(c_uint8)),
                                       P(P(c_size_t)), P(c_size_t)]),
    "dime_stream_item": (status, [h, ph]),
    "dime_stream_error": (status, [h, ph, ph, ph]),
    "dime_stream_close": (None, [h]),
    "dime_request_is_stream": (c_int32, [h]),
    "dime_stream_send": (status, [h, h, c_int64]),
    "dime_stream_send_encoded": (status, [h, c_void_p, c_size_t, c_int64]),
    "dime_stream_end": (status, [h]),
    "dime_provide_stream_callback": (status, [h, c_char_p, c_uint32, STREAM_FN, c_void_p, DROP_FN]),
    # the broker inside this process (dime_server *)
    "dime_server_start": (status, [strs, c_size_t, ph]),
    "dime_server_address": (c_char_p, [h, c_size_t]),
    "dime_server_stop": (status, [h]),
    # file transfer (dime.files)
    "dime_files_serve": (status, [c_char_p, c_char_p, c_char_p, c_bool, ph]),
    "dime_files_serve_embedded": (status, [strs, c_size_t, c_char_p, c_char_p, c_bool, ph]),
    "dime_files_server_address": (c_char_p, [h, c_size_t]),
    "dime_files_server_stop": (status, [h]),
    "dime_files_download": (status, [c_char_p, c_char_p, c_int32, strs, c_size_t, c_char_p,
                                     h, fnptr, c_void_p, h]),
    "dime_files_upload": (status, [c_char_p, c_char_p, c_int32, strs, c_size_t, c_char_p,
                                   c_char_p, h, fnptr, c_void_p, h]),
}


# ---------------------------------------------------------------- loading

def _repo_candidates():
    """target/{release,debug}/libdime.* of every ancestor of the package and the venv."""
    seen = set()
    starts = [pathlib.Path(__file__).resolve().parent, pathlib.Path(sys.prefix).resolve()]
    for start in starts:
        for d in [start, *start.parents]:
            if d in seen:
                continue
            seen.add(d)
            for profile in ("release", "debug"):
                p = d / "target" / profile / LIBNAME
                if p.is_file():
                    yield p


def find_library():
    """The path of the libdime that will be loaded (see the module docstring)."""
    env = os.environ.get("DIME_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise ImportError(f"DIME_LIBRARY={env!r} does not name a file")
        return env
    beside = pathlib.Path(__file__).resolve().parent / LIBNAME
    if beside.is_file():
        return str(beside)
    for p in _repo_candidates():
        return str(p)
    raise ImportError(
        f"cannot find {LIBNAME}: this dime package has none bundled ({beside} is "
        f"missing); install the dime-broker wheel (pip install ./bindings/python builds "
        f"it), set DIME_LIBRARY to the library's path, or build it with "
        f"`cargo build --release` in the dime repository")


def load(path=None):
    """Loads libdime and declares every function of SIGNATURES on it."""
    path = path or find_library()
    lib = ctypes.CDLL(path)   # CDLL releases the GIL during every call
    missing = []
    for name, (restype, argtypes) in SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise ImportError(f"{path} lacks {', '.join(missing)} (stale build? rebuild libdime)")
    lib.path = path
    return lib


lib = load()
