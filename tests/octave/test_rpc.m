function test_rpc()
% Remote calls between Octave processes (d.call, d.call_async, d.serve):
% every dt_cases row as an argument (checked on arrival by the provider)
% and back as a result; remote errors with their type, message and
% traceback; serve with a count; no provider before a timeout; a call that
% times out (cancelled); a provider killed mid-call (dime:providerLost
% within 1 s); Ctrl-C (SIGINT) during d.call and during d.serve; and that
% every future and request is freed. The provider is oct_rpc_peer.m in a
% second octave-cli.
sock = getenv('DIME_SOCK');
d = dime('ipc', sock);
d.join('oct');

local_checks(d);

% ------------------------------------------------ an Octave provider
log = [tempname() '.log'];
dt_octave_peer(sprintf('oct_rpc_peer(''%s'', ''provider'')', sock), log);
try
    pid = dt_receive(d, 'peer_pid', 60);
catch e
    dt_check('rpc octave provider started', false, [e.message ' / peer log: ' dt_read_log(log)]);
    return;
end
guard = onCleanup(@() system(sprintf('kill -9 %d 2>/dev/null', pid)));

% every row of the type table there and back
c = dt_cases();
for i = 1:size(c, 1)
    label = c{i, 1};
    a = struct('case', i);
    a.value = c{i, 2}; % by assignment: a cell value would make a struct array
    try
        r = d.call('oct_check', a, 'timeout', 60);
    catch e
        dt_check(['rpc octave->octave ' label], false, [e.identifier ' ' e.message ...
                  ' / peer log: ' dt_read_log(log)]);
        continue;
    end
    dt_check(['rpc octave->octave arrives ' label], r.ok, r.why);
    [ok, why] = dt_same(r.value, c{i, 3}, label);
    dt_check(['rpc octave->octave returns ' label], ok, why);
end

% remote errors: raised, and as the second output
try
    d.call('oct_fail', 7, 'timeout', 30);
    dt_check('rpc remote error raised', false, 'no error');
catch e
    dt_check('rpc remote error raised as dime:remoteError', strcmp(e.identifier, 'dime:remoteError'), ...
             [e.identifier ' ' e.message]);
    dt_check('rpc remote error message has type, message and traceback', ...
             has(e.message, 'oct_fail') && has(e.message, 'test:bad') && has(e.message, 'bad value 7') ...
             && has(e.message, 'fail_on') && has(e.message, 'oct_rpc_peer.m'), e.message);
end
[r, err] = d.call('oct_fail', 8, 'timeout', 30);
dt_check('rpc [r, err] form: r is [] on failure', isequal(r, []), dt_describe(r));
dt_check('rpc [r, err] form: err fields', isstruct(err) && strcmp(err.identifier, 'dime:remoteError') ...
         && strcmp(err.type, 'test:bad') && has(err.message, 'bad value 8') ...
         && has(err.traceback, 'fail_on') && ~has(err.traceback, 'dime.m'), dt_describe(err));

% serve with a count: three calls, then the function is gone
got = zeros(1, 3);
for k = 1:3
    got(k) = d.call('oct_count', k, 'timeout', 30);
end
dt_check('rpc serve count: three calls answered', isequal(got, [2 4 6]), mat2str(got));
try
    n = dt_receive(d, 'count_served', 30);
    dt_check('rpc serve count returns the number served', isequal(n, 3), dt_describe(n));
catch e
    dt_check('rpc serve count returns the number served', false, e.message);
end
t0 = tic;
[~, err] = d.call('oct_count', 4, 'timeout', 0.5);
dt_check('rpc serve count: unprovided after the count (dime:noProvider)', ...
         ~isempty(err) && strcmp(err.identifier, 'dime:noProvider'), dt_describe(err));
dt_check('rpc no provider: fails at the timeout', toc(t0) >= 0.45 && toc(t0) < 1.5, ...
         sprintf('%.2f s', toc(t0)));

% a provider takes the call but does not return in time: dime:timeout
t0 = tic;
[~, err] = d.call('oct_slow', 1.5, 'timeout', 0.5);
el = toc(t0);
dt_check('rpc timeout with a slow provider -> dime:timeout', ...
         ~isempty(err) && strcmp(err.identifier, 'dime:timeout'), dt_describe(err));
