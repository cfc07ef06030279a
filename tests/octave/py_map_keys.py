"""Python side of test_map_keys.m: stores maps with awkward keys in a share
for Octave to read (our binding, ``dime.Share``).

    python py_map_keys.py SOCKET SHARE_NAME

The keys are chosen around dime_mex's map rules: a map becomes a struct
only when every key is a distinct valid field name other than the marker
``dime__containers_Map__`` (see valid_field_name in matlab/mex_convert.c).
Keys that are prefixes of the marker, the marker itself, the marker with
something appended, keys with a NUL, non-ASCII keys and keys
at MATLAB's 63-character field-name limit are each stored under the share
key of the same name as in test_map_keys.m, which says what Octave must
get back. Prints "stored N" when done.
"""

import sys

import dime

MARK = "dime__containers_Map__"

VALUES = {
    "p_prefix4": {"dime": 1.0},
    "p_prefix21": {MARK[:-1]: 1.0},
    "p_prefix1": {"d": 1.0},
    "p_marker": {MARK: 1.0},
    "p_marker_plus": {MARK + "_": 1.0},
    "p_marker_and_other": {"d": 1.0, MARK: 2.0},
    "p_prefixes": {MARK[:n]: float(n) for n in (1, 4, 10, 21)},
    "p_nul_key": {"a\0b": 1.0},
    "p_nul_after_marker": {MARK + "\0": 1.0},
    "p_63": {"x" * 63: 1.0},
    "p_64": {"x" * 64: 1.0},
    "p_utf8": {"é": 1.0},
    "p_nested": {"outer": {MARK: {"dime": 2.0}}, "list": [{MARK[:5]: 3.0}]},
}


def main():
    sock, name = sys.argv[1], sys.argv[2]
    s = dime.Share(sock, name)
    for k, v in VALUES.items():
        s[k] = v
    s.close()
    print(f"stored {len(VALUES)}")


if __name__ == "__main__":
    main()
