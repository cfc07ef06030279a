function test_c()
% Octave <-> C interop for matrices: c_peer (a plain client of
% include/dime.h, built by run.sh) checks what Octave sends bit for bit
% and sends matrices back; its checks come back as a report.
sock = getenv('DIME_SOCK');
peer = getenv('DIME_C_PEER');
log = [tempname() '.log'];
d = dime('ipc', sock);
d.join('oct');
system(sprintf('"%s" "%s" > "%s" 2>&1 &', peer, sock, log));
try
    d.wait(30);
    names = d.sync(1);
    if ~isequal(names, {'ready'})
        error('dime:test', 'expected ''ready''');
    end
catch e
    dt_check('c peer started', false, [e.message ' / peer log: ' dt_read_log(log)]);
    return;
end

nanbits = typecast(uint32([0 hex2dec('7FF80000')]), 'double'); % C's NAN
m33 = [1 2 3; 4 5 6; 7 8 9];
m3d = reshape(1:24, 2, 3, 4);
i64 = [intmin('int64') intmax('int64')];
u64 = [intmax('uint64'); 0; 1];
lg = logical([1 0; 0 1]);
cx = [complex(1, 2) complex(3, 0)];
cs = complex(single([1; 2]), single([0; 0]));
s4 = single(reshape((1:8) / 2, 2, 1, 2, 2));
e03 = zeros(0, 3);
spec = [nanbits Inf -Inf -0];
i8 = int8([-1 2 3; 4 -5 6]);
sc = 2.5;
d.send('c', 'm33', 'm3d', 'i64', 'u64', 'lg', 'cx', 'cs', 's4', 'e03', 'spec', 'i8', 'sc');
done = true;
d.send('c', 'done');
clear m33 m3d i64 u64 lg cx cs s4 e03 spec i8 sc done;

got = struct();
t0 = tic;
while ~isfield(got, 'done') && toc(t0) < 30
    try
        d.wait(max(1, 30 - toc(t0)));
    catch
        break;
    end
    s = d.sync_r();
    f = fieldnames(s);
    for i = 1:numel(f)
        got.(f{i}) = s.(f{i});
    end
end
if ~isfield(got, 'done')
    dt_check('c peer finished', false, ['timed out; peer log: ' dt_read_log(log)]);
    return;
end
for i = 1:numel(got.report)
    printf('%s\n', got.report{i});
end
want = {
    'cm',  [1 3 5; 2 4 6]
    'cv',  [1; 2; 3; 4]
    'c3',  reshape(int32(1:8), 2, 2, 2)
    'cr0', 7
    'cl',  logical([1 1; 0 1])
    'cz',  complex([1 2], [0 0])
    'cu',  [intmax('uint64'); uint64(5)]
    'ce',  zeros(0, 4, 'single')
    'c4',  reshape(int16([1 -2 3 -4 5 -6 7 -8 9 -10 11 -12]), 1, 2, 3, 2)
};
dt_check_received(got, want, 'c');
d.close();
end
