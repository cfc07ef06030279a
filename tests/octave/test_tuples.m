function test_tuples()
% Tuple spaces from Octave (dime.m out/in/rd/inp/rdp/count): every kind
% of pattern field (exact values, dime.any, dime.type for every class
% name, dime.matrix, dime.range) against matching and non-matching
% values; in/rd/inp/rdp/count semantics, FIFO, timeouts, spaces; the type
% table through tuples; Octave <-> Python (py_share_peer.py): Octave puts
% tuples Python takes (with Python wildcards) and the reverse, and a
% blocking in/in_ woken by the other language's out.
sock = getenv('DIME_SOCK');
S = sprintf('octave-ts-%d', getpid());
d = dime('ipc', sock);
d2 = dime('ipc', sock);

% --- pattern fields: {name, value, field, matches?}
map = containers.Map({'a b'}, {1});
cases = {
    'any / number',            5,                  dime.any(),                 true
    'any / string',            'x',                dime.any(),                 true
    'any / null',              [],                 dime.any(),                 true
    'any / cell',              {1, 'a'},           dime.any(),                 true
    'type any',                int8(1),            dime.type('any'),           true
    'type int64',              int64(5),           dime.type('int64'),         true
    'type int64 / double',     5,                  dime.type('int64'),         false
    'type int64 / int32',      int32(5),           dime.type('int64'),         false
    'type int64 / int64 array', int64([1 2]),      dime.type('int64'),         false
    'type int8',               int8(-1),           dime.type('int8'),          true
    'type int16',              int16(-1),          dime.type('int16'),         true
    'type int32',              int32(-1),          dime.type('int32'),         true
    'type uint8',              uint8(1),           dime.type('uint8'),         true
    'type uint16',             uint16(1),          dime.type('uint16'),        true
    'type uint32',             uint32(1),          dime.type('uint32'),        true
    'type uint64',             intmax('uint64'),   dime.type('uint64'),        true
    'type uint64 / int64',     int64(1),           dime.type('uint64'),        false
    'type int8 / uint8',       uint8(1),           dime.type('int8'),          false
    'type double',             2.5,                dime.type('double'),        true
    'type double / single',    single(2.5),        dime.type('double'),        false
    'type double / matrix',    [1 2],              dime.type('double'),        false
    'type double / complex',   complex(1, 2),      dime.type('double'),        false
    'type single',             single(2),          dime.type('single'),        true
    'type single / double',    2,                  dime.type('single'),        false
    'type char',               'abc',              dime.type('char'),          true
    'type char / empty',       '',                 dime.type('char'),          true
    'type char / number',      5,                  dime.type('char'),          false
    'type char / cellstr',     {'a'},              dime.type('char'),          false
    'type string (alias)',     'abc',              dime.type('string'),        true
    'type logical',            true,               dime.type('logical'),       true
    'type logical / array',    [true false],       dime.type('logical'),       false
    'type logical / 1',        1,                  dime.type('logical'),       false
    'type bool (alias)',       false,              dime.type('bool'),          true
    'type cell',               {1, 2},             dime.type('cell'),          true
    'type cell / empty',       {},                 dime.type('cell'),          true
    'type cell / multi-row char', ['ab'; 'cd'],    dime.type('cell'),          true
    'type cell / char',        'a',                dime.type('cell'),          false
    'type struct',             struct('a', 1),     dime.type('struct'),        true
    'type struct / no fields', struct(),           dime.type('struct'),        true
    'type struct / Map',       map,                dime.type('struct'),        true
    'type containers.Map',     map,                dime.type('containers.Map'), true
    'type struct / number',    5,                  dime.type('struct'),        false
    'type null',               [],                 dime.type('null'),          true
    'type null / 0',           0,                  dime.type('null'),          false
    'type null / zeros(0,3)',  zeros(0, 3),        dime.type('null'),          false
    'type int / int8',         int8(1),            dime.type('int'),           true
    'type int / uint64',       uint64(1),          dime.type('int'),           true
    'type int / double',       1,                  dime.type('int'),           false
    'type float / double',     1,                  dime.type('float'),         true
    'type float / single',     single(1),          dime.type('float'),         true
    'type float / int8',       int8(1),            dime.type('float'),         false
    'type complex',            complex(1, 2),      dime.type('complex'),       true
    'type complex / zero imag', complex(1, 0),     dime.type('complex'),       true
    'type complex / real',     1,                  dime.type('complex'),       false
    'type complex double',     complex(1, 2),      dime.type('complex double'), true
    'type complex single',     complex(single(1), single(2)), dime.type('complex single'), true
    'type complex single / double', complex(1, 2), dime.type('complex single'), false
    'type matrix',             [1 2],              dime.type('matrix'),        true
    'type matrix / scalar',    5,                  dime.type('matrix'),        false
    'type matrix / string',    'ab',               dime.type('matrix'),        false
    'matrix double 2',         [1 2; 3 4],         dime.matrix('double', 2),   true
    'matrix double 2 / row',   [1 2 3],            dime.matrix('double', 2),   true
    'matrix double 2 / 3-D',   ones(2, 2, 2),      dime.matrix('double', 2),   false
    'matrix double 3 / 3-D',   ones(2, 2, 2),      dime.matrix('double', 3),   true
    'matrix double / 3-D',     ones(2, 2, 2),      dime.matrix('double'),      true
    'matrix double / single',  single([1 2]),      dime.matrix('double'),      false
    'matrix double / scalar',  5,                  dime.matrix('double'),      false
    'matrix double / empty',   zeros(0, 3),        dime.matrix('double', 2),   true
    'matrix any class rank 3', ones(2, 2, 2, 'int8'), dime.matrix('', 3),      true
    'matrix any',              uint16([1 2]),      dime.matrix(),              true
    'matrix ''any'' class',    uint16([1 2]),      dime.matrix('any', 2),      true
    'matrix single',           single([1 2]),      dime.matrix('single'),      true
    'matrix int16',            int16([1; 2]),      dime.matrix('int16', 2),    true
    'matrix uint64',           uint64([1 2]),      dime.matrix('uint64'),      true
    'matrix int16 / int32',    int32([1 2]),       dime.matrix('int16'),       false
    'matrix logical',          [true false],       dime.matrix('logical'),     true
    'matrix logical / scalar', true,               dime.matrix('logical'),     false
    'matrix complex double',   [1+2i 3],           dime.matrix('complex double'), true
    'matrix complex single',   complex(single([1 2]), single([0 1])), dime.matrix('complex single'), true
    'matrix double / complex', [1+2i 3],           dime.matrix('double'),      false
    'range in',                5,                  dime.range(0, 10),          true
    'range lo bound',          0,                  dime.range(0, 10),          true
    'range hi bound',          10,                 dime.range(0, 10),          true
    'range above',             10.5,               dime.range(0, 10),          false
    'range below',             -1,                 dime.range(0, 10),          false
    'range int8',              int8(3),            dime.range(0, 10),          true
    'range uint64',            uint64(3),          dime.range(0, 10),          true
    'range single',            single(3),          dime.range(0, 10),          true
    'range NaN',               NaN,                dime.range(0, 10),          false
    'range NaN / open',        NaN,                dime.range(),               false
    'range string',            'a',                dime.range(0, 10),          false
    'range matrix',            [1 2],              dime.range(0, 10),          false
    'range complex',           complex(1, 1),      dime.range(0, 10),          false
    'range logical',           true,               dime.range(0, 10),          false
    'range open lo',           -5,                 dime.range([], 0),          true
    'range open lo / above',   1,                  dime.range([], 0),          false
    'range open hi',           1e300,              dime.range(0, []),          true
    'range open hi / below',   -1,                 dime.range(0),              false
    'range -Inf..Inf',         -Inf,               dime.range(-Inf, Inf),      true
    'range int64 exact above', int64(9007199254740993), dime.range(int64(9007199254740992), []), true
    'range int64 exact below', int64(9007199254740991), dime.range(int64(9007199254740992), []), false
    'range int64 exact hi',    int64(9007199254740993), dime.range([], int64(9007199254740992)), false
    'range int64 exact lo',    int64(9007199254740995), dime.range(int64(9007199254740996), []), false
    'range uint64 max / 2^64', intmax('uint64'),   dime.range(2^64, []),       false
    'exact double',            5,                  5,                          true
    'exact double / int64',    int64(5),           5,                          false
    'exact int64',             int64(5),           int64(5),                   true
    'exact double / other',    6,                  5,                          false
    'exact -0 / 0',            -0,                 0,                          false
    'exact NaN / NaN',         NaN,                NaN,                        true
    'exact complex / real',    complex(1, 0),      1,                          false
    'exact matrix',            [1 2 3],            [1 2 3],                    true
    'exact matrix / shape',    [1; 2; 3],          [1 2 3],                    false
    'exact matrix / class',    single([1 2 3]),    [1 2 3],                    false
    'exact string',            'abc',              'abc',                      true
    'exact string / other',    'abd',              'abc',                      false
    'exact class-name string', 'int64',            'int64',                    true
    'exact class-name string / int64', int64(1),   'int64',                    false
    'exact logical',           true,               true,                       true
    'exact logical / 1',       1,                  true,                       false
    'exact null',              [],                 [],                         true
    'exact cell',              {1, 'x'},           {1, 'x'},                   true
    'exact cell / other',      {1, 'y'},           {1, 'x'},                   false
    'exact struct',            struct('a', 1),     struct('a', 1),             true
    'exact struct / other',    struct('a', 2),     struct('a', 1),             false
    'exact Map',               map,                containers.Map({'a b'}, {1}), true
    'exact 3-D int16',         int16(reshape(1:8, 2, 2, 2)), int16(reshape(1:8, 2, 2, 2)), true
};
for i = 1:size(cases, 1)
    d.out({'case', i, cases{i, 2}}, 'space', S);
