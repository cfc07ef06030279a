function c = dt_cases()
% DT_CASES  Type-table rows and edge cases (docs/protocol.md §4) as
% {name, value, value back}:
% what an Octave value becomes after Octave -> server -> Octave.
nan_payload = typecast(uint32([hex2dec('BEEF0001') hex2dec('7FF8DEAD')]), 'double');  % little-endian words
c = {
    % [] <-> null; other empties keep class and shape
    'null []',                    [],                         []
    'empty 0x3 double',           zeros(0, 3),                zeros(0, 3)
    'empty 3x0 double',           zeros(3, 0),                zeros(3, 0)
    'empty 0x3 int8',             zeros(0, 3, 'int8'),        zeros(0, 3, 'int8')
    'empty 0x0 single',           zeros(0, 0, 'single'),      zeros(0, 0, 'single')
    'empty 0x2 logical',          false(0, 2),                false(0, 2)
    'empty 2x0x3 uint16',         zeros(2, 0, 3, 'uint16'),   zeros(2, 0, 3, 'uint16')
    'empty string ''''',          '',                         ''
    'empty string 1x0',           char(zeros(1, 0)),          ''
    % 1xN / Nx1 stay as they are Octave -> Octave (rank 2 on the wire)
    'row vector 1x3',             [1 2 3],                    [1 2 3]
    'column vector 3x1',          [1; 2; 3],                  [1; 2; 3]
    'matrix 3x3 double',          [1 2 3; 4 5 6; 7 8 9],      [1 2 3; 4 5 6; 7 8 9]
    '3-D double 2x3x4',           reshape(1:24, 2, 3, 4),     reshape(1:24, 2, 3, 4)
    '4-D single 2x3x4x5',         single(reshape(1:120, 2, 3, 4, 5)), single(reshape(1:120, 2, 3, 4, 5))
    '3-D int16',                  int16(reshape(-12:11, 3, 2, 4)), int16(reshape(-12:11, 3, 2, 4))
    % integers, scalars and matrices of every class, extremes exact
    'int8 scalar',                int8(-8),                   int8(-8)
    'int16 scalar',               int16(-1600),               int16(-1600)
    'int32 scalar',               int32(-320000),             int32(-320000)
    'int64 scalar 0xDEADBEEF',    int64(3735928559),          int64(3735928559)
    'uint8 scalar',               uint8(200),                 uint8(200)
    'uint16 scalar',              uint16(60000),              uint16(60000)
    'uint32 scalar',              uint32(4000000000),         uint32(4000000000)
    'uint64 scalar',              uint64(42),                 uint64(42)
    'intmax int64',               intmax('int64'),            intmax('int64')
    'intmin int64',               intmin('int64'),            intmin('int64')
    'intmax uint64',              intmax('uint64'),           intmax('uint64')
    'int64 matrix extremes',      [intmin('int64') intmax('int64'); int64(-1) int64(9007199254740993)], ...
                                  [intmin('int64') intmax('int64'); int64(-1) int64(9007199254740993)]
    'uint64 matrix extremes',     [intmax('uint64'); uint64(0); uint64(18446744073709551557)], ...
                                  [intmax('uint64'); uint64(0); uint64(18446744073709551557)]
    'int8 matrix',                int8([-128 0 127]),         int8([-128 0 127])
    'int32 matrix',               int32([1 2; 3 4]),          int32([1 2; 3 4])
    'uint8 matrix',               uint8([0 255; 1 2]),        uint8([0 255; 1 2])
    'uint32 matrix',              uint32([1; 4294967295]),    uint32([1; 4294967295])
    % logical
    'true',                       true,                       true
    'false',                      false,                      false
    'logical row',                [true false true],          [true false true]
    'logical 3x3',                logical(eye(3)),            logical(eye(3))
    'logical 3-D',                reshape(mod(1:24, 3) == 0, 2, 3, 4), reshape(mod(1:24, 3) == 0, 2, 3, 4)
    % NaN, Inf, -0 bit-exact
    'NaN Inf -0 row',             [NaN Inf -Inf -0 0 1e-310], [NaN Inf -Inf -0 0 1e-310]
    'scalar -0',                  -0,                         -0
    'scalar NaN',                 NaN,                        NaN
    'NaN with payload',           nan_payload,                nan_payload
    'single NaN Inf -0',          single([NaN Inf -Inf -0]),  single([NaN Inf -Inf -0])
    'single scalar -0',           single(-0),                 single(-0)
    % single vs double
    'double scalar',              1,                          1
    'single scalar',              single(1.5),                single(1.5)
    'single matrix',              single([1 2; 3 4]),         single([1 2; 3 4])
    'double pi',                  pi,                         pi
    % complex: scalars and matrices, single and double; zero imag stays complex
    'complex double scalar',      complex(1, 2),              complex(1, 2)
    'complex zero imag scalar',   complex(1, 0),              complex(1, 0)
    'complex single scalar',      complex(single(1), single(-2)), complex(single(1), single(-2))
    'complex single zero imag',   complex(single(3), single(0)), complex(single(3), single(0))
    'complex double matrix',      [1+2i 3-4i; -5i 6],         [1+2i 3-4i; -5i 6]
    'complex matrix zero imag',   complex([1 2; 3 4], zeros(2)), complex([1 2; 3 4], zeros(2))
    'complex matrix -0 imag',     complex([1 2], [-0 0]),     complex([1 2], [-0 0])
    'complex single matrix',      complex(single([1 2 3]), single([0 -1 2])), complex(single([1 2 3]), single([0 -1 2]))
    'complex 3-D',                complex(reshape(1:8, 2, 2, 2), reshape(8:-1:1, 2, 2, 2)), complex(reshape(1:8, 2, 2, 2), reshape(8:-1:1, 2, 2, 2))
    'complex NaN parts',          complex(NaN, -Inf),         complex(NaN, -Inf)
    % strings: UTF-8 (Octave chars are UTF-8 bytes)
    'string ascii',               'hello world',              'hello world'
    'string non-ASCII',           'héllo wörld ñ',            'héllo wörld ñ'
    'string emoji',               'smile 😀 party 🎉',         'smile 😀 party 🎉'
    'string CJK',                 '日本語テキスト',            '日本語テキスト'
    'string with NUL',            ['a' char(0) 'b'],          ['a' char(0) 'b']
    % multi-row char arrays -> list of row strings
    'multi-row char',             ['abc'; 'def'],             {'abc', 'def'}
    'multi-row char 3 rows',      char('x', 'yy', 'zzz'),     {'x  ', 'yy ', 'zzz'}
    % cell arrays -> list; back as 1xN cells
    'cell 1xN',                   {1, 'a', [1 2]},            {1, 'a', [1 2]}
    'cell Nx1',                   {1; 'a'; int8(3)},          {1, 'a', int8(3)}
    'cell empty',                 {},                         {}
    'cell nested',                {1, {2, {'x', {}}}, {}},    {1, {2, {'x', {}}}, {}}
    'cell mixed',                 {[], true, single(2), 'é', {int64(7)}, struct('a', 1)}, ...
                                  {[], true, single(2), 'é', {int64(7)}, struct('a', 1)}
    % structs -> maps; struct arrays -> lists of maps
    'struct foo/bar',             struct('foo', 1, 'bar', 'x'), struct('foo', 1, 'bar', 'x')
    'struct nested',              struct('a', struct('b', struct('c', int32(5))), 'd', {{1, 'two'}}), ...
                                  struct('a', struct('b', struct('c', int32(5))), 'd', {{1, 'two'}})
    'struct no fields',           struct(),                   struct()
    'struct array 1x2',           struct('q', {1, 'two'}),    {struct('q', 1), struct('q', 'two')}
    'struct with matrix field',   struct('m', magic(4), 'e', []), struct('m', magic(4), 'e', [])
    % containers.Map -> map; back as struct if keys are field names, else Map
    'containers.Map fieldname keys', containers.Map({'alpha', 'beta'}, {1, 'b'}), struct('alpha', 1, 'beta', 'b')
    'containers.Map other keys',  containers.Map({'a b', '1x', 'ok'}, {1, [1 2], 'z'}), ...
                                  containers.Map({'a b', '1x', 'ok'}, {1, [1 2], 'z'})
    'containers.Map numeric keys', containers.Map([1 2.5 3], {'one', 'two and a half', 'three'}), ...
                                  containers.Map([1 2.5 3], {'one', 'two and a half', 'three'})
    'containers.Map nested',      {containers.Map({'x y'}, {containers.Map({'p q'}, {2})})}, ...
                                  {containers.Map({'x y'}, {containers.Map({'p q'}, {2})})}
    'struct holding a Map',       struct('m', containers.Map({'k-1'}, {int8(1)})), ...
                                  struct('m', containers.Map({'k-1'}, {int8(1)}))
};
end
