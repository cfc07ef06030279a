function test_arrays()
% Arrays in their own memory order (dimeb_layout) and, on one host, through
% shared memory, with the MEX file on the receiving and the sending side
% (py_arrays_peer.py is the Python side; its docstring has the protocol):
%
% - C-ordered numpy arrays of every class, small (socket) and large (shared
%   memory on the unix socket), shapes that are not multiples of the
%   transpose's tile (1023x301, 1023x77, 1xN, Nx1) and 3-D ones, arrive in
%   Octave with their shape and every element bit for bit (the MEX file
%   transposes them once, dime_matrix_copy_column_major);
% - the same arrays over TCP (no shared memory) arrive the same;
% - Octave's large arrays reach Python as Fortran-ordered views, the unix
%   ones in a shared-memory mapping, the TCP one not;
% - a large array Octave -> Octave through shared memory, and over TCP.
%
% That shared memory carried the large payloads is read from the broker's
% counters (`dime stats --json`): it reads only the messages' headers from
% the socket (bytes_in, bytes_out stay far below the payloads' size) and
% counts each recipient's shm_release of a segment.
sock = getenv('DIME_SOCK');
port = str2double(getenv('DIME_TCP_PORT'));
py = getenv('DIME_PYTHON');
here = fileparts(mfilename('fullpath'));
log = [tempname() '.log'];
d = dime('ipc', sock);
d.join('oct');
dt = dime('tcp', '127.0.0.1', port);
dt.join('oct_tcp');
dt_spawn(sprintf('"%s" "%s" "%s"', py, fullfile(here, 'py_arrays_peer.py'), sock), log);
try
    dt_receive(d, 'ready', 60);
catch e
    dt_check('arrays python peer started', false, [e.message ' / peer log: ' dt_read_log(log)]);
    return;
end

cases = arrays_cases();
large_bytes = 0;
n_large = 0;
for i = 1:size(cases, 1)
    b = numel(arrays_value(cases{i, 2}, cases{i, 3})) * arrays_elem_bytes(cases{i, 2});
    if b >= 256 * 1024
        large_bytes = large_bytes + b;
        n_large = n_large + 1;
    end
end

% --- Python -> Octave on the unix socket: large ones in shared memory.
s0 = arrays_stats();
d.send_r('py', 'go_unix', true);
[got, ok] = arrays_collect(d, log);
if ~ok
    return;
end
arrays_check_cases(got, cases, 'unix');
clear got;
arrays_check_shm('python -> octave (unix) large arrays through shared memory', ...
                 s0, large_bytes, n_large);

% --- The same over TCP: no shared memory, the same values.
s0 = arrays_stats();
d.send_r('py', 'go_tcp', true);
[got, ok] = arrays_collect(dt, log);
if ~ok
    return;
end
s1 = arrays_stats();
arrays_check_cases(got, cases, 'tcp');
dt_check('python -> octave (tcp) large arrays through the socket', ...
         delta(s0, s1, 'bytes_out') >= large_bytes, ...
         sprintf('bytes_out grew by %d, the arrays hold %d', delta(s0, s1, 'bytes_out'), large_bytes));
clear got;

% --- Octave -> Python: Fortran-ordered views; unix ones in shared memory.
out = {'o_d700x500', 'double', [700 500]
       'o_i16', 'int16', [1023 301]
       'o_u64', 'uint64', [1023 301]
       'o_logical', 'logical', [1023 301]
       'o_cdouble', 'cdouble', [1023 301]
       'o_d3d', 'double', [40 30 70]};
out_bytes = 0;
s0 = arrays_stats();
for i = 1:size(out, 1)
    v = arrays_value(out{i, 2}, out{i, 3});
    out_bytes = out_bytes + numel(v) * arrays_elem_bytes(out{i, 2});
    d.send_r('py', out{i, 1}, v);
end
clear v;
s1 = arrays_stats();
dt_check('octave -> python (unix) large arrays written to shared memory', ...
         delta(s0, s1, 'bytes_in') < out_bytes / 20, ...
         sprintf('bytes_in grew by %d for %d bytes of arrays', delta(s0, s1, 'bytes_in'), out_bytes));
dt.send_r('py', 'o_tcp_d700x500', arrays_value('double', [700 500]));
dt.send_r('py', 'odone', true);
try
    report = dt_receive(d, 'report', 120);
    for i = 1:numel(report)
        printf('%s\n', report{i});
    end
    dt_check('python checked every array octave sent', numel(report) == size(out, 1) + 1, ...
             sprintf('%d report lines', numel(report)));
catch e
    dt_check('arrays python report received', false, [e.message ' / peer log: ' dt_read_log(log)]);
end

% --- Octave -> Octave: through shared memory on the unix socket, and TCP.
d2 = dime('ipc', sock);
d2.join('oct2');
want = arrays_value('double', [700 500]);
s0 = arrays_stats();
d.send_r('oct2', 'big', want);
try
    v = dt_receive(d2, 'big', 30);
    [same, why] = dt_same(v, want, 'big');
    dt_check('octave -> octave (unix) 700x500 double', same, why);
catch e
    dt_check('octave -> octave (unix) 700x500 double', false, e.message);
end
clear v;
arrays_check_shm('octave -> octave (unix) through shared memory', s0, numel(want) * 8, 1);
want3 = arrays_value('int32', [70 41 33]);
d.send_r('oct_tcp', 'big', want, 'big3', want3);
try
    v = dt_receive(dt, 'big3', 30);
    [same, why] = dt_same(v, want3, 'big3');
    dt_check('octave -> octave (tcp) 70x41x33 int32', same, why);
catch e
    dt_check('octave -> octave (tcp) 70x41x33 int32', false, e.message);
end
d.close();
d2.close();
dt.close();
end

function c = arrays_cases()
% Name, class, Octave size: py_arrays_peer.py's CASES (Python's 1xN and
% Nx1 shapes keep both dimensions).
classes = {'double', 'single', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', ...
           'int64', 'uint64', 'logical', 'cdouble', 'csingle'};