dt_check('rpc timeout comes on time', el >= 0.45 && el < 1.2, sprintf('%.2f s', el));
dt_receive(d, 'started', 5);

% the provider killed mid-call: dime:providerLost within 1 s
f = d.call_async('oct_slow', 60);
try
    dt_receive(d, 'started', 30);
    system(sprintf('kill -9 %d', pid));
    t0 = tic;
    [~, err] = f.result(10);
    el = toc(t0);
    dt_check('rpc provider killed mid-call -> dime:providerLost', ...
             ~isempty(err) && strcmp(err.identifier, 'dime:providerLost'), dt_describe(err));
    dt_check('rpc provider lost reported within 1 s', el < 1, sprintf('%.2f s', el));
catch e
    dt_check('rpc provider killed mid-call', false, [e.identifier ' ' e.message]);
end
clear f;

% ------------------------------------------------ Ctrl-C
interrupt_call(d, sock);
interrupt_serve(d, sock);

[futures, requests] = dime_mex('rpc_count');
dt_check('rpc every future and request freed', futures == 0 && requests == 0, ...
         sprintf('%d futures, %d requests', futures, requests));
d.close();
end

function local_checks(d)
% Argument errors, cancellation, dropping a future: no peer needed.
dt_expect_error('rpc call without a name -> dime:argument', @() d.call(), 'dime:argument');
dt_expect_error('rpc call with a numeric name -> dime:argument', @() d.call(5), 'dime:argument');
dt_expect_error('rpc negative timeout -> dime:argument', ...
                @() d.call('f', 1, 'timeout', -1), 'dime:argument');
dt_expect_error('rpc call of a function handle value -> dime:type', ...
                @() d.call('f', @sin, 'timeout', 1), 'dime:type');
dt_expect_error('rpc serve with a non-function -> dime:argument', ...
                @() d.serve('f', 42, 'count', 1), 'dime:argument');
dt_expect_error('rpc serve with a bad count -> dime:argument', ...
                @() d.serve('f', @(x) x, 'count', -1), 'dime:argument');
dt_expect_error('rpc serve timeout with no caller -> dime:timeout', ...
                @() d.serve('rpc_nobody_calls', @(x) x, 'timeout', 0.3), 'dime:timeout');
t0 = tic;
dt_expect_error('rpc no provider + timeout -> dime:noProvider', ...
                @() d.call('rpc_nobody_provides', 1, 'timeout', 0.4), 'dime:noProvider');
dt_check('rpc no provider waits out the timeout', toc(t0) >= 0.35 && toc(t0) < 1.2, ...
         sprintf('%.2f s', toc(t0)));
dt_expect_error('rpc timeout 0 and no provider -> dime:noProvider', ...
                @() d.call('rpc_nobody_provides', 1, 'timeout', 0), 'dime:noProvider');

% call_async: cancel a queued call, drop one unread
f = d.call_async('rpc_nobody_provides', {1, 'two'});
dt_check('rpc call_async: not done while queued', ~f.done() && ~f.wait(0.1), 'done');
dt_check('rpc cancel a queued call', f.cancel(), 'cancel returned false');
dt_check('rpc cancelled future is done', f.done(), 'not done');
dt_expect_error('rpc result of a cancelled call -> dime:cancelled', @() f.result(1), 'dime:cancelled');
[r, err] = f.result();
dt_check('rpc result of a cancelled call asked again', isempty(r) && strcmp(err.identifier, 'dime:cancelled'), ...
         dt_describe(err));
dt_check('rpc cancel after the outcome was read', ~f.cancel(), 'cancel returned true');
g = d.call_async('rpc_nobody_provides', 1, 'timeout', 10);
dt_expect_error('rpc result timeout -> dime:timeout (the call goes on)', @() g.result(0.2), 'dime:timeout');
dt_check('rpc the call goes on after a result timeout', ~g.done(), 'done');
[futures, ~] = dime_mex('rpc_count');
clear f g;
[after, ~] = dime_mex('rpc_count');
dt_check('rpc clearing futures frees them', futures == 1 && after == 0, ...
         sprintf('%d before, %d after', futures, after));