end
for i = 1:size(cases, 1)
    try
        n = d.count({'case', i, cases{i, 3}}, 'space', S);
        ok = n == cases{i, 4};
        why = sprintf('count %d', n);
    catch e
        ok = false;
        why = [e.identifier ': ' e.message];
    end
    dt_check(['pattern ' cases{i, 1}], ok, why);
end
n = size(cases, 1);
dt_check('count with wildcards everywhere', d.count({'case', dime.any(), dime.any()}, 'space', S) == n, '');
dt_check('count in another space', d.count({'case', dime.any(), dime.any()}, 'space', [S '-x']) == 0, '');
dt_check('arity must match', d.count({'case', dime.any()}, 'space', S) == 0, '');
dt_check('count returns a double', isa(d.count({'case', 1, 5}, 'space', S), 'double'), '');
t = d.rd({'case', dime.range(2, 2), dime.any()}, 1, 'space', S);
dt_check('rd returns a 1xN cell copy', iscell(t) && isequal(size(t), [1 3]) && strcmp(t{3}, 'x') ...
         && d.count({'case', 2, 'x'}, 'space', S) == 1, '');
t = d.rdp({'case', 4, dime.type('cell')}, 'space', S);
dt_check('rdp returns a copy', isequal(t, {'case', 4, {1, 'a'}}) ...
         && d.count({'case', 4, dime.any()}, 'space', S) == 1, '');
