function test_stream()
% Streams between Octave processes (d.stream, d.serve_stream): 1000 items
% in order through a small window, 0 items, every dt_cases row as an
% item, an early close that stops the producer, a producer that raises
% (items before the error, then dime:remoteError, again on every next),
% a d.stream of a plain d.serve function and a d.call of a stream (both
% dime:notStream), a killed producer (dime:providerLost), no provider,
% timeouts, bad options, and that every stream is freed (closed, cleared,
% or with its connection). The producer is
% oct_stream_peer.m in a second octave-cli.
sock = getenv('DIME_SOCK');
d = dime('ipc', sock);
d.join('oct');

local_checks(d);

log = [tempname() '.log'];
dt_octave_peer(sprintf('oct_stream_peer(''%s'')', sock), log);
try
    pid = dt_receive(d, 'peer_pid', 60);
catch e
    dt_check('stream octave producer started', false, [e.message ' / peer log: ' dt_read_log(log)]);
    return;
end
guard = onCleanup(@() system(sprintf('kill -9 %d 2>/dev/null', pid)));

% a stream of a plain function: a remote dime:notStream; the call works
try
    s = d.stream('st_plain', 1, 'timeout', 60);
    [~, ~] = s.next(30);
    dt_check('stream of a plain function -> remote dime:notStream', false, 'no error');
catch e
    dt_check('stream of a plain function -> remote dime:notStream', ...
             strcmp(e.identifier, 'dime:remoteError') && has(e.message, 'dime:notStream'), ...
             [e.identifier ' ' e.message]);
end
r = d.call('st_plain', 21, 'timeout', 30);
dt_check('stream plain function still served after a stream reader', isequal(r, 42), dt_describe(r));

% 1000 items in order, through a window of 16 items
try
    s = d.stream('st_items', struct('n', 1000), 'timeout', 60, 'items', 16);
    got = zeros(1, 0);
    while true
        [v, ok] = s.next(30);
        if ~ok
            break;
        end
        got(end + 1) = v; %#ok<AGROW>
    end
    dt_check('stream 1000 items in order', isequal(got, 1:1000), ...
             sprintf('%d items, first mismatch at %d', numel(got), ...
                     find([got(1:min(end, 1000)) ~= 1:min(numel(got), 1000), true], 1)));
    dt_check('stream done after the end', s.done(), 'done() is false');
    dt_check('stream next after the end returns []', isequal(s.next(), []), 'not []');
    [v, ok] = s.next(0);
    dt_check('stream [v, ok] after the end', isequal(v, []) && ~ok, dt_describe(v));
catch e
    dt_check('stream 1000 items in order', false, [e.identifier ' ' e.message ' / ' dt_read_log(log)]);
end

% 0 items
try
    s = d.stream('st_items', struct('n', 0), 'timeout', 60);
    v = s.next(30);
    dt_check('stream of 0 items ends at once', isequal(v, []) && s.done(), dt_describe(v));
catch e
    dt_check('stream of 0 items ends at once', false, [e.identifier ' ' e.message]);
end
clear s;

% a plain call of a stream function
[~, err] = d.call('st_types', 1, 'timeout', 30);
dt_check('stream plain call of a stream -> remote dime:notStream', ...
         ~isempty(err) && strcmp(err.identifier, 'dime:remoteError') ...
         && strcmp(err.type, 'dime:notStream'), dt_describe(err));

% every row of the type table as an item
c = dt_cases();
try
    s = d.stream('st_types', [], 'timeout', 60, 'items', 4, 'bytes', 4096);
    for i = 1:size(c, 1)
        [v, ok] = s.next(30);
        if ~ok
            dt_check(['stream item ' c{i, 1}], false, 'the stream ended early');
            break;
        end
        [same, why] = dt_same(v, c{i, 3}, c{i, 1});
        dt_check(['stream item ' c{i, 1}], same, why);
    end
    [~, ok] = s.next(30);
    dt_check('stream of the type table ends after its rows', ~ok && s.done(), 'not ended');
catch e
    dt_check('stream of the type table', false, [e.identifier ' ' e.message ' / ' dt_read_log(log)]);
end

% an early close stops the producer
try
    s = d.stream('st_endless', [], 'timeout', 60, 'items', 2);
    first = [s.next(30), s.next(30), s.next(30)];
    s.close();
    dt_check('stream endless: first items', isequal(first, [1 2 3]), mat2str(first));
    k = dt_receive(d, 'stopped_after', 30);
    % at most the window (2 items) plus the one in hand ran ahead
    dt_check('stream early close stops the producer', k >= 3 && k <= 6, sprintf('stopped after %d', k));
    expect('stream next after close -> dime:closed', 'dime:closed', @() s.next());
    s.close();
    dt_check('stream close twice is harmless', true, '');
