function test_map_keys()
% Maps whose keys sit on the edges of dime_mex's struct-or-containers.Map
% rule (issue 21): prefixes of the marker field name, the marker itself,
% the marker with more after it, keys with a NUL, non-ASCII keys,
% 63/64-character keys. (No empty key: Octave 7's containers.Map cannot
% hold one.) Each map is stored by Python
% (py_map_keys.py) and by Octave in a share and read back here; the
% result must be the struct or containers.Map the rule says.
%
% run.sh runs this test with AddressSanitizer preloaded, so reading a key
% past its length (dime_value_get_string's bytes are not NUL-terminated)
% aborts the test even when the bytes after it happen to compare right.
sock = getenv('DIME_SOCK');
S = sprintf('octave-map-keys-%d', getpid());
MARK = 'dime__containers_Map__';
d = dime('ipc', sock);

% {share key, expected Octave value} for what py_map_keys.py stores.
want = {
    'p_prefix4',          struct('dime', 1)
    'p_prefix21',         struct(MARK(1:end-1), 1)
    'p_prefix1',          struct('d', 1)
    'p_marker',           containers.Map({MARK}, {1})
    'p_marker_plus',      struct([MARK '_'], 1)
    'p_marker_and_other', containers.Map({'d', MARK}, {1, 2})
    'p_prefixes',         struct('d', 1, 'dime', 4, 'dime__cont', 10, MARK(1:21), 21)
    'p_nul_key',          containers.Map({['a' char(0) 'b']}, {1})
    'p_nul_after_marker', containers.Map({[MARK char(0)]}, {1})
    'p_63',               struct(repmat('x', 1, 63), 1)
    'p_64',               containers.Map({repmat('x', 1, 64)}, {1})
    'p_utf8',             containers.Map({'é'}, {1})
    'p_nested',           struct('outer', containers.Map({MARK}, {struct('dime', 2)}), ...
                                 'list', {{struct('dime_', 3)}})
};

py = getenv('DIME_PYTHON');
here = fileparts(mfilename('fullpath'));
% env -u: the Python side is not under test, so not under ASan either.
[st, out] = system(sprintf('env -u LD_PRELOAD "%s" "%s" "%s" "%s" 2>&1', py, ...
                           fullfile(here, 'py_map_keys.py'), sock, S));
dt_check('map keys: python stores the maps', st == 0 && ~isempty(strfind(out, 'stored')), out);
for i = 1:size(want, 1)
    try
        [ok, why] = dt_same(d.share_get(want{i, 1}, 'share', S), want{i, 2});
    catch e
        ok = false;
        why = [e.identifier ': ' e.message];
    end
    dt_check(['map keys from python: ' want{i, 1}], ok, why);
end

% The same maps made in Octave (containers.Map, as dime.m sends any map),
% stored and read back: the keys come back from the server, not from the
% bytes Octave sent.
for i = 1:size(want, 1)
    w = want{i, 2};
    if isstruct(w)
        v = containers.Map(fieldnames(w)', struct2cell(w)');
    else
        v = w;
    end
    key = ['o' want{i, 1}(2:end)];
    if isstruct(w)
        w = orderfields(w);  % a containers.Map hands its keys over sorted
    end
    try
        d.share_set(key, v, 'share', S);
        [ok, why] = dt_same(d.share_get(key, 'share', S), w);
    catch e
        ok = false;
        why = [e.identifier ': ' e.message];
    end
    dt_check(['map keys from octave: ' key], ok, why);
end

% Through messages too (sync converts with the same code, once per value).
d.join('mapkeys');
m = containers.Map({MARK, MARK(1:4)}, {1, 2});
s = struct(MARK(1:21), 3);
d.send('mapkeys', 'm', 's');
clear m s;
d.sync();
dt_check('map keys by message: marker key stays a Map', ...
         dt_same(m, containers.Map({MARK, MARK(1:4)}, {1, 2})), class(m));
dt_check('map keys by message: marker prefix stays a struct', ...
         dt_same(s, struct(MARK(1:21), 3)), class(s));

d.share_clear('share', S);
d.close();
end
