function test_pipeline()
% Pipelined sends from MATLAB: off by default; d.pipeline(true/n/false);
% a refused send raises dime:server at a later call, naming it; the
% client's own sync sees its sends; flush and close wait for the answers;
% DIME_PIPELINE turns it on at connect; against an original DiME2 server
% (the test double) the window is its client's 16.
sock = getenv('DIME_SOCK');
double_sock = getenv('DIME2_DOUBLE_SOCK');

a = dime('ipc', sock);
b = dime('ipc', sock);
b.join('pb');
dt_check('pipeline off by default', a.pipeline() == 0, sprintf('%d', a.pipeline()));
dt_expect_error('pipeline off: a refused send raises at once', @() a.send_r('nobody', 'x', 1), ...
                'dime:server');
dt_check('pipeline(true) gives the default window', a.pipeline(true) == 1024 && a.pipeline() == 1024, '');
dt_check('pipeline(8)', a.pipeline(8) == 8, '');

% A refused send is raised by a later call, naming it; the others arrive.
a.send_r('pb', 'first', 1);
a.send_r('nobody', 'lost', 2);
a.send_r('pb', 'third', 3);
dt_check('pipeline sends are outstanding', a.unacknowledged() == 3, sprintf('%d', a.unacknowledged()));
try
    a.devices();
    dt_check('pipeline late failure raised by devices', false, 'no error');
catch e
    dt_check('pipeline late failure raised by devices', strcmp(e.identifier, 'dime:server') ...
             && ~isempty(strfind(e.message, 'pipelined send #3 of ''lost'' to group ''nobody'' failed')), ...
             [e.identifier ' ' e.message]);
end
dt_check('pipeline raised once', isequal(a.devices(), {'pb'}), '');
s = b.sync_r();
dt_check('pipeline other sends delivered', isequal(fieldnames(s), {'first'; 'third'}), ...
         strjoin(fieldnames(s)', ','));

% The client's own sync sees its earlier sends, in order.
a.join('pa');
for i = 1:20
    a.send_r('pa', sprintf('v%d', i), i);
end
s = a.sync_r();
dt_check('pipeline own sync sees every send', numel(fieldnames(s)) == 20 && s.v20 == 20, '');

% The window bounds what is unanswered; flush waits for every answer.
most = 0;
for i = 1:100
    a.send_r('pb', 'seq', i);
    most = max(most, a.unacknowledged());
end
a.flush();
dt_check('pipeline window bounds the outstanding sends', most <= 8 && a.unacknowledged() == 0, ...
         sprintf('most %d', most));
n = b.wait(5);
dt_check('pipeline flushed sends are all queued', n == 100, sprintf('%d', n));
b.sync();

% close reports a failure not yet reported, and closes anyway.
a.send_r('nobody', 'at_close', 1);
dt_expect_error('pipeline close raises the late failure', @() a.close(), 'dime:server');
dt_expect_error('pipeline closed after close', @() a.devices(), 'dime:closed');

% DIME_PIPELINE at connect.
setenv('DIME_PIPELINE', 'on');
c = dime('ipc', sock);
dt_check('pipeline DIME_PIPELINE=on', c.pipeline() == 1024, sprintf('%d', c.pipeline()));
delete(c);
unsetenv('DIME_PIPELINE');
c = dime('ipc', sock);
dt_check('pipeline unset DIME_PIPELINE: off', c.pipeline() == 0, '');
delete(c);

% Against an original DiME2 server: its own client's window.
o = dime('ipc', double_sock);
dt_check('pipeline original server window is 16', o.pipeline(true) == 16, sprintf('%d', o.pipeline()));
o.join('po');
for i = 1:40
    o.send_r('po', 'x', i);
end
n = o.wait();
dt_check('pipeline original server wait after sends', n == 40 && o.unacknowledged() == 0, sprintf('%d', n));
o.sync();
o.close();
delete(b);
end