t = d.inp({'case', 40, dime.any()}, 'space', S);
dt_check('inp takes the tuple (Map back as Map)', isa(t{3}, 'containers.Map') ...
         && d.count({'case', 40, dime.any()}, 'space', S) == 0, class(t{3}));
dt_check('inp of a taken tuple gives []', isequal(d.inp({'case', 40, dime.any()}, 'space', S), []), '');
dt_check('rdp with no match gives []', isequal(d.rdp({'nothing'}, 'space', S), []), '');
t = d.in({'case', 1, dime.any()}, 1, 'space', S);
dt_check('in takes the tuple', isequal(t, {'case', 1, 5}) && d.count({'case', 1, dime.any()}, 'space', S) == 0, '');
t = d.take({'case', 2, dime.any()}, 'space', S);
dt_check('take (alias of in) takes it', isequal(t, {'case', 2, 'x'}), '');
t = d.in_({'case', 3, dime.any()}, 0, 'space', S);
dt_check('in_ (alias of in) takes it', isequal(t, {'case', 3, []}), '');
first = find(cellfun(@(v) ischar(v) && rows(v) <= 1, cases(:, 2))' > 0 & (1:n) > 3, 1);
t = d2.in({'case', dime.type('double'), dime.type('char')}, 1, 'space', S);
dt_check('another connection takes the oldest match', isequal(t, {'case', first, cases{first, 2}}), dt_describe(t));
while ~isempty(d.inp({'case', dime.any(), dime.any()}, 'space', S))
end
dt_check('space emptied', d.count({'case', dime.any(), dime.any()}, 'space', S) == 0, '');

% --- FIFO, empty tuples, default space, timeouts
for i = 1:5
    d.out({'q', i}, 'space', S);
end
got = zeros(1, 5);
for i = 1:5
    t = d.in({'q', dime.type('double')}, 1, 'space', S);
    got(i) = t{2};
end
dt_check('oldest first', isequal(got, 1:5), mat2str(got));
d.out({}, 'space', S);
t = d.in({}, 1, 'space', S);
dt_check('empty tuple comes back as a 1x0 cell', iscell(t) && isequal(size(t), [1 0]), dt_describe(size(t)));
d.out({'default-space', int64(1)});
dt_check('default space', isequal(d2.inp({'default-space', dime.type('int64')}), {'default-space', int64(1)}), '');
d.out({'big', reshape(1:1e5, 100, 1000)}, 'space', S);
t = d.in({'big', dime.matrix('double', 2)}, 1, 'space', S);
dt_check('a large matrix field', isequal(t{2}, reshape(1:1e5, 100, 1000)), '');
t0 = tic;
dt_expect_error('in timeout: dime:timeout', @() d.in({'none'}, 0.2, 'space', S), 'dime:timeout');
el = toc(t0);
dt_check('in waited its timeout', el >= 0.15 && el < 3, sprintf('%.3f s', el));
t0 = tic;
dt_expect_error('rd timeout: dime:timeout', @() d.rd({'none'}, 0.2, 'space', S), 'dime:timeout');
el = toc(t0);
dt_check('rd waited its timeout', el >= 0.15 && el < 3, sprintf('%.3f s', el));
d2.out({'none'}, 'space', S);
dt_check('a timed-out in took nothing', d.count({'none'}, 'space', S) == 1 ...
         && isequal(d.inp({'none'}, 'space', S), {'none'}), '');

% --- argument errors
dt_expect_error('out of a non-cell', @() d.out(5), 'dime:argument');
dt_expect_error('out with a wildcard', @() d.out({'x', dime.any()}), 'dime:argument');
dt_expect_error('out of a function handle', @() d.out({@sin}), 'dime:type');
dt_expect_error('pattern must be a cell', @() d.count('x'), 'dime:argument');
dt_expect_error('dime.absent() is not a pattern field', @() d.count({dime.absent()}), 'dime:argument');
dt_expect_error('dime.type unknown', @() dime.type('int128'), 'dime:argument');
dt_expect_error('dime.matrix unknown class', @() dime.matrix('char'), 'dime:argument');
dt_expect_error('dime.matrix bad rank', @() dime.matrix('double', 1.5), 'dime:argument');
dt_expect_error('dime.range lo > hi', @() dime.range(2, 1), 'dime:argument');
dt_expect_error('dime.range NaN', @() dime.range(NaN), 'dime:argument');
dt_expect_error('dime.range inexact int64', @() dime.range(int64(9007199254740993)), 'dime:argument');
dt_expect_error('dime.range complex', @() dime.range(1i), 'dime:argument');
dt_expect_error('in bad timeout', @() d.in({'x'}, 'soon'), 'dime:argument');
dt_expect_error('in extra argument', @() d.in({'x'}, 1, 2), 'dime:argument');
dt_expect_error('count missing pattern', @() d.count(), 'dime:argument');
dt_check('usable after errors', d.count({'nothing'}, 'space', S) == 0, '');

% --- with Python
P = [S '-py'];
[out, want] = dt_py_values();
f = fieldnames(out);
for i = 1:numel(f)
    d.out({'o2p', f{i}, out.(f{i})}, 'space', P);
end
d.out({'o2p_w', int64(7), 2.5, 'txt', [1 2; 3 4], true, {1, 'a'}, struct('a', 1), single(1.5), ...
       int8(-1), uint16(9), [], complex(1, 2), [true false true]}, 'space', P);
d.out({'o2p_r', int64(5), -3}, 'space', P);
d.out({'o2p_rd', 'stay'}, 'space', P);
py = getenv('DIME_PYTHON');
here = fileparts(mfilename('fullpath'));
log = [tempname() '.log'];
system(sprintf('"%s" "%s" tuples "%s" "%s" > "%s" 2>&1 &', py, ...
               fullfile(here, 'py_share_peer.py'), sock, P, log));
for i = 1:size(want, 1)
    name = want{i, 1};
    timed_out = false;
    try
        t = d.in({'p2o', name, dime.any()}, 30, 'space', P);
        [ok, why] = dt_same(t{3}, want{i, 2}, name);
    catch e
        ok = false;
        timed_out = strcmp(e.identifier, 'dime:timeout');
        why = [e.identifier ': ' e.message ' / peer log: ' dt_read_log(log)];
    end
    dt_check(['octave takes python tuple field ' name], ok, why);
    if timed_out
        return;
    end
end
try
    t = d.in({'p2o_w', dime.type('int64'), dime.type('double'), dime.type('char'), ...
              dime.matrix('double', 2), dime.type('logical'), dime.type('cell'), ...
              dime.type('struct'), dime.type('single'), dime.type('int16'), dime.type('null'), ...
              dime.type('complex'), dime.matrix('logical', 1), dime.range(-3, -3), ...
              dime.type('uint64')}, 10, 'space', P);
    ok = isequal(t{2}, int64(5)) && t{3} == 2.5 && strcmp(t{4}, 's') ...
         && isequal(t{5}, [0 1 2; 3 4 5]) && isequal(t{6}, true) ...
         && isequal(t{7}, {int64(1), int64(2)}) && isequal(t{8}, struct('a', int64(1))) ...
         && isequal(t{9}, single(1)) && isequal(t{10}, int16(3)) && isequal(t{11}, []) ...
         && isequal(t{12}, complex(1, 2)) && isequal(t{13}, [true; false]) ...
         && isequal(t{14}, int64(-3)) && isequal(t{15}, intmax('uint64'));
    dt_check('octave takes python tuple with type wildcards', ok, dt_describe(t));
catch e
    dt_check('octave takes python tuple with type wildcards', false, [e.message ' / ' dt_read_log(log)]);
end
try
    t0 = tic;
    t = d.in({'py_late', dime.type('int64')}, 30, 'space', P);
    dt_check('octave in woken by python''s out', isequal(t, {'py_late', int64(42)}), ...
             sprintf('%s after %.3f s', dt_describe(t), toc(t0)));
catch e
    dt_check('octave in woken by python''s out', false, [e.message ' / ' dt_read_log(log)]);
end
d.out({'oct_late', 'hi from octave'}, 'space', P);
try
    t = d.in({'report', dime.type('cell')}, 30, 'space', P);
    for i = 1:numel(t{2})
        printf('%s\n', t{2}{i});
    end
catch e
    dt_check('python report received', false, [e.message ' / peer log: ' dt_read_log(log)]);
end
dt_check('python left nothing behind', d.count({'o2p_rd', 'stay'}, 'space', P) == 1 ...
         && d.count({'o2p', dime.any(), dime.any()}, 'space', P) == 0, '');
d.inp({'o2p_rd', 'stay'}, 'space', P);
d.close();
d2.close();
end
