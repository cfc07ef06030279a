function test_original_server()
% The MATLAB binding against an original DiME2 server: the test double
% tests/dime2_double.py (DIME2_DOUBLE_SOCK), which knows only DiME2's
% commands, announces no extensions and logs each request's command to
% DIME2_DOUBLE_LOG. DiME2's methods work, wait blocks in the server (one
% DiME2 wait, no polling), a timed wait polls gently, and shares and tuple
% spaces raise dime:unsupported; against our server the extensions are
% there.
sock = getenv('DIME2_DOUBLE_SOCK');
log = getenv('DIME2_DOUBLE_LOG');
py = getenv('DIME_PYTHON');
here = fileparts(mfilename('fullpath'));

d = dime('ipc', sock);
ext = d.server_extensions();
dt_check('original server_extensions is a 0x1 cell', iscell(ext) && isequal(size(ext), [0 1]), ...
         sprintf('%s %s', class(ext), mat2str(size(ext))));
tf = d.supports('share');
dt_check('original supports(''share'') is false', islogical(tf) && isscalar(tf) && ~tf, mat2str(tf));

% DiME2's methods round-trip.
d.join('oct');
a = magic(3);
d.send('oct', 'a');
clear a;
d.sync();
dt_check('original send and sync round-trip', exist('a', 'var') == 1 && isequal(a, magic(3)), '');

% wait blocks in the server until a message comes: one DiME2 wait, no sync.
syncs = requests(log, 'sync');
waits = requests(log, 'wait');
system(sprintf('"%s" "%s" "%s" oct 1 > /dev/null 2>&1 &', py, fullfile(here, 'py_send_later.py'), sock));
t = tic;
n = d.wait();
took = toc(t);
dt_check('original wait blocks until a message arrives', n == 1 && took >= 0.8, ...
         sprintf('n = %d after %.2f s', n, took));
dt_check('original wait is one DiME2 wait, without polling', ...
         requests(log, 'wait') == waits + 1 && requests(log, 'sync') == syncs, ...
         sprintf('%d waits, %d syncs', requests(log, 'wait') - waits, requests(log, 'sync') - syncs));
d.sync();
dt_check('original the late message arrives', exist('late', 'var') == 1 && isequal(late, 42), '');

% A timed wait polls with sync, backing off: a handful per second.
syncs = requests(log, 'sync');
t = tic;
dt_expect_error('original wait(1) with nothing sent -> dime:timeout', @() d.wait(1), 'dime:timeout');
took = toc(t);
polls = requests(log, 'sync') - syncs;
dt_check('original timed wait polls gently', took >= 1 && took < 2 && polls >= 2 && polls <= 40, ...
         sprintf('%d syncs in %.2f s', polls, took));

% Shares and tuple spaces fail clearly; nothing is sent; d stays usable.
try
    d.share_set('k', 1);
    dt_check('original share_set -> dime:unsupported', false, 'no error');
catch e
    dt_check('original share_set -> dime:unsupported', strcmp(e.identifier, 'dime:unsupported') ...
             && ~isempty(strfind(e.message, 'does not support shared dictionaries')) ...
             && ~isempty(strfind(e.message, 'original DiME2 server')), [e.identifier ' ' e.message]);
end
dt_expect_error('original out -> dime:unsupported', @() d.out({1}), 'dime:unsupported');
dt_check('original nothing of a share or space was sent', ...
         requests(log, 'share_set') == 0 && requests(log, 'ts_out') == 0, '');
dv = d.devices();
dt_check('original usable after dime:unsupported', isequal(dv(:), {'oct'}), '');
d.close();

% Our server announces its extensions.
o = dime('ipc', getenv('DIME_SOCK'));
ext = o.server_extensions();
dt_check('ours server_extensions is an Nx1 cell listing share and space', ...
         iscell(ext) && size(ext, 2) == 1 && any(strcmp(ext, 'share')) && any(strcmp(ext, 'space')), ...
         sprintf('%s %s', class(ext), mat2str(size(ext))));
dt_check('ours supports(''share'')', o.supports('share'), '');
dt_check('ours does not support ''no such thing''', ~o.supports('no such thing'), '');
o.close();
end

function n = requests(log, command)
% Lines of the double's request log equal to COMMAND.
if exist(log, 'file') ~= 2
    n = 0;
    return;
end
n = sum(strcmp(strsplit(fileread(log), "\n"), command));
end
