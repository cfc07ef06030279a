function test_share()
% Shared dictionaries from Octave (dime.m share_* methods): every row of
% the type table stored and read back; keys/len/contains/del/pop/clear,
% get_many/set_many; incr and cas; locks (whole-share and named, timeouts,
% not re-entrant, released on close); wait_key timing out and woken by a
% Python peer; a Python peer holding the lock makes Octave's write wait;
% the type table Octave -> share -> Python and Python -> share -> Octave
% (py_share_peer.py, with py_peer.py's values and checks).
sock = getenv('DIME_SOCK');
S = sprintf('octave-share-%d', getpid());   % this run's share
d = dime('ipc', sock);
d2 = dime('ipc', sock);

% --- every table row through a share
c = dt_cases();
for i = 1:size(c, 1)
    key = sprintf('row%03d', i);
    try
        d.share_set(key, c{i, 2}, 'share', S);
        [ok, why] = dt_same(d.share_get(key, 'share', S), c{i, 3});
    catch e
        ok = false;
        why = [e.identifier ': ' e.message];
    end
    dt_check(['share stores ' c{i, 1}], ok, why);
end
dt_check('share_len counts the rows', d.share_len('share', S) == size(c, 1), ...
         sprintf('%d', d.share_len('share', S)));
k = d.share_keys('share', S);
dt_check('share_keys: sorted Nx1 cell of char', iscellstr(k) && isequal(size(k), [size(c, 1) 1]) ...
         && isequal(k, sort(k)) && strcmp(k{1}, 'row001'), '');
dt_check('share_contains true', d.share_contains('row001', 'share', S), '');
dt_check('share_contains false', ~d.share_contains('nope', 'share', S), '');
dt_check('share_contains is logical', islogical(d.share_contains('nope', 'share', S)), '');
dt_check('other share is separate', ~d.share_contains('row001', 'share', [S '-other']), '');
dt_check('share_del found', d.share_del('row001', 'share', S), '');
dt_check('share_del missing', ~d.share_del('row001', 'share', S), '');
dt_expect_error('share_get missing: dime:notfound', @() d.share_get('row001', 'share', S), 'dime:notfound');
v = d.share_pop('row002', 'share', S);
dt_check('share_pop returns the value', dt_same(v, c{2, 3}), '');
dt_expect_error('share_pop missing: dime:notfound', @() d.share_pop('row002', 'share', S), 'dime:notfound');
d.share_clear('share', S);
dt_check('share_clear empties', d.share_len('share', S) == 0 && isempty(d.share_keys('share', S)), '');
d.share_set_many(struct('a', 1, 'b', 'two', 'c', {{int8(3)}}), 'share', S);
m = d.share_get_many({'a', 'b', 'c', 'missing'}, 'share', S);
dt_check('share_set_many / get_many', dt_same(m, struct('a', 1, 'b', 'two', 'c', {{int8(3)}})), '');
d.share_set_many(containers.Map({'x y'}, {5}), 'share', S);
m = d.share_get_many({'x y'}, 'share', S);
dt_check('share_get_many with non-field keys gives a Map', ...
         isa(m, 'containers.Map') && isequal(m('x y'), 5), class(m));
d.share_set('k', 'v');                       % the default share
dt_check('default share', strcmp(d2.share_get('k'), 'v') && d2.share_del('k'), '');
d.share_set('share', 'value-of-key-share', 'share', S);  % a key named like the option
dt_check('a key named ''share''', strcmp(d.share_get('share', 'share', S), 'value-of-key-share'), '');

% --- incr and cas
dt_check('incr missing key starts int64 1', isequal(d.share_incr('n', 'share', S), int64(1)), '');
dt_check('incr int64 delta', isequal(d.share_incr('n', int64(41), 'share', S), int64(42)), '');
v = d.share_incr('n', 0.5, 'share', S);
dt_check('incr double delta gives double', isa(v, 'double') && v == 42.5, class(v));
d.share_set('i8', int8(120), 'share', S);
dt_check('incr keeps int8', isequal(d.share_incr('i8', int64(7), 'share', S), int8(127)), '');
dt_expect_error('incr overflow: dime:server', @() d.share_incr('i8', int64(1), 'share', S), 'dime:server');
d.share_set('str', 'abc', 'share', S);
dt_expect_error('incr of a string: dime:server', @() d.share_incr('str', 'share', S), 'dime:server');
dt_expect_error('incr by a string: dime:argument', @() d.share_incr('n', 'x', 'share', S), 'dime:argument');
dt_check('cas absent on a missing key swaps', d.share_cas('cs', dime.absent(), 1, 'share', S), '');
dt_check('cas absent on an existing key does not', ~d.share_cas('cs', dime.absent(), 2, 'share', S), '');
dt_check('cas equal swaps', d.share_cas('cs', 1, 'two', 'share', S) ...
         && strcmp(d.share_get('cs', 'share', S), 'two'), '');
d.share_set('cs', int64(1), 'share', S);
dt_check('cas compares class: 1 ~= int64(1)', ~d.share_cas('cs', 1, 5, 'share', S), '');
d.share_set('cs', struct('a', [1 2]), 'share', S);
dt_check('cas on a struct', d.share_cas('cs', struct('a', [1 2]), [], 'share', S) ...
         && isequal(d.share_get('cs', 'share', S), []), '');
dt_check('cas with [] (null) as expected', d.share_cas('cs', [], 'x', 'share', S), '');
dt_check('cas returns logical', islogical(d.share_cas('cs', 'nope', 'x', 'share', S)), '');

% --- locks (two connections)
d.share_lock('share', S);
dt_check('try_lock of a held share lock is false', ~d2.share_try_lock('share', S), '');
t0 = tic;
dt_expect_error('share_lock timeout: dime:timeout', @() d2.share_lock([], 0.2, 'share', S), 'dime:timeout');
el = toc(t0);
dt_check('share_lock waited its timeout', el >= 0.15 && el < 3, sprintf('%.3f s', el));
dt_expect_error('share lock is not re-entrant', @() d.share_lock('share', S), 'dime:server');
d.share_set('held', 1, 'share', S);           % the holder writes freely
dt_check('reads do not wait for the lock', d2.share_get('held', 'share', S) == 1, '');
d.share_unlock('share', S);
dt_expect_error('unlock of a lock not held: dime:server', @() d.share_unlock('share', S), 'dime:server');
dt_check('try_lock after unlock', d2.share_try_lock('share', S), '');
d2.share_unlock('share', S);
d.share_lock('job', 5, 'share', S);           % a named lock, with a timeout
dt_check('named lock held elsewhere: try_lock false', ~d2.share_try_lock('job', 'share', S), '');
dt_check('other named lock is free', d2.share_try_lock('job2', 'share', S), '');
t0 = tic;
dt_expect_error('named lock timeout: dime:timeout', @() d2.share_lock('job', 0.2, 'share', S), 'dime:timeout');
el = toc(t0);
dt_check('named lock waited its timeout', el >= 0.15 && el < 3, sprintf('%.3f s', el));
dt_check('named lock does not block writes', d2.share_cas('job', dime.absent(), 1, 'share', S), '');
d.share_unlock('job', 'share', S);
d2.share_unlock('job2', 'share', S);
d3 = dime('ipc', sock);
d3.share_lock('share', S);
d3.share_lock('k3', 'share', S);
d3.close();                                    % released with the connection
dt_check('locks released when the holder closes', ...
         d2.share_try_lock('share', S) && d2.share_try_lock('k3', 'share', S), '');
d2.share_unlock('share', S);
d2.share_unlock('k3', 'share', S);
d.share_lock();                                 % whole default share, no timeout
d.share_unlock();
dt_check('share_lock() / share_unlock() on the default share', true, '');

% --- wait_key
t0 = tic;
dt_expect_error('wait_key timeout: dime:timeout', @() d.share_wait_key('never', 0.2, 'share', S), 'dime:timeout');
el = toc(t0);
dt_check('wait_key waited its timeout', el >= 0.15 && el < 3, sprintf('%.3f s', el));
dt_check('wait_key of an existing key returns at once', ...
         d.share_wait_key('held', 0, 'share', S) == 1, '');
d.share_set('after_timeout', 1, 'share', S);
dt_check('connection usable after timeouts', d.share_get('after_timeout', 'share', S) == 1, '');

% --- argument errors
dt_expect_error('share_set missing value', @() d.share_set('k'), 'dime:argument');
dt_expect_error('share_get extra argument', @() d.share_get('k', 1), 'dime:argument');
dt_expect_error('share name must be char', @() d.share_get('k', 'share', 5), 'dime:argument');
dt_expect_error('key must be char', @() d.share_get(5), 'dime:argument');
dt_expect_error('function handle value: dime:type', @() d.share_set('f', @sin), 'dime:type');
dt_expect_error('share_set_many of a number', @() d.share_set_many(5), 'dime:argument');
dt_expect_error('bad timeout', @() d.share_wait_key('k', 'x'), 'dime:argument');

% --- with Python: wait_key woken, lock held by Python, the type table both ways
P = [S '-py'];
py = getenv('DIME_PYTHON');
here = fileparts(mfilename('fullpath'));
log = [tempname() '.log'];
system(sprintf('"%s" "%s" share "%s" "%s" > "%s" 2>&1 &', py, ...
               fullfile(here, 'py_share_peer.py'), sock, P, log));
dt_check('py_locked not there before python sets it', ~d.share_contains('py_locked', 'share', P), '');
try
    t0 = tic;
    v = d.share_wait_key('py_locked', 60, 'share', P);
    dt_check('wait_key woken by a python write', isequal(v, true) && toc(t0) > 0.1, ...
             sprintf('%s after %.3f s', dt_describe(v), toc(t0)));
catch e
    dt_check('wait_key woken by a python write', false, [e.message ' / peer log: ' dt_read_log(log)]);
    return;
end
dt_check('python holds the share lock: try_lock false', ~d.share_try_lock('share', P), '');
dt_expect_error('python holds a named lock: lock times out', ...
                @() d.share_lock('klock', 0.1, 'share', P), 'dime:timeout');
dt_check('py_wrote not yet written', ~d.share_contains('py_wrote', 'share', P), '');
t0 = tic;
d.share_set('oct_write', 1, 'share', P);        % waits until python unlocks
el = toc(t0);
dt_check('octave write waited for python''s lock', el > 0.3, sprintf('%.3f s', el));
dt_check('python''s last locked write came first', ...
         isequal(d.share_get('py_wrote', 'share', P), int64(1)), '');
[out, want] = dt_py_values();
for i = 1:size(want, 1)
    name = want{i, 1};
    try
        [ok, why] = dt_same(d.share_get(name, 'share', P), want{i, 2}, name);
    catch e
        ok = false;
        why = [e.identifier ': ' e.message];
    end
    dt_check(['octave reads share value ' name ' written by python'], ok, why);
end
f = fieldnames(out);
for i = 1:numel(f)
    d.share_set(f{i}, out.(f{i}), 'share', P);
end
for i = 1:3
    d.share_incr('o_counter', 'share', P);
end
d.share_set('o_cas', 'from octave', 'share', P);
d3 = dime('ipc', sock);
d3.share_lock('oct_lock', 'share', P);
d3.close();
d.share_set('oct_done', true, 'share', P);
try
    report = d.share_wait_key('py_report', 60, 'share', P);
catch e
    dt_check('python report received', false, [e.message ' / peer log: ' dt_read_log(log)]);
    return;
end
for i = 1:numel(report)
    printf('%s\n', report{i});
end
dt_check('octave reads python''s incr', isequal(d.share_get('o_counter', 'share', P), int64(13)), '');
dt_check('octave reads python''s cas', strcmp(d.share_get('o_cas', 'share', P), 'from python'), '');
d.share_clear('share', P);
d.share_clear('share', S);
d.close();
d2.close();
end
