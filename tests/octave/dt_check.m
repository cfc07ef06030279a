function ok = dt_check(name, ok, why)
% DT_CHECK  Print one test result line ("PASS name" / "FAIL name: why"),
% the lines tests/octave/run.sh counts.
if nargin < 3
    why = '';
end
if ok
    printf('PASS %s\n', name);
else
    printf('FAIL %s: %s\n', name, why);
end
fflush(stdout);
end
