function conformance_driver()
% CONFORMANCE_DRIVER  Conformance driver for the MATLAB binding (matlab/,
% dime.m over the MEX file) under GNU Octave.
%
%   DIME_CONF_SOCK=SOCKET DIME_CONF_GROUP=GROUP octave-cli --eval \
%       "addpath('REPO/matlab', 'REPO/tests/conformance/drivers/octave'); conformance_driver"
%
% Connects over the unix socket, joins GROUP, prints "ready", then runs the
% same commands as driver.py (row / send / recv; see there) from stdin until
% EOF, with values in the token form of tests/conformance/model.py. Rows are
% built as a MATLAB user writes them (hints: "charmat" a multi-row char
% array, "col" an Nx1 cell, "structarray" a struct array, "map" a
% containers.Map even for field-name keys); received values are described
% by class, size and bytes.

d = dime('ipc', getenv('DIME_CONF_SOCK'));
d.join(getenv('DIME_CONF_GROUP'));
say('ready', 'octave', version());
rows = {};
while true
    line = fgetl(stdin);
    if ~ischar(line)
        break;
    end
    words = strsplit(line, ' ');
    switch words{1}
        case 'row'
            if strcmp(words{3}, '-')
                hints = {};
            else
                hints = strsplit(words{3}, ',');
            end
            rows(end + 1, :) = {words{2}, hints, words(4:end)};
        case 'send'
            count = 0;
            for i = 1:size(rows, 1)
                id = rows{i, 1};
                try
                    [v, pos] = build(rows{i, 3}, 1, rows{i, 2});
                    if pos ~= numel(rows{i, 3}) + 1
                        error('driver:build', 'tokens left over after the value');
                    end
                    d.send_r(words{2}, [words{3} '__' id], v);
                    say('sent', id);
                    count = count + 1;
                catch e
                    say('err', id, hex(uint8([e.identifier ': ' e.message])));
                end
            end
            d.send_r(words{2}, [words{3} '__end'], sprintf('%d', count));
            say('sent-done');
        case 'recv'
            receive(d, words(3:end), str2double(words{2}));
        otherwise
            say('err', '-', hex(uint8(['unknown command ' words{1}])));
    end
end
d.close();
end

function n = part_size(cls)
switch cls
    case {'int8', 'uint8', 'logical', 'char'}
        n = 1;
    case {'int16', 'uint16'}
        n = 2;
    case {'int32', 'uint32', 'single', 'csingle'}
        n = 4;
    otherwise
        n = 8;
end
end

function b = unhex(t)
if strcmp(t, '-')
    b = zeros(1, 0, 'uint8');
else
    b = uint8(sscanf(t, '%2x'))';
end
end

function t = hex(b)
if isempty(b)
    t = '-';
else
    t = sprintf('%02x', b);
end
end

function b = swap(b, part)
% Reverses each part-byte word (big-endian wire <-> little-endian host).
if part > 1 && ~isempty(b)
    b = reshape(b, part, []);
    b = flipud(b);
    b = b(:)';
end
end

function [x, im] = from_be(bytes, cls)
% A column of elements of class cls from big-endian bytes; for a complex
% class, x holds the real parts and im the imaginary parts (kept apart:
% Octave narrows a complex array whose imaginary part is all zero, -0
% included, as soon as it is indexed or reshaped).
bytes = swap(bytes, part_size(cls));
im = [];
switch cls
    case 'logical'
        x = logical(bytes(:));
    case 'csingle'
        y = typecast(bytes, 'single');
        x = y(1:2:end).';
        im = y(2:2:end).';
    case 'cdouble'
        y = typecast(bytes, 'double');
        x = y(1:2:end).';
        im = y(2:2:end).';
    otherwise
        x = typecast(bytes, cls);
        x = x(:);
end
end

function tf = field_names(keys)
% Whether keys can be the fields of a struct: MATLAB's rule, which Octave's
% isvarname does not apply in full (it accepts names over 63 characters).
tf = all(cellfun(@(k) ischar(k) && isvarname(k) && numel(k) <= 63, keys)) ...
     && numel(unique(keys)) == numel(keys);
end

