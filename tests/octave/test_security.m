function test_security()
% TLS and --auth from MATLAB: a server on tls: with --auth serving the
% committed test certificates (tests/fixtures/tls, made by
% tests/tls_fixtures.rs), a token and a CA given as options, a refused
% token and a refused command (dime:permission), and a certificate error
% naming the server.
bin = getenv('DIME_BIN');
pki = fullfile(fileparts(mfilename('fullpath')), '..', 'fixtures', 'tls');
dir = tempname();
mkdir(dir);
cleanup = onCleanup(@() system(['rm -rf ' dir]));
fid = fopen(fullfile(dir, 'users'), 'w');
fprintf(fid, 'role sim join:sim.* send:sim.*\nann tok-ann sim\n');
fclose(fid);
log = fullfile(dir, 'server.log');
[~, pid] = system(sprintf(['%s -l tls:127.0.0.1:0 --tls-cert %s/server.pem ' ...
                           '--tls-key %s/server.key --auth %s/users >/dev/null 2>%s & echo $!'], ...
                          bin, pki, pki, dir, log));
stop = onCleanup(@() system(['kill ' strtrim(pid)]));
port = '';
for i = 1:200
    text = fileread(log);
    tok = regexp(text, 'listening on tls:[^ ]*:(\d+)', 'tokens', 'once');
    if ~isempty(tok)
        port = tok{1};
        break;
    end
    pause(0.05);
end
dt_check('security server started', ~isempty(port), fileread(log));
ca = fullfile(pki, 'ca.pem');

d = dime('tls', 'localhost', port, 'token', 'tok-ann', 'tls_ca', ca);
d.join('sim.m');
x = [1 2 3];
d.send('sim.m', 'x');
clear x;
d.sync();
dt_check('security tls with a token round-trips', isequal(x, [1 2 3]), mat2str(x));
dt_expect_error('security refused command -> dime:permission', @() d.join('ops'), ...
                'dime:permission');
d.join('sim.after');
dt_check('security usable after a refusal', any(strcmp(d.devices(), 'sim.after')), '');
d.close();

dt_expect_error('security wrong token -> dime:permission', ...
                @() dime('tls', 'localhost', port, 'token', 'nope', 'tls_ca', ca), ...
                'dime:permission');
try
    dime('tls', 'localhost', port, 'token', 'tok-ann', 'tls_ca', fullfile(pki, 'other-ca.pem'));
    dt_check('security certificate error', false, 'no error');
catch e
    dt_check('security certificate error names the server and why', ...
             strcmp(e.identifier, 'dime:connection') ...
             && ~isempty(strfind(e.message, ['tls:localhost:' port])) ...
             && ~isempty(strfind(e.message, 'not signed by a trusted')), e.message);
end
end

