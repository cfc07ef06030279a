function test_seed()
% The DiME2 README's MATLAB example (seeds/dime2.txt), run verbatim from
% seed_dime2.m: it connects to /tmp/dime.sock, which run.sh serves.
if ~strcmp(getenv('DIME_DEFAULT_SOCK'), '1')
    dt_check('seed DiME2 MATLAB example verbatim', false, ...
             'no server on /tmp/dime.sock (run.sh could not serve it)');
    return;
end
try
    out = evalc('seed_dime2');
    expect = evalc('disp([1, 2, 3; 4, 5, 6; 7, 8, 9])');
    ok = exist('a', 'var') && isequal(a, [1 2 3; 4 5 6; 7 8 9]) && strcmp(out, expect);
    dt_check('seed DiME2 MATLAB example verbatim', ok, sprintf('printed:\n%s', out));
    clear d;
catch e
    dt_check('seed DiME2 MATLAB example verbatim', false, [e.identifier ' ' e.message]);
end
% The same example through the default constructor dime() and send_var.
try
    d = dime();
    d.join('matlab2');
    a = magic(4);
    d.send_var('matlab2', 'a');
    clear a;
    d.sync();
    dt_check('seed example with dime() and send_var', isequal(a, magic(4)), 'a differs');
catch e
    dt_check('seed example with dime() and send_var', false, [e.identifier ' ' e.message]);
end
end