c = cell(0, 3);
for i = 1:numel(classes)
    c(end + 1, :) = {['s_' classes{i}], classes{i}, [3 4]};
    c(end + 1, :) = {['l_' classes{i}], classes{i}, [1023 301]};
end
c = [c; {
    'd700x500', 'double', [700 500]
    'd1023x77', 'double', [1023 77]
    'drow', 'double', [1 40000]
    'dcol', 'double', [40000 1]
    'd3d_small', 'double', [2 3 4]
    'd3d', 'double', [40 30 70]
    'i16_3d', 'int16', [33 65 70]}];
end

function x = arrays_value(cls, sz)
% The array of class CLS and size SZ that py_arrays_peer.py's value()
% builds: element k (k counting in C order, last index fastest) is a
% function of k, so a transposed or misread array cannot compare equal.
n = prod(sz);
K = permute(reshape(0:n - 1, fliplr(sz)), numel(sz):-1:1);
switch cls
    case 'double'
        x = K + 0.25;
        x(K == 1) = -0;
        x(K == 2) = -Inf;
    case 'single'
        x = single(K + 0.5);
    case 'int8'
        x = int8(mod(K, 256) - 128);
    case 'uint8'
        x = uint8(mod(K * 7, 256));
    case 'int16'
        x = int16(mod(K, 65536) - 32768);
    case 'uint16'
        x = uint16(mod(K * 3, 65536));
    case 'int32'
        x = int32(K * 7 - 2^31);
    case 'uint32'
        x = uint32(2^32 - 1 - K * 3);
    case 'int64'
        x = intmin('int64') + int64(K) * int64(3);
        x(K == n - 1) = intmax('int64');
    case 'uint64'
        x = intmax('uint64') - uint64(K) * uint64(5);
    case 'logical'
        x = mod(K, 13) < 6;
    case 'cdouble'
        x = complex(K + 0.5, -(2 * K + 0.25));
    case 'csingle'
        x = complex(single(K + 0.5), single(-(K + 1)));
    otherwise
        error('dime:test', 'unknown class %s', cls);
end
end

function b = arrays_elem_bytes(cls)
switch cls
    case {'int8', 'uint8', 'logical'}
        b = 1;
    case {'int16', 'uint16'}
        b = 2;
    case {'single', 'int32', 'uint32'}
        b = 4;
    case 'cdouble'
        b = 16;
    otherwise
        b = 8;
end
end

function [got, ok] = arrays_collect(c, log)
% Receives on C until Python's `sent`: a struct of what came.
got = struct();
ok = true;
t0 = tic;
while ~isfield(got, 'sent')
    if toc(t0) > 120
        dt_check('arrays python peer sent its arrays', false, ...
                 ['timed out; peer log: ' dt_read_log(log)]);
        ok = false;
        return;
    end
    try
        c.wait(max(1, 120 - toc(t0)));
    catch e
        if ~strcmp(e.identifier, 'dime:timeout')
            rethrow(e);
        end
        continue;
    end
    s = c.sync_r();
    f = fieldnames(s);
    for i = 1:numel(f)
        got.(f{i}) = s.(f{i});
    end
end
end

function arrays_check_cases(got, cases, how)
for i = 1:size(cases, 1)
    name = cases{i, 1};
    label = sprintf('octave receives %s (%s %s, C order) over %s', name, cases{i, 2}, ...
                    mat2str(cases{i, 3}), how);
    if ~isfield(got, name)
        dt_check(label, false, 'not received');
        continue;
    end
    [same, why] = dt_same(got.(name), arrays_value(cases{i, 2}, cases{i, 3}), name);
    dt_check(label, same, why);
end
end

function s = arrays_stats()
% The broker's counters (docs/admin.md), read with `dime stats --json`.
[rc, out] = system(sprintf('"%s" stats --json "unix:%s"', getenv('DIME_BIN'), getenv('DIME_SOCK')));
if rc ~= 0
    error('dime:test', 'dime stats failed (%d): %s', rc, out);
end
s = jsondecode(out);
end

function n = delta(s0, s1, field)
n = double(s1.(field)) - double(s0.(field));
end

function n = requests(s, command)
if isfield(s.commands, command)
    n = double(s.commands.(command).requests);
else
    n = 0;
end
end

function arrays_check_shm(label, s0, bytes, n)
% Since the counters S0 the broker passed BYTES of payloads in N large
% messages: through shared memory, if it read and wrote only a small part
% of that through sockets, and each message's segment was released (a
% release has no reply: read the counters again until it is in, for 10 s
% at most).
t0 = tic;
while true
    s1 = arrays_stats();
    bin = delta(s0, s1, 'bytes_in');
    bout = delta(s0, s1, 'bytes_out');
    released = requests(s1, 'shm_release') - requests(s0, 'shm_release');
    if released >= n || toc(t0) > 10
        break;
    end
    pause(0.05);
end
dt_check(label, bin < bytes / 20 && bout < bytes / 20 && released >= n, ...
         sprintf('bytes_in +%d, bytes_out +%d for %d bytes of arrays; %d shm_release for %d messages', ...
                 bin, bout, bytes, released, n));
end
