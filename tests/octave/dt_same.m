function [ok, why] = dt_same(a, b, path)
% DT_SAME  Deep comparison for the dime tests: class, size, complexity and
% bit-exact elements (NaN payloads, -0, Inf), recursively through cells,
% structs (field names in order) and containers.Map.
if nargin < 3
    path = 'value';
end
ok = false;
why = '';
if ~strcmp(class(a), class(b))
    why = sprintf('%s: class %s, expected %s', path, class(a), class(b));
    return;
end
if isa(a, 'containers.Map')
    ka = keys(a);
    kb = keys(b);
    if ~isequal(ka, kb)
        why = sprintf('%s: containers.Map keys differ', path);
        return;
    end
    va = values(a);
    vb = values(b);
    for i = 1:numel(va)
        [ok, why] = dt_same(va{i}, vb{i}, sprintf('%s(key %d)', path, i));
        if ~ok
            return;
        end
    end
    ok = true;
    return;
end
if ~isequal(size(a), size(b))
    why = sprintf('%s: size %s, expected %s', path, mat2str(size(a)), mat2str(size(b)));
    return;
end
if isnumeric(a) || islogical(a) || ischar(a)
    if iscomplex(a) ~= iscomplex(b)
        why = sprintf('%s: iscomplex %d, expected %d', path, iscomplex(a), iscomplex(b));
        return;
    end
    if isfloat(a)
        same = isequal(bits(real(a)), bits(real(b)));
        if iscomplex(a)
            same = same && isequal(bits(imag(a)), bits(imag(b)));
        end
    else
        same = isequal(a(:), b(:));
    end
    if ~same
        why = sprintf('%s: elements differ', path);
        if numel(a) <= 12 && isnumeric(a)
            why = sprintf('%s (%s vs %s)', why, mat2str(a), mat2str(b));
        elseif ischar(a) && numel(a) < 60
            why = sprintf('%s (''%s'' vs ''%s'')', why, a, b);
        end
        return;
    end
elseif iscell(a)
    for i = 1:numel(a)
        [ok, why] = dt_same(a{i}, b{i}, sprintf('%s{%d}', path, i));
        if ~ok
            return;
        end
    end
elseif isstruct(a)
    fa = fieldnames(a);
    fb = fieldnames(b);
    if ~isequal(fa, fb)
        why = sprintf('%s: fields {%s}, expected {%s}', path, strjoin(fa', ','), strjoin(fb', ','));
        return;
    end
    for i = 1:numel(a)
        for j = 1:numel(fa)
            [ok, why] = dt_same(a(i).(fa{j}), b(i).(fa{j}), sprintf('%s(%d).%s', path, i, fa{j}));
            if ~ok
                return;
            end
        end
    end
else
    why = sprintf('%s: cannot compare class %s', path, class(a));
    return;
end
ok = true;
end

function u = bits(x)
if isa(x, 'double')
    u = typecast(x(:), 'uint64');
else
    u = typecast(x(:), 'uint32');
end
end
