function test_python()
% Octave <-> Python interop through our Python binding (bindings/python):
% every row of the type table both ways, checked on both sides. Python's
% checks come back as a report (see py_peer.py).
sock = getenv('DIME_SOCK');
py = getenv('DIME_PYTHON');
here = fileparts(mfilename('fullpath'));
log = [tempname() '.log'];
d = dime('ipc', sock);
d.join('oct');
system(sprintf('"%s" "%s" "%s" > "%s" 2>&1 &', py, fullfile(here, 'py_peer.py'), sock, log));
try
    d.wait(60);
    names = d.sync(1);
    if ~isequal(names, {'ready'})
        error('dime:test', 'expected ''ready'', got %s', strjoin(names, ','));
    end
catch e
    dt_check('python peer started', false, [e.message ' / peer log: ' dt_read_log(log)]);
    return;
end

% --- Octave -> Python (py_peer.py's CHECKS hold the expectations)
[out, want] = dt_py_values();
d.send_r('py', out);
d.send_r('py', 'done', true);

% --- Python -> Octave
want = [want; {
    'p_echo_row',   [1; 2; 3]
    'p_echo_m3d',   reshape(1:24, 2, 3, 4)
    'p_echo_st',    struct('foo', 1, 'bar', 'x')
    'p_echo_l33',   logical(eye(3))
}];
got = struct();
t0 = tic;
while ~isfield(got, 'done') && toc(t0) < 60
    try
        d.wait(max(1, 60 - toc(t0)));
    catch e
        break;
    end
    s = d.sync_r();
    f = fieldnames(s);
    for i = 1:numel(f)
        got.(f{i}) = s.(f{i});
    end
end
if ~isfield(got, 'done')
    dt_check('python peer finished', false, ['timed out; peer log: ' dt_read_log(log)]);
    return;
end
if isfield(got, 'report')
    for i = 1:numel(got.report)
        printf('%s\n', got.report{i});
    end
else
    dt_check('python report received', false, 'no report');
end
dt_check_received(got, want, 'python');
d.close();
end
