function test_shapes()
% What every method returns, class and size exactly, as the original
% DiME2 dime.m returned it: lists of names are Nx1 cells of char (its
% jsondecode of a JSON array; {} when empty), wait a double scalar, sync_r
% a 1x1 struct, join/leave/send/broadcast nothing. The devices part is the
% original client's own test (test_matlab_devices.m), run verbatim.
sock = getenv('DIME_SOCK');

% --- devices: the original test, groups a..g over four clients
d1 = dime('ipc', sock);
d2 = dime('ipc', sock);
d3 = dime('ipc', sock);
d4 = dime('ipc', sock);
d1.join('a', 'b', 'c', 'd', 'e');
d2.join('a', 'b', 'c');
d3.join('e', 'f');
d4.join('g');
devices = sort(d1.devices());
dt_check('shapes sort(devices()) is {''a''; ...; ''g''}', ...
         isequal(devices, {'a'; 'b'; 'c'; 'd'; 'e'; 'f'; 'g'}), describe(devices));
expect('shapes devices() is a 7x1 cell', d1.devices(), 'cell', [7 1]);
expect('shapes get_devices() is a 7x1 cell', d2.get_devices(), 'cell', [7 1]);
names = d1.devices();
dt_check('shapes devices() holds 1xN char rows', ...
         all(cellfun(@(n) ischar(n) && size(n, 1) == 1, names)), describe(names));

d1.leave('a', 'b', 'c', 'd');
d2.leave('a', 'b');
d3.leave('e', 'f');
d1.join('b');
d3.join('h');
d4.join('f');
devices = sort(d1.devices());
dt_check('shapes devices() after leave/join', isequal(devices, {'b'; 'c'; 'e'; 'f'; 'g'; 'h'}), ...
         describe(devices));

d1.leave('b', 'e');
d2.leave('c');
d3.leave('h');
d4.leave('f');
expect('shapes devices() with one group is a 1x1 cell', d1.devices(), 'cell', [1 1]);
d4.leave('g');
devices = d1.devices();
dt_check('shapes devices() with no group isequal {}', isequal(devices, {}), describe(devices));
expect('shapes devices() with no group is a 0x0 cell', devices, 'cell', [0 0]);

% --- sync: the names, as a column in arrival order; {} when none
d1.join('s');
p = 1; q = 'two'; r = int8(3);
d2.send('s', 'p', 'q', 'r');
clear p q r;
expect('shapes wait returns a double scalar', d1.wait(5), 'double', [1 1]);
first = d1.sync(1);
expect('shapes sync(1) names are a 1x1 cell', first, 'cell', [1 1]);
rest = d1.sync();
dt_check('shapes sync() names are {''q''; ''r''}', isequal(rest, {'q'; 'r'}), describe(rest));
expect('shapes sync() names are a 2x1 cell', rest, 'cell', [2 1]);
expect('shapes sync() with nothing queued is a 0x0 cell', d1.sync(), 'cell', [0 0]);
dt_check('shapes sync assigned the values', isequal(p, 1) && isequal(q, 'two') ...
         && isequal(r, int8(3)), 'values differ');

% --- sync_r: a 1x1 struct, struct() when nothing is queued
d2.send_r('s', 'k', {1, 2, 3});
d1.wait(5);
s = d1.sync_r();
expect('shapes sync_r is a 1x1 struct', s, 'struct', [1 1]);
expect('shapes a received list is a 1xN cell (as dimebloads built it)', s.k, 'cell', [1 3]);
empty = d1.sync_r();
expect('shapes sync_r with nothing queued is a 1x1 struct', empty, 'struct', [1 1]);
dt_check('shapes sync_r with nothing queued has no fields', isempty(fieldnames(empty)), ...
         describe(fieldnames(empty)));

% --- methods that return nothing, in the original too
no_output('join', @() d1.join('t'));
no_output('leave', @() d1.leave('t'));
no_output('send', @() d1.send_r('s', 'x', 1));
no_output('broadcast', @() d1.broadcast_r('x', 1));
d1.sync();

% --- share_keys: a list of names like devices
S = sprintf('shapes-%d', getpid());
d1.share_set('b', 2, 'share', S);
d1.share_set('a', 1, 'share', S);
k = d1.share_keys('share', S);
dt_check('shapes share_keys is {''a''; ''b''}', isequal(k, {'a'; 'b'}), describe(k));
expect('shapes share_keys is a 2x1 cell', k, 'cell', [2 1]);
expect('shapes share_len is a double scalar', d1.share_len('share', S), 'double', [1 1]);
expect('shapes share_contains is a logical scalar', d1.share_contains('a', 'share', S), 'logical', [1 1]);
d1.share_clear('share', S);
expect('shapes share_keys of an empty share is a 0x0 cell', d1.share_keys('share', S), 'cell', [0 0]);

delete(d4);
delete(d3);
delete(d2);
delete(d1);
end

function expect(name, x, cls, sz)
% The class and size of x, exactly.
dt_check(name, strcmp(class(x), cls) && isequal(size(x), sz), ...
         sprintf('got %s %s, expected %s %s', class(x), mat2str(size(x)), cls, mat2str(sz)));
end

function no_output(method, fn)
% Asking a method that returns nothing for a value is an error.
try
    v = fn(); %#ok<NASGU>
    dt_check(['shapes ' method ' returns nothing'], false, 'it returned a value');
catch e
    dt_check(['shapes ' method ' returns nothing'], ~strncmp(e.identifier, 'dime:', 5), ...
             [e.identifier ' ' e.message]);
end
end

function s = describe(c)
if iscell(c)
    s = sprintf('%s cell {%s}', mat2str(size(c)), strjoin(cellfun(@(x) num2str(x), c(:)', ...
                'UniformOutput', false), ', '));
else
    s = sprintf('%s %s', class(c), mat2str(size(c)));
end
end
