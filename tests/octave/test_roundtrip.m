function test_roundtrip()
% Every row of the type table: Octave -> server -> Octave through
% d.send (caller's workspace) and d.sync (assigns into this workspace).
d = dime('ipc', getenv('DIME_SOCK'));
d.join('rt');
cases = dt_cases();
for i = 1:size(cases, 1)
    name = cases{i, 1};
    want = cases{i, 3};
    v = cases{i, 2};
    try
        d.send('rt', 'v');
        clear v;
        names = d.sync();
        if ~isequal(names, {'v'})
            dt_check(['roundtrip ' name], false, 'sync did not return {''v''}');
            continue;
        end
        [ok, why] = dt_same(v, want);
        dt_check(['roundtrip ' name], ok, why);
    catch e
        dt_check(['roundtrip ' name], false, [e.identifier ' ' e.message]);
    end
end

% All rows in one send: order and names preserved, one pipelined batch.
names = cell(1, size(cases, 1));
for i = 1:size(cases, 1)
    names{i} = sprintf('v%d', i);
    eval(sprintf('v%d = cases{i, 2};', i));
end
d.send('rt', names{:});
clear(names{:});
got = d.sync();
ok = isequal(got, names(:)); % the names come back as a column
why = 'names or order differ';
for i = 1:size(cases, 1)
    if ok
        [ok, why] = dt_same(eval(names{i}), cases{i, 3}, cases{i, 1});
    end
end
dt_check('roundtrip all rows in one send', ok, why);

% Large matrices: 2e6 doubles (16 MB) and a 2000x2000 logical.
big = reshape(1:2e6, 1000, 2000) / 7;
flags = mod(reshape(1:4e6, 2000, 2000), 3) == 0;
d.send('rt', 'big', 'flags');
want_big = big;
want_flags = flags;
clear big flags;
d.sync();
[ok, why] = dt_same(big, want_big);
dt_check('roundtrip large double 1000x2000', ok, why);
[ok, why] = dt_same(flags, want_flags);
dt_check('roundtrip large logical 2000x2000', ok, why);
delete(d);
end
