function oct_rpc_peer(sock, mode)
% OCT_RPC_PEER  The other Octave process of test_rpc.m, in one of three
% modes. Every mode first sends its pid to the group 'oct' as
% 'peer_pid'.
%
%   'provider'          serves, in this order: oct_check (once per row of
%                       dt_cases: checks the value on arrival, returns the
%                       check and the value), oct_fail (twice; raises
%                       test:bad), oct_count (3 calls; then sends
%                       'count_served' = what serve returned), oct_slow
%                       (twice; sends 'started' to 'oct', pauses its
%                       argument's seconds, returns it). test_rpc kills it
%                       during the last oct_slow call.
%   'interrupt_call'    blocks in d.call('rpc_never_provided', 1) until
%                       SIGINT; then (from an onCleanup) sends
%                       'interrupted' = dime_mex('rpc_count') and stays
%                       connected for 4 s.
%   'interrupt_serve'   serves child_fn until SIGINT (child_fn returns its
%                       argument, or for 'slow' sends 'started' and pauses
%                       30 s); then as above.
d = dime('ipc', sock);
d.send_r('oct', 'peer_pid', getpid());
switch mode
    case 'provider'
        c = dt_cases();
        d.serve('oct_check', @(a) arrival(a, c), 'count', size(c, 1), 'timeout', 60);
        d.serve('oct_fail', @fail_on, 'count', 2, 'timeout', 60);
        n = d.serve('oct_count', @(x) 2 * x, 'count', 3, 'timeout', 60);
        d.send_r('oct', 'count_served', n);
        d.serve('oct_slow', @(t) slow(d, t), 'count', 2, 'timeout', 60);
    case 'interrupt_call'
        after = onCleanup(@() report_interrupt(d));
        d.call('rpc_never_provided', 1);
    case 'interrupt_serve'
        after = onCleanup(@() report_interrupt(d));
        d.serve('child_fn', @(x) child_fn(d, x));
    otherwise
        error('dime:test', 'unknown mode %s', mode);
end
end

function r = arrival(a, c)
% The check of one dt_cases row as it arrived ({case, value}).
i = a.case;
[ok, why] = dt_same(a.value, c{i, 3}, c{i, 1});
r = struct('ok', ok, 'why', why);
r.value = a.value; % by assignment: a cell value would make a struct array
end

function fail_on(x)
error('test:bad', 'bad value %d', x);
end

function t = slow(d, t)
d.send_r('oct', 'started', getpid());
pause(t);
end

function x = child_fn(d, x)
if ischar(x) && strcmp(x, 'slow')
    d.send_r('oct', 'started', getpid());
    pause(30);
end
end

function report_interrupt(d)
[futures, requests] = dime_mex('rpc_count');
d.send_r('oct', 'interrupted', [futures requests]);
pause(4); % stay connected: test_rpc checks what the broker does meanwhile
end
