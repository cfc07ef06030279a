function test_stream_python()
% Streams an Octave reader reads from a Python producer (py_stream_peer.py,
% on the C ABI streams through ctypes): every PY_VALUES value of the type
% table as an item, in order, through a 4-item window; a producer error
% (ValueError) after its items; an early close that stops the producer;
% and that every stream is freed.
sock = getenv('DIME_SOCK');
py = getenv('DIME_PYTHON');
here = fileparts(mfilename('fullpath'));
peer = fullfile(here, 'py_stream_peer.py');
d = dime('ipc', sock);
d.join('oct');
[~, want] = dt_py_values();

log = [tempname() '.log'];
dt_spawn(sprintf('"%s" "%s" "%s"', py, peer, sock), log);
try
    pid = dt_receive(d, 'peer_pid', 60);
catch e
    dt_check('stream python producer started', false, [e.message ' / peer log: ' dt_read_log(log)]);
    return;
end
guard = onCleanup(@() system(sprintf('kill -9 %d 2>/dev/null', pid)));

% the type table, in order
try
    s = d.stream('py_values', want(:, 1)', 'timeout', 60, 'items', 4);
    for i = 1:size(want, 1)
        [v, ok] = s.next(30);
        if ~ok
            dt_check(['stream python item ' want{i, 1}], false, 'the stream ended early');
            break;
        end
        [same, why] = dt_same(v, want{i, 2}, want{i, 1});
        dt_check(['stream python item ' want{i, 1}], same, why);
    end
    [~, ok] = s.next(30);
    dt_check('stream python: ends after the last item', ~ok && s.done(), 'not ended');
catch e
    dt_check('stream python values', false, [e.identifier ' ' e.message ' / ' dt_read_log(log)]);
end

% a producer error after its items
try
    s = d.stream('py_fail', [], 'timeout', 60);
    first = [s.next(30), s.next(30)];
    dt_check('stream python: items before the error', isequal(first, [1 2]), mat2str(first));
    [~, ~] = s.next(30);
    dt_check('stream python error -> dime:remoteError', false, 'no error');
catch e
    dt_check('stream python error -> dime:remoteError', strcmp(e.identifier, 'dime:remoteError') ...
             && has(e.message, 'ValueError') && has(e.message, 'bad stream after 2') ...
             && has(e.message, 'py_stream_peer.py'), [e.identifier ' ' e.message]);
end

% an early close stops the producer
try
    s = d.stream('py_endless', [], 'timeout', 60, 'items', 2);
    first = [s.next(30), s.next(30), s.next(30)];
    s.close();
    dt_check('stream python endless: first items', isequal(first, [1 2 3]), mat2str(first));
    k = dt_receive(d, 'stopped_after', 30);
    dt_check('stream python: early close stops the producer', k >= 3 && k <= 6, ...
             sprintf('stopped after %d', k));
catch e
    dt_check('stream python early close', false, [e.identifier ' ' e.message ' / ' dt_read_log(log)]);
end

clear s;
[~, ~, streams] = dime_mex('rpc_count');
dt_check('stream python: every stream freed', streams == 0, sprintf('%d streams', streams));
d.close();
end

function tf = has(s, part)
tf = ~isempty(strfind(s, part));
end