% a serve whose count is reached unprovides; the same name can be served again
dt_check('rpc serve count 0 returns at once', d.serve('rpc_zero', @(x) x, 'count', 0) == 0, '');

% futures of a closed connection are freed with it
e = dime('ipc', getenv('DIME_SOCK'));
h = e.call_async('rpc_nobody_provides', 1);
e.close();
dt_expect_error('rpc future of a closed connection -> dime:closed', @() h.result(1), 'dime:closed');
dt_expect_error('rpc call on a closed connection -> dime:closed', @() e.call('f', 1), 'dime:closed');
[futures, requests] = dime_mex('rpc_count');
dt_check('rpc closing a connection frees its futures', futures == 0 && requests == 0, ...
         sprintf('%d futures, %d requests', futures, requests));
end

function interrupt_call(d, sock)
% SIGINT while d.call waits for a provider: the wait ends within a slice,
% the call is cancelled (the broker never hands it to a provider that
% comes later, while the interrupted process is still connected) and its
% future freed.
log = [tempname() '.log'];
dt_octave_peer(sprintf('oct_rpc_peer(''%s'', ''interrupt_call'')', sock), log);
try
    pid = dt_receive(d, 'peer_pid', 60);
    guard = onCleanup(@() system(sprintf('kill -9 %d 2>/dev/null', pid))); %#ok<NASGU>
    pause(0.7); % into d.call's wait loop
    system(sprintf('kill -INT %d', pid));
    t0 = tic;
    counts = dt_receive(d, 'interrupted', 5);
    el = toc(t0);
    dt_check('rpc Ctrl-C interrupts d.call within a slice', el < 1, sprintf('%.2f s', el));
    dt_check('rpc Ctrl-C in d.call frees the future', isequal(counts, [0 0]), mat2str(counts));
    % still connected for 4 s: a provider now must not get the call
    try
        d.serve('rpc_never_provided', @(x) x, 'count', 1, 'timeout', 1);
        dt_check('rpc Ctrl-C in d.call cancels the call', false, 'the call reached a provider');
    catch e
        dt_check('rpc Ctrl-C in d.call cancels the call', strcmp(e.identifier, 'dime:timeout'), ...
                 [e.identifier ' ' e.message]);
    end
catch e
    dt_check('rpc Ctrl-C during d.call', false, [e.identifier ' ' e.message ' / peer log: ' dt_read_log(log)]);
end
end

function interrupt_serve(d, sock)
% SIGINT while d.serve runs a call: the running call's caller gets an
% error at once, the function is no longer provided (while the process is
% still connected), every request is freed.
log = [tempname() '.log'];
dt_octave_peer(sprintf('oct_rpc_peer(''%s'', ''interrupt_serve'')', sock), log);
try
    pid = dt_receive(d, 'peer_pid', 60);
    guard = onCleanup(@() system(sprintf('kill -9 %d 2>/dev/null', pid))); %#ok<NASGU>
    r = d.call('child_fn', 5, 'timeout', 30);
    dt_check('rpc interruptible serve answers', isequal(r, 5), dt_describe(r));
    f = d.call_async('child_fn', 'slow');
    dt_receive(d, 'started', 10);
    system(sprintf('kill -INT %d', pid));
    t0 = tic;
    counts = dt_receive(d, 'interrupted', 5);
    dt_check('rpc Ctrl-C interrupts d.serve at once', toc(t0) < 1, sprintf('%.2f s', toc(t0)));
    dt_check('rpc Ctrl-C in d.serve frees the request', isequal(counts, [0 0]), mat2str(counts));
    [~, err] = f.result(5);
    dt_check('rpc the interrupted call fails with a remote error', ...
             ~isempty(err) && strcmp(err.identifier, 'dime:remoteError'), dt_describe(err));
    [~, err] = d.call('child_fn', 1, 'timeout', 1);
    dt_check('rpc Ctrl-C in d.serve unprovides', ~isempty(err) && strcmp(err.identifier, 'dime:noProvider'), ...
             dt_describe(err));
catch e
    dt_check('rpc Ctrl-C during d.serve', false, [e.identifier ' ' e.message ' / peer log: ' dt_read_log(log)]);
end
end

function tf = has(s, part)
tf = ~isempty(strfind(s, part));
end
