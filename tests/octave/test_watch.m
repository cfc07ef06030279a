function test_watch()
% Leases, fencing tokens and change events from Octave (dime.m): a leased
% lock that runs out passes to the next waiter with a larger token and the
% old token's writes are refused; renewal; share watches by prefix, tuple
% space and group watches; resuming from a saved position.
sock = getenv('DIME_SOCK');
S = sprintf('octave-watch-%d', getpid());
d = dime('ipc', sock);
d2 = dime('ipc', sock);

% --- leases and fencing
t1 = d.share_lock_lease('job', 0.2, 'share', S);
dt_check('a lease gives a uint64 token', isa(t1, 'uint64') && t1 > 0, class(t1));
t2 = d2.share_lock_lease('job', 5, 10, 'share', S);   % waits for the lease to run out
dt_check('the next grant has a larger token', t2 > t1, sprintf('%d then %d', t1, t2));
d2.share_set_fenced('job', 'fresh', t2, 'share', S);
dt_expect_error('a write with the old token is refused', ...
                @() d.share_set_fenced('job', 'stale', t1, 'share', S), 'dime:server');
dt_expect_error('a delete with the old token is refused', ...
                @() d.share_del_fenced('job', t1, 'share', S), 'dime:server');
dt_check('the new holder''s value stands', strcmp(d.share_get('job', 'share', S), 'fresh'), '');
dt_expect_error('renewing a lost lease fails', @() d.share_lock_renew('job', 1, 'share', S), 'dime:server');
dt_check('the holder renews', d2.share_lock_renew('job', 5, 'share', S) == t2, '');
dt_check('fenced delete by the holder', d2.share_del_fenced('job', t2, 'share', S), '');
d2.share_unlock('job', 'share', S);
t3 = d.share_lock('share', S);
dt_check('share_lock returns a token too', t3 > t2, '');
d.share_unlock('share', S);
dt_expect_error('a lease must be positive', @() d.share_lock_lease([], 0, 'share', S), 'dime:argument');

% --- a share watch
w = d.watch_share('jobs/', 'share', S);
d2.share_set('jobs/1', 5, 'share', S);
d2.share_set('other', 6, 'share', S);
d2.share_del('jobs/1', 'share', S);
ev = d.watch_next(w, 5);
dt_check('set event', strcmp(ev.kind, 'set') && strcmp(ev.key, 'jobs/1') && isequal(ev.value, 5) ...
         && strcmp(ev.topic, S), disp_ev(ev));
ev2 = d.watch_next(w, 5);
dt_check('del event, no value', strcmp(ev2.kind, 'del') && isempty(ev2.value) && ev2.seq > ev.seq, disp_ev(ev2));
dt_check('nothing else (prefix)', isempty(d.watch_next(w, 0.1)), '');
p = d.watch_position(w);
dt_check('position is uint64 [epoch seq]', isa(p, 'uint64') && numel(p) == 2 && double(p(2)) == ev2.seq, '');
d.watch_close(w);
d.watch_close(w);   % idempotent
dt_expect_error('a closed watch', @() d.watch_next(w, 0), 'dime:closed');
d2.share_set('jobs/2', 'missed', 'share', S);
w = d.watch_share('jobs/', p, 'share', S);
ev = d.watch_next(w, 5);
dt_check('resume gets the missed event', strcmp(ev.key, 'jobs/2') && strcmp(ev.value, 'missed'), disp_ev(ev));
d.watch_close(w);

% --- tuple space and groups
ws = d.watch_space('space', S);
wg = d.watch_groups([S '/']);
d2.out({'job', int64(3)}, 'space', S);
ev = d.watch_next(ws, 5);
dt_check('out event carries the tuple', strcmp(ev.kind, 'out') && iscell(ev.value) ...
         && isequal(ev.value{2}, int64(3)), disp_ev(ev));
d2.join([S '/g']);
ev = d.watch_next(wg, 5);
dt_check('join event', strcmp(ev.kind, 'join') && strcmp(ev.key, [S '/g']) && ~isempty(ev.client), disp_ev(ev));
d2.leave([S '/g']);
ev = d.watch_next(wg, 5);
dt_check('leave event', strcmp(ev.kind, 'leave'), disp_ev(ev));
d.watch_close(ws);
d.watch_close(wg);
d.close();
d2.close();
end

function s = disp_ev(ev)
if isempty(ev)
    s = '(no event)';
else
    s = sprintf('%s seq %d key %s', ev.kind, ev.seq, char(ev.key));
end
end
