function test_errors()
% Errors raise dime:<kind> with the library's message, and the connection
% stays usable afterwards.
sock = getenv('DIME_SOCK');

dt_expect_error('errors connect to a missing socket -> dime:connection', ...
                @() dime('ipc', [tempname() '.sock']), 'dime:connection');
dt_expect_error('errors connect to a closed tcp port -> dime:connection', ...
                @() dime('tcp', '127.0.0.1', 1), 'dime:connection');
dt_expect_error('errors unknown protocol -> dime:argument', @() dime('carrier-pigeon'), 'dime:argument');
dt_expect_error('errors bad address -> dime:argument', @() dime('tcp', '127.0.0.1', 'port'), 'dime:argument');
try
    dime('ipc', '/nonexistent/dime.sock');
catch e
    dt_check('errors connection message names the address', ~isempty(strfind(e.message, '/nonexistent/dime.sock')), e.message);
end

d = dime('ipc', sock);
d.join('err');

% undefined variable
try
    d.send('err', 'no_such_variable');
    dt_check('errors undefined variable -> dime:argument', false, 'no error');
catch e
    dt_check('errors undefined variable -> dime:argument', strcmp(e.identifier, 'dime:argument') ...
             && ~isempty(strfind(e.message, 'no_such_variable')), [e.identifier ' ' e.message]);
end
check_usable(d, 'errors usable after undefined variable');

% function handle: nothing of the batch is sent
ok1 = 1;
f = @sin;
try
    d.send('err', 'ok1', 'f');
    dt_check('errors function handle -> dime:type', false, 'no error');
catch e
    dt_check('errors function handle -> dime:type', strcmp(e.identifier, 'dime:type') ...
             && ~isempty(strfind(e.message, 'function_handle')) && ~isempty(strfind(e.message, '''f''')), ...
             [e.identifier ' ' e.message]);
end
check_usable(d, 'errors usable after function handle, nothing sent');

% unsupported values nested in cells and structs, objects, sparse, bad UTF-8
nested = {1, {2, @cos}};
in_struct = struct('a', 1, 'g', @(x) x);
obj = inputParser();
sp = sparse(eye(3));
bad = char([104 255 105]);
cases = {'nested', 'function_handle'; 'in_struct', 'function_handle'; 'obj', 'inputParser'; ...
         'sp', 'sparse'; 'bad', 'UTF-8'};
for i = 1:size(cases, 1)
    name = cases{i, 1};
    try
        d.send('err', name);
        dt_check(['errors ' name ' -> dime:type'], false, 'no error');
    catch e
        dt_check(['errors ' name ' -> dime:type'], strcmp(e.identifier, 'dime:type') ...
                 && ~isempty(strfind(e.message, cases{i, 2})), [e.identifier ' ' e.message]);
    end
end
check_usable(d, 'errors usable after unsupported values');

% server refusal
x = 1;
try
    d.send('no_such_group', 'x');
    dt_check('errors send to unknown group -> dime:server', false, 'no error');
catch e
    dt_check('errors send to unknown group -> dime:server', strcmp(e.identifier, 'dime:server') ...
             && ~isempty(strfind(e.message, 'No such group')), [e.identifier ' ' e.message]);
end
check_usable(d, 'errors usable after server refusal');

% the MEX dispatcher's own argument checks
dt_expect_error('errors dime_mex unknown command', @() dime_mex('frobnicate'), 'dime:argument');
dt_expect_error('errors dime_mex bad handle', @() dime_mex('join', uint64(12345), 'g'), 'dime:closed');
dt_expect_error('errors dime_mex handle not uint64', @() dime_mex('join', 1, 'g'), 'dime:argument');
h = dime_mex('connect', ['unix:' sock]);
dt_expect_error('errors dime_mex odd name/value list', @() dime_mex('broadcast', h, 'a'), 'dime:argument');
% A NUL would cut a name short where libdime takes a C string (the
% command, group, variable, pattern kind): refused, not truncated.
dt_expect_error('errors dime_mex command with a NUL', @() dime_mex(['version' char(0) 'x']), 'dime:argument');
dt_expect_error('errors group name with a NUL', @() dime_mex('join', h, ['g' char(0) 'x']), 'dime:argument');
dt_expect_error('errors variable name with a NUL', ...
                @() dime_mex('broadcast', h, ['a' char(0) 'b'], 1), 'dime:argument');
dt_expect_error('errors pattern kind with a NUL', ...
                @() dime_mex('ts_count', h, 's', {['any' char(0) 'x']; []}), 'dime:argument');
dime_mex('close', h);
dt_expect_error('errors group name not a string', @() d.join(42), 'dime:argument');
check_usable(d, 'errors usable after argument errors');

% lost server: dime:connection
bin = getenv('DIME_BIN');
priv = [tempname() '.sock'];
[~, pid] = system(sprintf('%s -l unix:%s >/dev/null 2>&1 & echo $!', bin, priv));
pid = str2double(pid);
for k = 1:100
    if exist(priv, 'file')
        break;
    end
    pause(0.05);
end
try
    dl = dime('ipc', priv);
    dl.join('lost');
    kill(pid, 15);
    pause(0.3);
    dl.join('after');
    dl.devices();
    dt_check('errors lost server -> dime:connection', false, 'no error');
catch e
    dt_check('errors lost server -> dime:connection', strcmp(e.identifier, 'dime:connection'), ...
             [e.identifier ' ' e.message]);
end
d.close();
end

function check_usable(d, name)
token = rand();
d.send_r('err', 'token', token);
s = d.sync_r();
dt_check(name, isequal(fieldnames(s), {'token'}) && isequal(s.token, token), 'unexpected messages queued');
end
