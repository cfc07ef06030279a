function v = dt_receive(d, name, timeout)
% DT_RECEIVE  Wait up to TIMEOUT seconds for a message variable NAME on
% connection D and return its value; other variables received meanwhile
% are dropped. Raises dime:test if it does not come.
t0 = tic;
while true
    left = timeout - toc(t0);
    if left <= 0
        error('dime:test', 'no ''%s'' within %g s', name, timeout);
    end
    try
        d.wait(left);
    catch e
        if strcmp(e.identifier, 'dime:timeout')
            continue;
        end
        rethrow(e);
    end
    s = d.sync_r(1);
    if isfield(s, name)
        v = s.(name);
        return;
    end
end
end
