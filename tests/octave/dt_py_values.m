function [out, want] = dt_py_values()
% DT_PY_VALUES  The type table as exchanged with Python (py_peer.py):
% out, a struct of Octave values whose expectations are py_peer.py's
% CHECKS (by field name); want, an Nx2 cell {name, value expected in
% Octave} of py_peer.py's PY_VALUES. Used by test_python (messages),
% test_share (share values) and test_tuples (tuples).
c = dt_cases();
row = @(name) c{strcmp(c(:, 1), name), 2};
out = struct();
out.null = [];
out.e03 = zeros(0, 3);
out.e30 = zeros(3, 0);
out.e03i8 = zeros(0, 3, 'int8');
out.estr = '';
out.row = [1 2 3];
out.col = [1; 2; 3];
out.m33 = [1 2 3; 4 5 6; 7 8 9];
out.m3d = reshape(1:24, 2, 3, 4);
out.m4d = single(reshape(1:120, 2, 3, 4, 5));
out.deadbeef = int64(hex2dec('DEADBEEF'));
out.i64max = intmax('int64');
out.i64min = intmin('int64');
out.u64max = intmax('uint64');
out.i8 = int8(-8);
out.i16 = int16(-1600);
out.i32 = int32(-320000);
out.u8 = uint8(200);
out.u16 = uint16(60000);
out.u32 = uint32(4000000000);
out.i64m = [intmin('int64') intmax('int64')];
out.u64m = [intmax('uint64') uint64(0)];
out.i16m = int16([1 2; 3 4]);
out.tt = true;
out.ff = false;
out.lrow = [true false true];
out.l33 = logical(eye(3));
out.spec = [NaN Inf -Inf -0];
out.negz = -0;
out.nanp = row('NaN with payload');
out.d1 = 1;
out.s1 = single(1.5);
out.sm = single([1 2; 3 4]);
out.cx = complex(1, 2);
out.cx0 = complex(1, 0);
out.cxs = complex(single(1), single(-2));
out.cxm = [1+2i 3-4i; -5i 6];
out.cxm0 = complex([1 2; 3 4], zeros(2));
out.str = 'hello';
out.utf = 'héllo wörld ñ';
out.emoji = 'smile 😀 party 🎉';
out.cjk = '日本語テキスト';
out.mrc = ['abc'; 'def'];
out.c1n = {1, 'a', [1 2]};
out.cn1 = {1; 'a'};
out.cnest = {1, {2, {'x'}}};
out.cempty = {};
out.st = struct('foo', 1, 'bar', 'x');
out.stn = struct('a', struct('b', struct('c', int32(5))), 'd', {{1, 'two'}});
out.sta = struct('q', {1, 'two'});
out.stempty = struct();
out.mapk = containers.Map({'a b', 'c'}, {1, 'z'});
out.mapn = containers.Map([1 2], {'one', 'two'});
out.big = reshape(1:1e6, 1000, 1000);
nanbits = typecast(uint32([0 hex2dec('7FF80000')]), 'double');
[I, J, K] = ndgrid(0:1, 0:2, 0:3);
a3d = int64(I * 12 + J * 4 + K);
[I, J, K, L] = ndgrid(0:1, 0:2, 0:3, 0:4);
a4d = single(I * 60 + J * 20 + K * 5 + L);
want = {
    'p_none',       []
    'p_true',       true
    'p_false',      false
    'p_int',        int64(3735928559)
    'p_intmin',     intmin('int64')
    'p_u64max',     intmax('uint64')
    'p_float',      1.5
    'p_negz',       -0
    'p_nan',        nanbits
    'p_inf',        -Inf
    'p_cx',         complex(1, 2)
    'p_cx0',        complex(3, 0)
    'p_str',        'héllo 😀'
    'p_empty_str',  ''
    'p_list',       {int64(1), 'a', {2, []}}
    'p_tuple',      {int64(1), int64(2)}
    'p_empty_list', {}
    'p_dict',       struct('foo', 1, 'bar', 'x')
    'p_dict_keys',  containers.Map({'a b', 'c'}, {1, 2})
    'p_dict_int',   containers.Map([1 2], {'one', 'two'})
    'p_dict_empty', struct()
    'p_nested',     struct('s', struct('t', {{1, struct('u', true)}}))
    'p_strs',       {'ab', 'cd'}
    'p_a33',        [1 2 3; 4 5 6; 7 8 9]
    'p_a1d',        [0; 1; 2; 3]
    'p_row2d',      [1 2 3]
    'p_a3d',        a3d
    'p_a3d_f',      a3d
    'p_nc',         [1 3; 11 13]
    'p_a4d',        a4d
    'p_i8',         int8([-1; 2])
    'p_i16',        int16([-3 4])
    'p_i32',        int32([7; -8])
    'p_i64',        [intmin('int64'); intmax('int64')]
    'p_u8',         uint8([0; 255])
    'p_u16',        uint16([1; 65535])
    'p_u32',        uint32([2; 4294967295])
    'p_u64',        [uint64(0); intmax('uint64')]
    'p_f32',        single(1.5)
    'p_i16s',       int16(3)
    'p_u8s',        uint8(7)
    'p_c64s',       complex(single(1), single(0))
    'p_bool2d',     logical([1 0; 0 1])
    'p_bool1d',     logical([1; 0; 1])
    'p_special',    [nanbits; Inf; -Inf; -0]
    'p_cxarr',      complex([1; 3], [2; 0])
    'p_cxzero',     complex(zeros(2), zeros(2))
    'p_c64arr',     complex(single([1; 2]), single([1; -2]))
    'p_empty03',    zeros(0, 3)
    'p_empty30i8',  zeros(3, 0, 'int8')
    'p_empty1d',    zeros(0, 1)
    'p_rank0',      5
};
end
