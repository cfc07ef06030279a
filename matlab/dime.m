classdef dime < handle
    % DIME  Client of a DiME server (DiME2-compatible), over libdime.
    %
    %   d = dime();                          % ipc (unix socket) /tmp/dime.sock
    %   d = dime('ipc', '/tmp/dime.sock');
    %   d = dime('tcp', 'localhost', 5000);
    %   d = dime('unix:/tmp/dime.sock');     % or any libdime address
    %
    %   d.join('matlab');                    % groups; several names allowed
    %   a = magic(3);
    %   d.send('matlab', 'a');               % variables of the caller, by name
    %   clear a;
    %   d.sync();                            % assigns a in the caller
    %   disp(a);
    %
    % Methods: join, leave, send (alias send_var), send_r, broadcast,
    % broadcast_r, sync, sync_r, wait, devices (alias get_devices), close,
    % delete. Every failure raises an error whose identifier is
    % dime:<kind> (dime:connection, dime:closed, dime:timeout, dime:server,
    % dime:type, dime:argument, dime:codec, ...) and whose message is the
    % library's; after dime:server, dime:type, dime:argument, dime:timeout
    % and dime:codec the connection stays usable.
    %
    % Values travel in the dimeb format; see matlab/README.md for the type
    % table. Build the MEX file once with build_mex (in this folder).

    properties (SetAccess = private)
        address = ''        % the libdime address connected to
    end

    properties (Access = private)
        h = uint64(0)       % dime_mex handle; 0 once closed
    end

    properties (Constant, Access = private)
        % Field of the 1x1 struct standing for a map whose keys are not all
        % valid field names (containers.Map); must match dime_mex.c.
        MARK = 'dime__containers_Map__'
    end

    methods
        function obj = dime(proto, varargin)
            % DIME  Connect to a DiME server.
            %
            %   dime()                   ipc on /tmp/dime.sock
            %   dime('ipc', path)        unix domain socket
            %   dime('tcp', host, port)  TCP
            %   dime(address)            'unix:/path', 'tcp:host:port', 'tcp:port'
            if nargin < 1
                proto = 'ipc';
            end
            if ~ischar(proto)
                error('dime:argument', 'the protocol must be ''ipc'' or ''tcp''');
            end
            switch lower(proto)
                case {'ipc', 'unix'}
                    path = '/tmp/dime.sock';
                    if numel(varargin) >= 1
                        path = varargin{1};
                    end
                    addr = ['unix:' path];
                case 'tcp'
                    if numel(varargin) < 2
                        error('dime:argument', 'usage: dime(''tcp'', host, port)');
                    end
                    port = varargin{2};
                    if isnumeric(port)
                        port = sprintf('%d', port);
                    end
                    addr = sprintf('tcp:%s:%s', varargin{1}, port);
                otherwise
                    if any(proto == ':')
                        addr = proto;
                    else
                        error('dime:argument', ...
                              'unknown protocol ''%s'' (use ''ipc'' or ''tcp'')', proto);
                    end
            end
            obj.h = dime_mex('connect', addr);
            obj.address = addr;
        end

        function delete(obj)
            % DELETE  Close the connection (also when the object is cleared).
            close(obj);
        end

        function close(obj)
            % CLOSE  Close the connection; later calls raise dime:closed.
            if obj.h ~= 0
                try
                    dime_mex('close', obj.h);
                catch
                    % the MEX file was cleared: its connections are gone
                end
                obj.h = uint64(0);
            end
        end

        function join(obj, varargin)
            % JOIN  Join one or more groups: d.join('a', 'b') or d.join({'a','b'}).
            dime_mex('join', obj.h, varargin{:});
        end

        function leave(obj, varargin)
            % LEAVE  Leave one or more groups.
            dime_mex('leave', obj.h, varargin{:});
        end

        function send(obj, group, varargin)
            % SEND  Send variables of the caller's workspace to a group.
            %
            %   d.send('python', 'a', 'b')
            args = cell(1, 2 * numel(varargin));
            for i = 1:numel(varargin)   % evalin must run here, in the method
                name = dime.var_name(varargin{i});
                if ~evalin('caller', ['exist(''' name ''', ''var'')'])
                    dime.undefined(name);
                end
                args(2 * i - 1:2 * i) = {name, dime.to_wire(evalin('caller', name))};
            end
            dime_mex('send', obj.h, group, args{:});
        end

        function send_var(obj, group, varargin)
            % SEND_VAR  Alias of SEND (reads the caller's workspace).
            args = cell(1, 2 * numel(varargin));
            for i = 1:numel(varargin)   % evalin must run here, in the method
                name = dime.var_name(varargin{i});
                if ~evalin('caller', ['exist(''' name ''', ''var'')'])
                    dime.undefined(name);
                end
                args(2 * i - 1:2 * i) = {name, dime.to_wire(evalin('caller', name))};
            end
            dime_mex('send', obj.h, group, args{:});
        end

        function send_r(obj, group, varargin)
            % SEND_R  Send values without touching the workspace:
            %   d.send_r('python', s)            fields of struct s
            %   d.send_r('python', 'a', 1, 'b', 2)
            args = dime.pairs(varargin);
            dime_mex('send', obj.h, group, args{:});
        end

        function broadcast(obj, varargin)
            % BROADCAST  Send variables of the caller's workspace to every
            % other connected client.
            args = cell(1, 2 * numel(varargin));
            for i = 1:numel(varargin)   % evalin must run here, in the method
                name = dime.var_name(varargin{i});
                if ~evalin('caller', ['exist(''' name ''', ''var'')'])
                    dime.undefined(name);
                end
                args(2 * i - 1:2 * i) = {name, dime.to_wire(evalin('caller', name))};
            end
            dime_mex('broadcast', obj.h, args{:});
        end

        function broadcast_r(obj, varargin)
            % BROADCAST_R  Broadcast a struct's fields or name/value pairs.
            args = dime.pairs(varargin);
            dime_mex('broadcast', obj.h, args{:});
        end

        function varargout = sync(obj, n)
            % SYNC  Receive up to n queued variables (all by default) and
            % assign them in the caller's workspace; returns their names.
            %
            %   d.sync();  names = d.sync(1);
            if nargin < 2
                n = -1;
            end
            [names, values] = obj.receive(n);
            for i = 1:numel(names)
                if isvarname(names{i})
                    assignin('caller', names{i}, values{i});
                else
                    warning('dime:name', ...
                            'received variable ''%s'' is not a valid name; not assigned', ...
                            names{i});
                end
            end
            if nargout > 0
                varargout{1} = names;
            end
        end

        function s = sync_r(obj, n)
            % SYNC_R  Receive up to n queued variables (all by default) as
            % a struct, without touching the workspace. Of several values of
            % one name, the last wins; names that are not valid field names
            % are skipped with a warning.
            if nargin < 2
                n = -1;
            end
            [names, values] = obj.receive(n);
            s = struct();
            for i = 1:numel(names)
                if isvarname(names{i})
                    s.(names{i}) = values{i};
                else
                    warning('dime:name', ...
                            'received variable ''%s'' is not a valid name; skipped', names{i});
                end
            end
        end

        function n = wait(obj, timeout)
            % WAIT  Block until at least one variable is queued for this
            % client; returns how many are. With a timeout in seconds,
            % raises dime:timeout if none arrives in time (the connection
            % stays usable).
            if nargin < 2 || isempty(timeout) || isinf(timeout)
                ms = -1;
            else
                ms = max(0, round(double(timeout) * 1000));
            end
            n = dime_mex('wait', obj.h, ms);
        end

        function names = devices(obj)
            % DEVICES  Names of the groups with at least one member (1xN cell).
            names = dime_mex('devices', obj.h);
        end

        function names = get_devices(obj)
            % GET_DEVICES  Alias of DEVICES.
            names = dime_mex('devices', obj.h);
        end
    end

    methods (Access = private)
        function [names, values] = receive(obj, n)
            [names, values, fix] = dime_mex('sync', obj.h, n);
            for i = find(fix)
                values{i} = dime.from_wire(values{i});
            end
        end
    end

    methods (Static, Hidden)
        function x = to_wire(x)
            % Replaces containers.Map (and MATLAB string objects) by what
            % dime_mex converts; descends into cells and structs.
            if isa(x, 'containers.Map')
                k = keys(x);
                v = values(x);
                for i = 1:numel(v)
                    v{i} = dime.to_wire(v{i});
                end
                x = struct(dime.MARK, {{k, v}});
            elseif iscell(x)
                for i = 1:numel(x)
                    x{i} = dime.to_wire(x{i});
                end
            elseif isstruct(x)
                f = fieldnames(x);
                for i = 1:numel(x)
                    for j = 1:numel(f)
                        x(i).(f{j}) = dime.to_wire(x(i).(f{j}));
                    end
                end
            elseif ~exist('OCTAVE_VERSION', 'builtin') && isstring(x)
                if isscalar(x)
                    x = char(x);
                else
                    x = cellstr(x);
                end
            end
        end

        function x = from_wire(x)
            % Turns the map markers dime_mex returns (maps whose keys are
            % not all valid field names) into containers.Map.
            if isstruct(x)
                if isscalar(x) && isfield(x, dime.MARK) && numel(fieldnames(x)) == 1
                    kv = x.(dime.MARK);
                    v = kv{2};
                    for i = 1:numel(v)
                        v{i} = dime.from_wire(v{i});
                    end
                    x = dime.make_map(kv{1}, v);
                else
                    f = fieldnames(x);
                    for i = 1:numel(x)
                        for j = 1:numel(f)
                            x(i).(f{j}) = dime.from_wire(x(i).(f{j}));
                        end
                    end
                end
            elseif iscell(x)
                for i = 1:numel(x)
                    x{i} = dime.from_wire(x{i});
                end
            end
        end

        function m = make_map(k, v)
            % A containers.Map with char keys, or double keys when every key
            % is a real numeric scalar; otherwise (mixed keys) an Nx2 cell
            % {key, value; ...}.
            if all(cellfun(@ischar, k))
                m = containers.Map('KeyType', 'char', 'ValueType', 'any');
                for i = 1:numel(k)
                    m(k{i}) = v{i};
                end
            elseif all(cellfun(@(c) isnumeric(c) && isscalar(c) && isreal(c), k))
                m = containers.Map('KeyType', 'double', 'ValueType', 'any');
                for i = 1:numel(k)
                    m(double(k{i})) = v{i};
                end
            else
                m = [k(:), v(:)];
            end
        end
    end

    methods (Static, Access = private)
        function name = var_name(name)
            if ~ischar(name) || ~isvarname(name)
                error('dime:argument', 'variable names must be valid MATLAB names');
            end
        end

        function undefined(name)
            error('dime:argument', ...
                  'variable ''%s'' is not defined in the caller''s workspace', name);
        end

        function args = pairs(in)
            % {name1, value1, ...} from a struct or name/value pairs.
            if numel(in) == 1 && isstruct(in{1}) && isscalar(in{1})
                f = fieldnames(in{1});
                args = cell(1, 2 * numel(f));
                for i = 1:numel(f)
                    args{2 * i - 1} = f{i};
                    args{2 * i} = dime.to_wire(in{1}.(f{i}));
                end
            elseif mod(numel(in), 2) == 0
                args = in;
                for i = 2:2:numel(in)
                    args{i} = dime.to_wire(in{i});
                end
            else
                error('dime:argument', 'expected a struct or name, value pairs');
            end
        end
    end
end
