function test_api()
% The DiME2 client API: constructors, groups, send to several members,
% broadcast, sync(n), wait, send_r/sync_r, close and mexAtExit.
sock = getenv('DIME_SOCK');
port = str2double(getenv('DIME_TCP_PORT'));

% --- constructors
d1 = dime('ipc', sock);
dt_check('api dime(''ipc'', path)', isa(d1, 'dime') && strcmp(d1.address, ['unix:' sock]), d1.address);
try
    dt = dime('tcp', '127.0.0.1', port);
    dt.join('tcpgroup');
    x = 5;
    dt.send('tcpgroup', 'x');
    clear x;
    dt.sync();
    dt_check('api dime(''tcp'', host, port) send/sync', isequal(x, 5), 'x differs');
    delete(dt);
catch e
    dt_check('api dime(''tcp'', host, port) send/sync', false, e.message);
end
try
    du = dime(['unix:' sock]);
    du.join('addr');
    dt_check('api dime(address)', true);
    delete(du);
catch e
    dt_check('api dime(address)', false, e.message);
end

% --- groups and devices
d2 = dime('ipc', sock);
d1.join('g1', 'g2');
d2.join({'g2', 'g3'});
devs = d1.devices();
dt_check('api devices lists joined groups', iscell(devs) && all(ismember({'g1', 'g2', 'g3'}, devs)), ...
         strjoin(devs, ','));
dt_check('api get_devices alias', isequal(sort(d2.get_devices()), sort(devs)), 'differs');
d2.leave('g3');
dt_check('api leave removes empty group', ~ismember('g3', d1.devices()), 'g3 still listed');

% --- send to a group with several members (including the sender)
v = {1, 'two'};
d1.send('g2', 'v');
clear v;
n1 = d1.wait(5);
names = d1.sync();
r1 = v;
clear v;
d2.sync();
dt_check('api send reaches every member incl. sender', n1 == 1 && isequal(names, {'v'}) ...
         && isequal(r1, {1, 'two'}) && isequal(v, {1, 'two'}), 'not received by both');

% --- broadcast: every other client, never the sender
b = int8(7);
d1.broadcast('b');
clear b;
d2.wait(5);
d2.sync();
got_b = exist('b', 'var') && isequal(b, int8(7));
try
    d1.wait(0.2);
    self = true;
catch e
    self = ~strcmp(e.identifier, 'dime:timeout');
end
dt_check('api broadcast excludes the sender', got_b && ~self, 'wrong recipients');
d3 = dime('ipc', sock); % a client in no group also gets broadcasts
bb = 'hi';
d1.broadcast_r('bb', bb);
d3.wait(5);
s = d3.sync_r();
dt_check('api broadcast_r reaches a client in no group', isequal(s, struct('bb', 'hi')), 'not received');
d2.sync();

% --- sync(n), sync order, names returned
p = 1; q = 2; r = 3;
d1.send('g1', 'p', 'q', 'r');
clear p q r;
n = d1.wait(5);
first = d1.sync(1);
rest = d1.sync();
dt_check('api wait counts queued messages', n == 3, sprintf('wait returned %d', n));
dt_check('api sync(1) then sync()', isequal(first, {'p'}) && isequal(rest, {'q'; 'r'}) ...
         && isequal([p q r], [1 2 3]), 'wrong names or values');
none = d1.sync();
dt_check('api sync with nothing queued', isempty(none) && iscell(none), 'not an empty cell');

% --- wait with a timeout raises dime:timeout and the connection stays usable
tic;
try
    d1.wait(0.3);
    dt_check('api wait(timeout) times out', false, 'no error');
catch e
    el = toc;
    dt_check('api wait(timeout) times out', strcmp(e.identifier, 'dime:timeout') && el >= 0.25 && el < 5, ...
             sprintf('%s after %.2fs', e.identifier, el));
end
z = 9;
d1.send('g1', 'z');
clear z;
d1.sync();
dt_check('api usable after timeout', isequal(z, 9), 'z not received');

% --- send_r / sync_r (workspace-safe forms of the original client)
d1.send_r('g1', 'k1', 1, 'k2', 'two');
d1.send_r('g1', struct('k3', {{3}}));
s = d1.sync_r();
dt_check('api send_r pairs and struct, sync_r', isequal(s, struct('k1', 1, 'k2', 'two', 'k3', {{3}})), ...
         'struct differs');

% --- sync assigns in the caller's workspace (here, a nested function)
w = 11;
d1.send('g1', 'w');
clear w;
in_fn = sync_in_function(d1);
dt_check('api sync assigns in the caller, not base', isequal(in_fn, 11) && ~exist('w', 'var') ...
         && ~evalin('base', 'exist(''w'', ''var'')'), 'assigned elsewhere');

% --- server errors keep the connection usable
try
    d1.join('g1');
    dt_check('api join twice -> dime:server', false, 'no error');
catch e
    dt_check('api join twice -> dime:server', strcmp(e.identifier, 'dime:server') ...
             && ~isempty(strfind(e.message, 'already')), [e.identifier ' ' e.message]);
end
try
    d1.leave('nosuchgroup');
    dt_check('api leave unjoined -> dime:server', false, 'no error');
catch e
    dt_check('api leave unjoined -> dime:server', strcmp(e.identifier, 'dime:server'), e.identifier);
end
u = 'still';
d1.send('g1', 'u');
clear u;
d1.sync();
dt_check('api usable after server errors', isequal(u, 'still'), 'u not received');

% --- close, delete, clear, mexAtExit
base = dime_mex('open_count');
dc = dime('ipc', sock);
dt_check('api connect adds an open connection', dime_mex('open_count') == base + 1, 'count');
dc.close();
dc.close(); % double close is harmless
dt_check('api close releases it', dime_mex('open_count') == base, 'count');
try
    dc.join('x');
    dt_check('api closed client -> dime:closed', false, 'no error');
catch e
    dt_check('api closed client -> dime:closed', strcmp(e.identifier, 'dime:closed'), e.identifier);
end
dc = dime('ipc', sock);
clear dc;
dt_check('api clearing the object closes it', dime_mex('open_count') == base, 'count');
keep = dime('ipc', sock);
clear dime_mex; % runs the mexAtExit handler: every connection closed
dt_check('api mexAtExit closes connections', dime_mex('open_count') == 0, 'count');
try
    keep.join('x');
    dt_check('api stale handle after clear mex -> dime:closed', false, 'no error');
catch e
    dt_check('api stale handle after clear mex -> dime:closed', strcmp(e.identifier, 'dime:closed'), e.identifier);
end
clear keep;
dt_check('api version', strcmp(dime_mex('version'), regexp(dime_mex('version'), '^\d+\.\d+\.\d+.*$', 'match', 'once')), ...
         dime_mex('version'));
end

function w = sync_in_function(d)
d.sync();
end
