function test_rpc_python()
% Remote calls between Octave and Python (py_rpc_peer.py, on the Python
% binding's dime.Server(client=d) and dime.Client), both ways:
% every row of the type table as an argument, checked on arrival by the
% provider, and as a result, checked by the caller; remote errors both
% ways with type, message and traceback; a Python provider SIGKILLed
% mid-call (dime:providerLost within 1 s).
sock = getenv('DIME_SOCK');
py = getenv('DIME_PYTHON');
here = fileparts(mfilename('fullpath'));
peer = fullfile(here, 'py_rpc_peer.py');
d = dime('ipc', sock);
d.join('oct');
[out, want] = dt_py_values();

log = [tempname() '.log'];
dt_spawn(sprintf('"%s" "%s" serve "%s"', py, peer, sock), log);
try
    dt_receive(d, 'ready', 60);
catch e
    dt_check('rpc python peer started', false, [e.message ' / peer log: ' dt_read_log(log)]);
    return;
end

% --- Octave calls Python
names = fieldnames(out);
for i = 1:numel(names)
    a = struct('name', names{i});
    a.value = out.(names{i}); % by assignment: a cell value would make a struct array
    label = ['rpc python receives ' names{i} ' as an octave call''s argument'];
    try
        r = d.call('py_check', a, 'timeout', 60);
        dt_check(label, isequal(r.ok, true), r.why);
    catch e
        dt_check(label, false, [e.identifier ' ' e.message]);
    end
end
for i = 1:size(want, 1)
    label = ['rpc octave receives ' want{i, 1} ' as a python result'];
    try
        [ok, why] = dt_same(d.call('py_value', want{i, 1}, 'timeout', 60), want{i, 2}, want{i, 1});
        dt_check(label, ok, why);
    catch e
        dt_check(label, false, [e.identifier ' ' e.message]);
    end
end
[r, err] = d.call('py_fail', 7, 'timeout', 60);
dt_check('rpc python error reaches octave as dime:remoteError', isempty(r) && ~isempty(err) ...
         && strcmp(err.identifier, 'dime:remoteError') && strcmp(err.type, 'ValueError'), dt_describe(err));
dt_check('rpc python error message and traceback', ~isempty(err) && has(err.message, 'ValueError: bad value 7') ...
         && has(err.traceback, 'Traceback') && has(err.traceback, 'py_fail'), dt_describe(err));
d.call('py_stop', [], 'timeout', 60);

% --- Python calls Octave
try
    n = d.serve('oct_check', @(a) arrival(a, want), 'count', size(want, 1), 'timeout', 60);
    n = n + d.serve('oct_value', @(name) out.(name), 'count', numel(names), 'timeout', 60);
    n = n + d.serve('oct_fail', @oct_fail, 'count', 1, 'timeout', 60);
    dt_check('rpc octave served every python call', n == size(want, 1) + numel(names) + 1, ...
             sprintf('%d', n));
    report = dt_receive(d, 'report', 60);
    for i = 1:numel(report)
        printf('%s\n', report{i});
    end
catch e
    dt_check('rpc python calls octave', false, [e.identifier ' ' e.message ' / peer log: ' dt_read_log(log)]);
end

% --- a Python provider killed mid-call
log = [tempname() '.log'];
dt_spawn(sprintf('"%s" "%s" slow "%s"', py, peer, sock), log);
try
    pid = dt_receive(d, 'peer_pid', 60);
    guard = onCleanup(@() system(sprintf('kill -9 %d 2>/dev/null', pid))); %#ok<NASGU>
    f = d.call_async('py_slow', 1, 'timeout', 30);
    dt_receive(d, 'started', 30);
    system(sprintf('kill -9 %d', pid));
    t0 = tic;
    [~, err] = f.result(10);
    el = toc(t0);
    dt_check('rpc python provider killed mid-call -> dime:providerLost', ...
             ~isempty(err) && strcmp(err.identifier, 'dime:providerLost'), dt_describe(err));
    dt_check('rpc python provider lost reported within 1 s', el < 1, sprintf('%.2f s', el));
catch e
    dt_check('rpc python provider killed mid-call', false, [e.identifier ' ' e.message ...
             ' / peer log: ' dt_read_log(log)]);
end
clear f;
[futures, requests] = dime_mex('rpc_count');
dt_check('rpc python: every future and request freed', futures == 0 && requests == 0, ...
         sprintf('%d futures, %d requests', futures, requests));
d.close();
end

function r = arrival(a, want)
% The check of a Python value as it arrived ({name, value}).
i = find(strcmp(want(:, 1), a.name));
if numel(i) ~= 1
    r = struct('ok', false, 'why', ['unknown name ' a.name]);
    return;
end
[ok, why] = dt_same(a.value, want{i, 2}, a.name);
r = struct('ok', ok, 'why', why);
end

function oct_fail(x)
error('test:bad', 'bad value %d', x);
end

function tf = has(s, part)
tf = ~isempty(strfind(s, part));
end
