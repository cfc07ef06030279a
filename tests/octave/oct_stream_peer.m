function oct_stream_peer(sock)
% OCT_STREAM_PEER  The producing Octave process of test_stream.m. Sends its
% pid to the group 'oct' as 'peer_pid', then serves, in this order:
%   st_plain  a plain function (d.serve, 1 call): returns 2 * its argument
%             (a d.stream of it first gets dime:notStream)
%   st_items  (2 readers) args.n items 1..n, doubles, in order
%   st_types  (1 reader)  the value column of every dt_cases row, in order
%             (a plain d.call of it first gets dime:notStream)
%   st_endless (1 reader) 1, 2, 3, ... until emit returns false; then
%             sends 'stopped_after' = the last item sent to 'oct'
%   st_fail   (1 reader)  1, 2, then raises test:bad
%   st_hang   (1 reader)  1, sends 'started' to 'oct', pauses 60 s
%             (test_stream kills it there)
d = dime('ipc', sock);
d.send_r('oct', 'peer_pid', getpid());
d.serve('st_plain', @(x) 2 * x, 'count', 1, 'timeout', 60);
d.serve_stream('st_items', @items, 'count', 2, 'timeout', 60);
c = dt_cases();
d.serve_stream('st_types', @(args, emit) types(c, emit), 'count', 1, 'timeout', 60);
d.serve_stream('st_endless', @(emit) endless(d, emit), 'count', 1, 'timeout', 60);
d.serve_stream('st_fail', @fail_after_two, 'count', 1, 'timeout', 60);
d.serve_stream('st_hang', @(args, emit) hang(d, emit), 'count', 1, 'timeout', 60);
end

function items(args, emit)
for i = 1:args.n
    if ~emit(i)
        return;
    end
end
end

function types(c, emit)
for i = 1:size(c, 1)
    emit(c{i, 2});
end
end

function endless(d, emit)
k = 0;
while emit(k + 1)
    k = k + 1;
end
d.send_r('oct', 'stopped_after', k);
end

function fail_after_two(args, emit)
emit(1);
emit(2);
error('test:bad', 'bad stream after %d', 2);
end

function hang(d, emit)
emit(1);
d.send_r('oct', 'started', getpid());
pause(60);
end
