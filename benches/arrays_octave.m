function arrays_octave(sock, rounds, rows, cols)
% The Octave side of benches/arrays.py: receives ROUNDS large matrices
% from Python (group 'oct'), each with the wall-clock time it was sent
% (t0), prints how long it took to arrive in Octave, and sends each back
% with the time it left (t2), so Python can time the way back.
%
% First it times Octave itself on an array of the same size, the floor of
% anything that hands Octave a new array: allocating one (zeros) and
% copying one (copy-on-write, forced).
a = tic; z = zeros(rows, cols); z(1) = 1; t_alloc = toc(a);
a = tic; w = z; w(1) = 2; t_copy = toc(a);
printf('floor %.6f %.6f\n', t_alloc, t_copy);
fflush(stdout);
clear z w;
d = dime('ipc', sock);
d.join('oct');
d.send_r('py', 'ready', true);
for r = 1:rounds
    got = struct();
    while ~isfield(got, 'x')
        d.wait(600);
        s = d.sync_r();
        for f = fieldnames(s)'
            got.(f{1}) = s.(f{1});
        end
    end
    t1 = time();
    printf('to_octave %.6f %g %g\n', t1 - got.t0, got.x(1, 1), got.x(end, end));
    fflush(stdout);
    x = got.x;
    clear got s;
    t2 = time();
    d.send_r('py', 't2', t2, 'x', x);
    clear x;
end
d.close();
end