function [v, pos] = build(tok, pos, hints)
% The MATLAB value a user would write for the wire value at tok{pos}.
k = tok{pos};
pos = pos + 1;
switch k
    case 'N'
        v = [];
    case 'B'
        v = strcmp(tok{pos}, '1');
        pos = pos + 1;
    case 'S'
        [v, im] = from_be(unhex(tok{pos + 1}), tok{pos});
        if ~isempty(im)
            v = complex(v, im);
        end
        pos = pos + 2;
    case 'M'
        cls = tok{pos};
        r = str2double(tok{pos + 1});
        dims = str2double(tok(pos + 2:pos + 1 + r));
        [data, im] = from_be(unhex(tok{pos + 2 + r}), cls);
        if any(strcmp(cls, {'csingle', 'cdouble'}))
            v = complex(reshape(data, dims), reshape(im, dims));
        else
            v = reshape(data, dims);
        end
        pos = pos + 3 + r;
    case 'U'
        v = char(unhex(tok{pos}));
        pos = pos + 1;
    case 'L'
        n = str2double(tok{pos});
        pos = pos + 1;
        items = cell(1, n);
        for i = 1:n
            [items{i}, pos] = build(tok, pos, {});
        end
        if any(strcmp(hints, 'col'))
            v = items(:);
        elseif any(strcmp(hints, 'charmat'))
            v = vertcat(items{:});
        elseif any(strcmp(hints, 'structarray'))
            v = [items{:}];
        else
            v = items;
        end
    case 'D'
        n = str2double(tok{pos});
        pos = pos + 1;
        keys = cell(1, n);
        vals = cell(1, n);
        for i = 1:n
            [keys{i}, pos] = build(tok, pos, {});
            [vals{i}, pos] = build(tok, pos, {});
        end
        if field_names(keys) && ~any(strcmp(hints, 'map'))
            v = struct();
            for i = 1:n
                v.(keys{i}) = vals{i};
            end
        else
            if all(cellfun(@ischar, keys))
                kt = 'char';
            else
                kt = class(keys{1});
            end
            v = containers.Map('KeyType', kt, 'ValueType', 'any');
            for i = 1:n
                v(keys{i}) = vals{i};
            end
        end
    otherwise
        error('driver:build', 'no MATLAB value for a %s node', k);
end
end

function t = dims_tokens(sz)
t = [{sprintf('%d', numel(sz))}, arrayfun(@(d) sprintf('%d', d), sz, 'UniformOutput', false)];
end

function out = describe(v)
% A received value in the token form, as a cell row of tokens.
if isa(v, 'containers.Map')
    k = keys(v);
    vals = values(v);
    out = {'MAP', v.KeyType, sprintf('%d', numel(k))};
    for i = 1:numel(k)
        out = [out, describe(k{i}), describe(vals{i})];
    end
elseif iscell(v)
    out = [{'C'}, dims_tokens(size(v))];
    for i = 1:numel(v)
        out = [out, describe(v{i})];
    end
elseif isstruct(v)
    f = fieldnames(v);
    out = [{'ST'}, dims_tokens(size(v)), {sprintf('%d', numel(f))}];
    for j = 1:numel(f)
        out{end + 1} = hex(uint8(f{j}));
    end
    for i = 1:numel(v)
        for j = 1:numel(f)
            out = [out, describe(v(i).(f{j}))];
        end
    end
elseif ischar(v)
    out = [{'A', 'char'}, dims_tokens(size(v)), {hex(uint8(v(:)'))}];
elseif islogical(v)
    out = [{'A', 'logical'}, dims_tokens(size(v)), {hex(uint8(v(:)'))}];
elseif isnumeric(v)
    cls = class(v);
    if iscomplex(v)
        % real() and imag() of v itself: indexing v first would narrow it
        re = real(v);
        im = imag(v);
        x = [re(:).'; im(:).'];
        x = x(:).';
        cls = ['c' cls];
    else
        x = v(:).';
    end
    out = [{'A', cls}, dims_tokens(size(v)), {hex(swap(typecast(x, 'uint8'), part_size(cls)))}];
else
    out = {'X', hex(uint8(class(v)))};
end
end

function say(varargin)
printf('%s\n', strjoin(varargin, ' '));
fflush(stdout);
end

function receive(d, senders, seconds)
% Receives until every sender's end marker and that many of its rows came.
t0 = tic;
announced = -ones(1, numel(senders));   % rows each sender says it sent
arrived = zeros(1, numel(senders));
while ~all(announced >= 0 & arrived >= announced) && toc(t0) < seconds
    try
        s = d.sync_r(1);
    catch e
        say('rerr', hex(uint8([e.identifier ': ' e.message])));
        continue;
    end
    names = fieldnames(s);
    if isempty(names)
        try
            d.wait(0.2);
        catch
            % dime:timeout: nothing yet
        end
        continue;
    end
    for i = 1:numel(names)
        cut = strfind(names{i}, '__');
        k = find(strcmp(senders, names{i}(1:cut(1) - 1)));
        if ~isempty(k) && strcmp(names{i}(cut(1):end), '__end') && ischar(s.(names{i}))
            announced(k) = str2double(s.(names{i}));
            continue;
        end
        arrived(k) = arrived(k) + 1;
        try
            t = describe(s.(names{i}));
        catch e
            t = {'E', hex(uint8(e.message))};
        end
        say('got', names{i}, strjoin(t, ' '));
    end
end
say('recv-done');
end