catch e
    dt_check('stream early close stops the producer', false, [e.identifier ' ' e.message ...
             ' / ' dt_read_log(log)]);
end

% a producer that raises: its items first, then the error, every time
try
    s = d.stream('st_fail', [], 'timeout', 60);
    first = [s.next(30), s.next(30)];
    dt_check('stream items before the error', isequal(first, [1 2]), mat2str(first));
    try
        s.next(30);
        dt_check('stream producer error -> dime:remoteError', false, 'no error');
    catch e
        dt_check('stream producer error -> dime:remoteError', strcmp(e.identifier, 'dime:remoteError'), ...
                 [e.identifier ' ' e.message]);
        dt_check('stream error message has type, message and traceback', ...
                 has(e.message, 'st_fail') && has(e.message, 'test:bad') ...
                 && has(e.message, 'bad stream after 2') && has(e.message, 'fail_after_two'), e.message);
    end
    expect('stream error again on the next next', 'dime:remoteError', @() s.next(1));
    dt_check('stream done after an error', s.done(), 'not done');
catch e
    dt_check('stream producer error', false, [e.identifier ' ' e.message]);
end

% a producer killed mid-stream
try
    s = d.stream('st_hang', [], 'timeout', 60);
    v = s.next(30);
    dt_check('stream first item before the kill', isequal(v, 1), dt_describe(v));
    dt_receive(d, 'started', 30);
    system(sprintf('kill -9 %d', pid));
    t0 = tic;
    try
        s.next(10);
        dt_check('stream producer killed -> dime:providerLost', false, 'no error');
    catch e
        dt_check('stream producer killed -> dime:providerLost', ...
                 strcmp(e.identifier, 'dime:providerLost'), [e.identifier ' ' e.message]);
        dt_check('stream provider lost reported within 2 s', toc(t0) < 2, sprintf('%.2f s', toc(t0)));
    end
catch e
    dt_check('stream producer killed', false, [e.identifier ' ' e.message]);
end

% every stream freed: the ones read to the end or failed at once, the
% closed one, and the last one when cleared
[~, ~, before] = dime_mex('rpc_count');
clear s;
[futures, requests, streams] = dime_mex('rpc_count');
dt_check('stream every stream freed', before <= 1 && futures == 0 && requests == 0 && streams == 0, ...
         sprintf('%d before clear; %d futures, %d requests, %d streams', before, futures, requests, streams));
d.close();
end

function local_checks(d)
expect('stream without a name -> dime:argument', 'dime:argument', @() d.stream());
expect('stream with a numeric name -> dime:argument', 'dime:argument', @() d.stream(5));
expect('stream with a bad window -> dime:argument', 'dime:argument', ...
                @() d.stream('x', [], 'items', 0));
expect('stream with a bad timeout -> dime:argument', 'dime:argument', ...
                @() d.stream('x', [], 'timeout', -1));
expect('serve_stream with a non-function -> dime:argument', 'dime:argument', ...
                @() d.serve_stream('x', 5));
expect('serve_stream with a bad count -> dime:argument', 'dime:argument', ...
                @() d.serve_stream('x', @(a, e) [], 'count', -1));
expect('serve_stream timeout with no reader -> dime:timeout', 'dime:timeout', ...
                @() d.serve_stream('st_nobody', @(a, e) [], 'timeout', 0.3));
% no provider: next fails at the timeout
s = d.stream('st_never_provided', [], 'timeout', 0.3);
expect('stream with no provider -> dime:noProvider', 'dime:noProvider', @() s.next(10));
% a stream outlives nothing: closing the connection frees it
d2 = dime('ipc', getenv('DIME_SOCK'));
s2 = d2.stream('st_never_provided', [], 'timeout', 30);
t0 = tic;
[v, ok] = s2.next(0.3);
dt_check('stream [v, ok] = next(t) times out: ok false, not done', ...
         ~ok && isequal(v, []) && ~s2.done() && toc(t0) >= 0.25, sprintf('%.2f s', toc(t0)));
expect('stream next(t) times out -> dime:timeout', 'dime:timeout', @() s2.next(0.2));
[~, ~, n] = dime_mex('rpc_count');
d2.close();
[~, ~, m] = dime_mex('rpc_count');
dt_check('stream closing the connection frees its streams', n - m == 1, sprintf('%d -> %d', n, m));
expect('stream of a closed connection -> dime:closed', 'dime:closed', @() s2.next(1));
end

function expect(name, id, fn)
dt_expect_error(name, fn, id);
end

function tf = has(s, part)
tf = ~isempty(strfind(s, part));
end
