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
    % delete; pipeline, flush and unacknowledged (pipelined sends, off by
    % default: see PIPELINE); supports and server_extensions (what the
    % server offers beyond DiME2: an original DiME2 server offers nothing,
    % and shares and tuple spaces then raise dime:unsupported).
    % Shared dictionaries: share_set, share_get, share_pop, share_del,
    % share_contains, share_keys, share_len, share_clear, share_get_many,
    % share_set_many, share_incr, share_cas (dime.absent()), share_wait_key,
    % share_lock, share_try_lock, share_unlock; leases and fencing tokens:
    % share_lock_lease, share_lock_renew, share_set_fenced,
    % share_del_fenced; option 'share', NAME.
    % Change events: watch_share, watch_space, watch_groups, watch_next,
    % watch_position, watch_close.
    % Tuple spaces: out, in (aliases take, in_), rd, inp, rdp, count;
    % pattern wildcards dime.any(), dime.type(T), dime.matrix(C, R),
    % dime.range(LO, HI); option 'space', NAME.
    % Remote calls: call (r = d.call('add', args, 'timeout', T)), call_async
    % (a dime_future), serve (d.serve('add', @fn, 'count', N)).
    % Streams: stream (s = d.stream('gen', args), a dime_stream: s.next(),
    % s.close()), serve_stream (d.serve_stream('gen', @fn), fn(args, emit)).
    % Every failure raises an error whose identifier is
    % dime:<kind> (dime:connection, dime:closed, dime:timeout, dime:server,
    % dime:type, dime:argument, dime:notfound, dime:codec, dime:unsupported,
    % ...) and whose message is the library's; after dime:server,
    % dime:type, dime:argument, dime:timeout, dime:codec and
    % dime:unsupported the connection stays usable. Remote calls add
    % dime:remoteError, dime:providerLost, dime:noProvider, dime:cancelled.
    %
    % Values travel in the dimeb format; see matlab/README.md for the type
    % table. The first use builds the MEX file (dime_mex) when it is missing
    % or older than libdime (build_mex in this folder chooses another
    % library); dime.version() reports the versions.

    properties (SetAccess = private)
        address = ''        % the libdime address connected to
    end

    properties (Access = private)
        h = uint64(0)       % dime_mex handle; 0 once closed
    end

    properties (Constant, Access = private)
        % Field of the 1x1 struct standing for a map whose keys are not all
        % valid field names (containers.Map); must match MAP_MARKER in dime_mex.h.
        MARK = 'dime__containers_Map__'
        % Field of the marker structs of dime.any, dime.type, dime.matrix,
        % dime.range and dime.absent (pattern wildcards, cas "absent").
        PMARK = 'dime__pattern__'
        % Longest a remote-call wait stays inside the library (s): the
        % most Ctrl-C waits before it gets through.
        SLICE = 0.2
        SLICE_MS = 200      % the same in milliseconds, for the hot loops
        % How long d.call waits past its timeout for the broker's verdict
        % on a call no provider took (dime:noProvider) (s).
        GRACE = 0.25
    end

    methods
        function obj = dime(proto, varargin)
            % DIME  Connect to a DiME server.
            %
            %   dime()                   ipc on /tmp/dime.sock
            %   dime('ipc', path)        unix domain socket
            %   dime('tcp', host, port)  TCP
            %   dime('tls', host, port)  TCP with TLS
            %   dime(address)            'unix:/path', 'tcp:host:port', 'tcp:port',
            %                            'tls:host:port'
            %   dime(..., 'token', T, 'tls_ca', F, 'tls_cert', C, 'tls_key', K)
            %       token for a server started with --auth; CA certificates
            %       (PEM) to trust instead of the system's; a client
            %       certificate and key. Each defaults to its environment
            %       variable (DIME_TOKEN, DIME_TLS_CA, DIME_TLS_CERT,
            %       DIME_TLS_KEY). A refused token raises dime:permission.
            if nargin < 1
                proto = 'ipc';
            end
            security = {'', '', '', ''};
            names = {'token', 'tls_ca', 'tls_cert', 'tls_key'};
            while numel(varargin) >= 2 && ischar(varargin{end - 1}) ...
                    && any(strcmpi(varargin{end - 1}, names))
                security{strcmpi(varargin{end - 1}, names)} = varargin{end};
                varargin(end - 1:end) = [];
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
                case {'tcp', 'tls'}
                    if numel(varargin) < 2
                        error('dime:argument', 'usage: dime(''%s'', host, port)', lower(proto));
                    end
                    port = varargin{2};
                    if isnumeric(port)
                        port = sprintf('%d', port);
                    end
                    addr = sprintf('%s:%s:%s', lower(proto), varargin{1}, port);
                otherwise
                    if any(proto == ':')
                        addr = proto;
                    else
                        error('dime:argument', ...
                              'unknown protocol ''%s'' (use ''ipc'' or ''tcp'')', proto);
                    end
            end
            mex_ready();   % builds dime_mex on first use; refuses another libdime version
            if all(cellfun(@isempty, security))
                obj.h = dime_mex('connect', addr);
            else
                obj.h = dime_mex('connect', addr, security{:});
            end
            obj.address = addr;
        end

        function delete(obj)
            % DELETE  Close the connection (also when the object is
            % cleared), without waiting for the answers to pipelined sends
            % (the server still gets them all).
            if obj.h ~= 0
                h = obj.h;
                obj.h = uint64(0);
                try
                    dime_mex('close', h, false);
                catch
                    % the MEX file was cleared: its connections are gone
                end
            end
        end

        function close(obj)
            % CLOSE  Close the connection; later calls raise dime:closed.
            % With pipelining on, it first waits for the answers to the
            % sends still outstanding, and raises dime:server for a failure
            % among them not yet reported (the connection is closed either
            % way).
            if obj.h ~= 0
                h = obj.h;
                obj.h = uint64(0);
                dime_mex('close', h);
            end
        end

        function w = pipeline(obj, n)
            % PIPELINE  Pipelined sends: w = d.pipeline() is the window in
            % force (0: off, DiME2's way and the default unless the
            % DIME_PIPELINE environment variable says otherwise);
            % d.pipeline(true), d.pipeline(n) or d.pipeline(false) turns
            % them on (a window of 1024, or n sends) or off.
            %
            % With pipelining on, send, send_r, broadcast and broadcast_r
            % return once the request is written instead of after the
            % server's answer. The server runs this client's requests in
            % order, so its own later sync, wait and devices see every
            % earlier send. What changes from DiME2: a refused send (no
            % such group, a full queue) raises dime:server at a later call,
            % naming it ('pipelined send #N of ''x'' to group ''g'' failed:
            % ...'): the next call that reads answers (flush, sync, wait,
            % devices, join, leave, close, or a send that finds the window
            % full), which then does nothing else (sync keeps what it
            % fetched for the next call); another client that looks
            % right after a send returns may not see its message yet
            % (flush first); and a sync right after a wait returns what the
            % wait fetched without asking the server again (a message that
            % reached the server in between comes with the next sync).
            % Against an original DiME2 server the window is at most 16. Turning it off waits for every answer and
            % raises the first failure among them, if any.
            if nargin < 2
                w = dime_mex('pipeline', obj.h);
            else
                w = dime_mex('pipeline', obj.h, n);
            end
        end

        function flush(obj)
            % FLUSH  Wait until the server has answered every pipelined
            % send (so every message sent is queued for its recipients);
            % raises dime:server for the oldest failure not yet reported.
            dime_mex('flush', obj.h);
        end

        function n = unacknowledged(obj)
            % UNACKNOWLEDGED  How many pipelined sends await an answer.
            n = dime_mex('unacknowledged', obj.h);
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
            % assign them in the caller's workspace; returns their names
            % (a Kx1 cell of char, in arrival order; {} if none).
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
            % DEVICES  Names of the groups with at least one member: an Nx1
            % cell of char, as the original client's (sort(d.devices()) is
            % {'a'; 'b'; ...}); {} when there is none.
            names = dime_mex('devices', obj.h);
        end

        function tf = supports(obj, name)
            % SUPPORTS  Whether the server announced extension NAME ('share',
            % 'space', 'sync_wait', ...; see docs/protocol-extensions.md).
            % Always false for an original DiME2 server.
            tf = dime_mex('server_supports', obj.h, dime.str(name));
        end

        function names = server_extensions(obj)
            % SERVER_EXTENSIONS  The extensions the server announced (Nx1
            % cell of char; 0x1 for an original DiME2 server, with which
            % DiME2's methods work and shares and tuple spaces raise
            % dime:unsupported).
            names = dime_mex('server_extensions', obj.h);
            names = reshape(names, [], 1);
        end

        function names = get_devices(obj)
            % GET_DEVICES  Alias of DEVICES.
            names = dime_mex('devices', obj.h);
        end

        % ------------------------------------------- shared dictionaries
        % Options come last, as a name-value pair: 'share', NAME (default
        % '', the default share). Semantics: docs/protocol-extensions.md.

        function share_set(obj, key, value, varargin)
            % SHARE_SET  Store value under key: d.share_set(key, value, ['share', S]).
            % Waits while another client holds the whole-share lock.
            if nargin < 3
                dime.missing('share_set', 2);
            end
            s = dime.share_opt(varargin, 0, 'share_set(key, value, [''share'', S])');
            dime_mex('share_set', obj.h, s, dime.str(key), dime.to_wire(value));
        end

        function v = share_get(obj, key, varargin)
            % SHARE_GET  The value under key; dime:notfound if there is none.
            if nargin < 2
                dime.missing('share_get', 1);
            end
            s = dime.share_opt(varargin, 0, 'share_get(key, [''share'', S])');
            [v, fix] = dime_mex('share_get', obj.h, s, dime.str(key));
            if fix
                v = dime.from_wire(v);
            end
        end

        function v = share_pop(obj, key, varargin)
            % SHARE_POP  Remove key and return its value, atomically (of
            % several clients popping one key exactly one gets it);
            % dime:notfound if there is none.
            if nargin < 2
                dime.missing('share_pop', 1);
            end
            s = dime.share_opt(varargin, 0, 'share_pop(key, [''share'', S])');
            [v, fix] = dime_mex('share_pop', obj.h, s, dime.str(key));
            if fix
                v = dime.from_wire(v);
            end
        end

        function found = share_del(obj, key, varargin)
            % SHARE_DEL  Remove key; returns whether it was there (a missing
            % key is not an error).
            if nargin < 2
                dime.missing('share_del', 1);
            end
            s = dime.share_opt(varargin, 0, 'share_del(key, [''share'', S])');
            found = dime_mex('share_del', obj.h, s, dime.str(key));
        end

        function tf = share_contains(obj, key, varargin)
            % SHARE_CONTAINS  Whether the share holds key.
            if nargin < 2
                dime.missing('share_contains', 1);
            end
            s = dime.share_opt(varargin, 0, 'share_contains(key, [''share'', S])');
            tf = dime_mex('share_contains', obj.h, s, dime.str(key));
        end

        function k = share_keys(obj, varargin)
            % SHARE_KEYS  Every key of the share, sorted (Nx1 cell of char,
            % like devices; {} when empty).
            s = dime.share_opt(varargin, 0, 'share_keys([''share'', S])');
            k = dime_mex('share_keys', obj.h, s);
        end

        function n = share_len(obj, varargin)
            % SHARE_LEN  The number of keys in the share.
            s = dime.share_opt(varargin, 0, 'share_len([''share'', S])');
            n = dime_mex('share_len', obj.h, s);
        end

        function share_clear(obj, varargin)
            % SHARE_CLEAR  Remove every key of the share (locks stay).
            s = dime.share_opt(varargin, 0, 'share_clear([''share'', S])');
            dime_mex('share_clear', obj.h, s);
        end

        function m = share_get_many(obj, keys, varargin)
            % SHARE_GET_MANY  The keys (a cellstr) that exist, read in one
            % request, as a struct (or a containers.Map if some key is not
            % a valid field name).
            if nargin < 2
                dime.missing('share_get_many', 1);
            end
            s = dime.share_opt(varargin, 0, 'share_get_many(keys, [''share'', S])');
            if ~iscell(keys)
                keys = {keys};
            end
            for i = 1:numel(keys)
                keys{i} = dime.str(keys{i});
            end
            [m, fix] = dime_mex('share_get_many', obj.h, s, keys);
            if fix
                m = dime.from_wire(m);
            end
        end

        function share_set_many(obj, m, varargin)
            % SHARE_SET_MANY  Store every field of a scalar struct (or entry
            % of a char-keyed containers.Map) in one atomic step.
            if nargin < 2
                dime.missing('share_set_many', 1);
            end
            s = dime.share_opt(varargin, 0, 'share_set_many(struct_or_map, [''share'', S])');
            if ~(isstruct(m) && isscalar(m)) && ~isa(m, 'containers.Map')
                error('dime:argument', 'share_set_many takes a scalar struct or a containers.Map');
            end
            dime_mex('share_set_many', obj.h, s, dime.to_wire(m));
        end

        function v = share_incr(obj, key, varargin)
            % SHARE_INCR  Add delta (default int64(1)) to the number under
            % key, atomically, and return the new value. A missing key
            % starts at 0; integer + integer keeps the stored class (int64
            % for a new key); a double or single on either side gives a
            % double (so d.share_incr(k, 1) makes k a double). dime:server
            % if the stored value is not a number or an integer overflows.
            if nargin < 2
                dime.missing('share_incr', 1);
            end
            [pos, s] = dime.share_opt(varargin, 1, 'share_incr(key, [delta], [''share'', S])');
            delta = int64(1);
            if ~isempty(pos)
                delta = pos{1};
            end
            if ~(isnumeric(delta) && isscalar(delta) && isreal(delta))
                error('dime:argument', 'share_incr: delta must be a real numeric scalar');
            end
            [v, fix] = dime_mex('share_incr', obj.h, s, dime.str(key), delta);
            if fix
                v = dime.from_wire(v);
            end
        end

        function swapped = share_cas(obj, key, expected, new, varargin)
            % SHARE_CAS  Compare-and-swap: set key to new only if its value
            % equals expected (same class and bits: int64(1) is not 1), or,
            % with expected = dime.absent(), only if key does not exist.
            % Returns whether it did.
            if nargin < 4
                dime.missing('share_cas', 3);
            end
            s = dime.share_opt(varargin, 0, 'share_cas(key, expected, new, [''share'', S])');
            if dime.is_marker(expected, 'absent')
                swapped = dime_mex('share_cas', obj.h, s, dime.str(key), dime.to_wire(new));
            else
                swapped = dime_mex('share_cas', obj.h, s, dime.str(key), dime.to_wire(new), ...
                                   dime.to_wire(expected));
            end
        end

        function v = share_wait_key(obj, key, varargin)
            % SHARE_WAIT_KEY  The value of key as soon as it exists (at once
            % if it does), woken by the write that creates it. Timeout in
            % seconds (default: forever); dime:timeout when it runs out.
            if nargin < 2
                dime.missing('share_wait_key', 1);
            end
            [pos, s] = dime.share_opt(varargin, 1, 'share_wait_key(key, [timeout], [''share'', S])');
            [v, fix] = dime_mex('share_wait_key', obj.h, s, dime.str(key), dime.to_ms(pos));
            if fix
                v = dime.from_wire(v);
            end
        end

        function token = share_lock(obj, varargin)
            % SHARE_LOCK  d.share_lock() takes the whole-share lock (other
            % clients' writes to the share wait while it is held; reads do
            % not); d.share_lock(key) a named advisory lock;
            % d.share_lock(key_or_[], timeout) gives up after timeout
            % seconds with dime:timeout. FIFO; not re-entrant (dime:server);
            % released by share_unlock or when this connection closes.
            % Returns the grant's fencing token (uint64; see share_lock_lease).
            [pos, s] = dime.share_opt(varargin, 2, 'share_lock([key], [timeout], [''share'', S])');
            key = [];
            if ~isempty(pos)
                key = dime.str(pos{1});
            end
            token = dime_mex('share_lock_lease', obj.h, s, key, dime.to_ms(pos(2:end)), 0);
        end

        function token = share_lock_lease(obj, key, ttl, varargin)
            % SHARE_LOCK_LEASE  token = d.share_lock_lease(key_or_[], ttl)
            % takes the lock (key [] : whole-share) with a lease of ttl
            % seconds: unless renewed (share_lock_renew) the server releases
            % it then, even if this process is alive but stuck, and the next
            % waiter gets it. Optional third argument: a timeout in seconds.
            % Returns the fencing token (uint64), which grows with every
            % grant; writes given it (share_set_fenced, share_del_fenced)
            % are refused (dime:server) once a newer grant exists.
            if nargin < 3
                dime.missing('share_lock_lease', 2);
            end
            [pos, s] = dime.share_opt(varargin, 1, 'share_lock_lease(key_or_[], ttl, [timeout], [''share'', S])');
            if ~isempty(key)
                key = dime.str(key);
            end
            token = dime_mex('share_lock_lease', obj.h, s, key, dime.to_ms(pos), dime.lease_ms(ttl));
        end

        function token = share_lock_renew(obj, key, ttl, varargin)
            % SHARE_LOCK_RENEW  d.share_lock_renew(key_or_[], ttl) extends
            % the lease of a lock this connection holds to ttl seconds from
            % now ([]: its last length); returns its token. dime:server if
            % the lock is no longer held (the lease already ran out).
            if nargin < 2
                dime.missing('share_lock_renew', 1);
            end
            if nargin < 3
                ttl = [];
            end
            s = dime.share_opt(varargin, 0, 'share_lock_renew(key_or_[], [ttl], [''share'', S])');
            if ~isempty(key)
                key = dime.str(key);
            end
            ms = 0;
            if ~isempty(ttl)
                ms = dime.lease_ms(ttl);
            end
            token = dime_mex('share_lock_renew', obj.h, s, key, ms);
        end

        function share_set_fenced(obj, key, value, token, varargin)
            % SHARE_SET_FENCED  share_set carrying a fencing token: refused
            % (dime:server, nothing written) if a newer grant of the share's
            % lock or of the lock named key exists.
            if nargin < 4
                dime.missing('share_set_fenced', 3);
            end
            s = dime.share_opt(varargin, 0, 'share_set_fenced(key, value, token, [''share'', S])');
            dime_mex('share_set_fenced', obj.h, s, dime.str(key), dime.to_wire(value), token);
        end

        function found = share_del_fenced(obj, key, token, varargin)
            % SHARE_DEL_FENCED  share_del carrying a fencing token (see
            % share_set_fenced).
            if nargin < 3
                dime.missing('share_del_fenced', 2);
            end
            s = dime.share_opt(varargin, 0, 'share_del_fenced(key, token, [''share'', S])');
            found = dime_mex('share_del_fenced', obj.h, s, dime.str(key), token);
        end

        % -------------------------------------------------- change events
        % A watch has its own connection to the server; events are structs
        % with fields kind ('set', 'del', 'clear', 'out', 'in', 'join',
        % 'leave' or 'lost': re-read, events were missed), seq, topic (the
        % share or space), key (share key or group), value and client ([]
        % when not applicable).

        function w = watch_share(obj, varargin)
            % WATCH_SHARE  w = d.watch_share([prefix], [resume]) watches the
            % share's keys starting with prefix (default: all); resume: a
            % position from watch_position, to first get what happened after
            % it. Option 'share', NAME. Read events with watch_next.
            [pos, s] = dime.share_opt(varargin, 2, 'watch_share([prefix], [resume], [''share'', S])');
            prefix = '';
            if ~isempty(pos) && ~isempty(pos{1})
                prefix = dime.str(pos{1});
            end
            resume = [];
            if numel(pos) > 1
                resume = pos{2};
            end
            w = dime_mex('watch_share', obj.h, s, prefix, resume);
        end

        function w = watch_space(obj, varargin)
            % WATCH_SPACE  w = d.watch_space([resume]): an 'out' event for
            % every tuple put in, 'in' for every tuple taken (value: the
            % tuple). Option 'space', NAME.
            [pos, sp] = dime.space_opt(varargin, 1, 'watch_space([resume], [''space'', S])');
            resume = [];
            if ~isempty(pos)
                resume = pos{1};
            end
            w = dime_mex('watch_space', obj.h, sp, resume);
        end

        function w = watch_groups(obj, prefix, resume)
            % WATCH_GROUPS  w = d.watch_groups([prefix], [resume]): 'join'
            % and 'leave' events (key: the group, client: the server's id
            % of the client) of groups whose names start with prefix.
            if nargin < 2
                prefix = '';
            end
            if nargin < 3
                resume = [];
            end
            w = dime_mex('watch_groups', obj.h, dime.str(prefix), resume);
        end

        function ev = watch_next(obj, w, timeout) %#ok<INUSL>
            % WATCH_NEXT  ev = d.watch_next(w, [timeout]): the next event of
            % watch w, waiting up to timeout seconds (default: forever); []
            % if none came. A broken connection is reopened, resuming.
            if nargin < 2
                dime.missing('watch_next', 1);
            end
            if nargin < 3
                timeout = [];
            end
            [ev, fix] = dime_mex('watch_next', w, dime.to_ms({timeout}));
            if isempty(ev)
                ev = [];
                return;
            end
            if fix
                ev.value = dime.from_wire(ev.value);
            end
            if any(strcmp(ev.kind, {'out', 'in'}))
                ev.value = dime.tuple_back(ev.value, false);
            end
        end

        function p = watch_position(obj, w) %#ok<INUSL>
            % WATCH_POSITION  The uint64 [epoch seq] of the last event seen,
            % to resume a later watch from (watch_share(..., p)).
            p = dime_mex('watch_position', w);
        end

        function watch_close(obj, w) %#ok<INUSL>
            % WATCH_CLOSE  Ends watch w and closes its connection (idempotent).
            dime_mex('watch_close', w);
        end

        function ok = share_try_lock(obj, varargin)
            % SHARE_TRY_LOCK  Take the lock (whole-share, or key) only if it
            % is free now; returns whether it was taken.
            [pos, s] = dime.share_opt(varargin, 1, 'share_try_lock([key], [''share'', S])');
            key = [];
            if ~isempty(pos)
                key = dime.str(pos{1});
            end
            ok = dime_mex('share_try_lock', obj.h, s, key);
        end

        function share_unlock(obj, varargin)
            % SHARE_UNLOCK  Release the whole-share lock, or the lock key.
            [pos, s] = dime.share_opt(varargin, 1, 'share_unlock([key], [''share'', S])');
            key = [];
            if ~isempty(pos)
                key = dime.str(pos{1});
            end
            dime_mex('share_unlock', obj.h, s, key);
        end

        % ---------------------------------------------------- tuple spaces
        % A tuple is a cell row {f1, f2, ...}; received tuples are 1xN
        % cells. A pattern is a cell with one field per tuple field: plain
        % values match exactly (same class and bits), dime.any(),
        % dime.type(T), dime.matrix(C, R) and dime.range(LO, HI) are
        % wildcards. Option (last): 'space', NAME (default '').

        function out(obj, tuple, varargin)
            % OUT  Put a tuple into the space: d.out({'job', int64(3), rand(2)}).
            if nargin < 2
                dime.missing('out', 1);
            end
            sp = dime.space_opt(varargin, 0, 'out(tuple, [''space'', S])');
            if ~iscell(tuple)
                error('dime:argument', 'a tuple is a cell array, e.g. {''job'', 1}');
            end
            for i = 1:numel(tuple)
                if dime.is_marker(tuple{i}, '')
                    error('dime:argument', ...
                          'tuple field %d: wildcards (dime.any, dime.type, ...) belong in patterns', i);
                end
            end
            dime_mex('ts_out', obj.h, sp, dime.to_wire(tuple));
        end

        function t = in(obj, pattern, varargin)
            % IN  Remove and return the oldest tuple matching pattern,
            % waiting for one (timeout in seconds, default forever;
            % dime:timeout). Aliases: take, in_.
            if nargin < 2
                dime.missing('in', 1);
            end
            [pos, sp] = dime.space_opt(varargin, 1, 'in(pattern, [timeout], [''space'', S])');
            t = obj.blocking('ts_in', pattern, pos, sp);
        end

        function t = take(obj, pattern, varargin)
            % TAKE  Alias of IN.
            if nargin < 2
                dime.missing('take', 1);
            end
            [pos, sp] = dime.space_opt(varargin, 1, 'take(pattern, [timeout], [''space'', S])');
            t = obj.blocking('ts_in', pattern, pos, sp);
        end

        function t = in_(obj, pattern, varargin)
            % IN_  Alias of IN (the Python binding's name).
            if nargin < 2
                dime.missing('in_', 1);
            end
            [pos, sp] = dime.space_opt(varargin, 1, 'in_(pattern, [timeout], [''space'', S])');
            t = obj.blocking('ts_in', pattern, pos, sp);
        end

        function t = rd(obj, pattern, varargin)
            % RD  A copy of the oldest tuple matching pattern (it stays),
            % waiting for one (timeout in seconds, default forever).
            if nargin < 2
                dime.missing('rd', 1);
            end
            [pos, sp] = dime.space_opt(varargin, 1, 'rd(pattern, [timeout], [''space'', S])');
            t = obj.blocking('ts_rd', pattern, pos, sp);
        end

        function t = inp(obj, pattern, varargin)
            % INP  Like IN but never waits: the tuple, or [] if none matches.
            if nargin < 2
                dime.missing('inp', 1);
            end
            sp = dime.space_opt(varargin, 0, 'inp(pattern, [''space'', S])');
            t = obj.nonblocking('ts_inp', pattern, sp);
        end

        function t = rdp(obj, pattern, varargin)
            % RDP  Like RD but never waits: a copy, or [] if none matches.
            if nargin < 2
                dime.missing('rdp', 1);
            end
            sp = dime.space_opt(varargin, 0, 'rdp(pattern, [''space'', S])');
            t = obj.nonblocking('ts_rdp', pattern, sp);
        end

        function n = count(obj, pattern, varargin)
            % COUNT  How many stored tuples match pattern.
            if nargin < 2
                dime.missing('count', 1);
            end
            sp = dime.space_opt(varargin, 0, 'count(pattern, [''space'', S])');
            n = dime_mex('ts_count', obj.h, sp, dime.compile_pattern(pattern));
        end

        % ---------------------------------------------------- remote calls
        % A client provides a named function (d.serve); any client calls it
        % by name (d.call) and the broker routes the call to a provider
        % and the result back. Arguments and results are any value of the
        % type table. Semantics: docs/protocol-extensions.md ("Remote
        % calls"). Waits run in slices of dime.SLICE seconds, so Ctrl-C
        % gets through; an interrupted d.call cancels its call, an
        % interrupted d.serve stops providing.

        function varargout = call(obj, name, varargin)
            % CALL  Call a function some client provides, and wait for its result.
            %
            %   r = d.call('add', struct('x', 1))
            %   r = d.call('add', args, 'timeout', 5)   % seconds (default: forever)
            %   [r, err] = d.call(...)                  % no error raised for a failed call
            %
            % Errors: dime:remoteError (the provider's function failed; the
            % message holds the remote error's type, message and traceback),
            % dime:providerLost (the provider went away during the call),
            % dime:noProvider (no provider took the call before the
            % timeout), dime:timeout (a provider took it but its result did
            % not come in time: the call is cancelled), dime:connection.
            % With a second output, such failures return r = [] and err, a
            % struct with fields identifier, message (as raised), type and
            % traceback (the remote error's; '' otherwise); err = [] when
            % the call succeeded. Interrupting (Ctrl-C) cancels the call.
            if nargin < 2
                dime.missing('call', 1);
            end
            if numel(varargin) <= 1 && ischar(name) && size(name, 1) == 1 && ~isempty(name)
                % The common case without the option parser: each static
                % method call costs tens of microseconds in Octave.
                timeout = Inf;
                args = [];
                if ~isempty(varargin)
                    args = varargin{1};
                end
            else
                [args, timeout, name] = dime.call_args(name, varargin, 'call');
            end
            if ~(isnumeric(args) || islogical(args) || ischar(args))
                args = dime.to_wire(args);
            end
            if isinf(timeout)
                f = dime_mex('call', obj.h, name, args, -1);
            else
                f = dime_mex('call', obj.h, name, args, round(timeout * 1000));
            end
            % On every way out (result, error, Ctrl-C): cancel the call if
            % it has not finished, and free it.
            release = onCleanup(@() dime_mex('future_free', f, true));
            if isinf(timeout)
                slice = dime.SLICE_MS;
                while ~dime_mex('future_wait', f, slice)
                end
                done = true;
            else
                done = dime.future_wait(f, timeout);
                if ~done
                    % A call no provider took fails with dime:noProvider at
                    % the deadline, as the broker measures it: give its
                    % verdict a moment to arrive before calling it a timeout.
                    done = dime.future_wait(f, dime.GRACE);
                end
                if ~done && ~dime_mex('future_cancel', f)
                    done = true; % it finished in the meantime
                end
            end
            if done
                [ok, r, fix] = dime_mex('future_result', f);
                if ok
                    failure = [];
                    if fix
                        r = dime.from_wire(r);
                    end
                else
                    failure = dime.failure_of(r, name);
                    r = [];
                end
            else
                ok = false;
                r = [];
                failure = dime.failure('dime:timeout', sprintf( ...
                    '''%s'' did not return within %g s; the call was cancelled', name, timeout));
            end
            if ~ok && nargout < 2
                error(failure.identifier, '%s', failure.message);
            end
            varargout{1} = r;
            if nargout > 1
                varargout{2} = failure;
            end
        end

        function f = call_async(obj, name, varargin)
            % CALL_ASYNC  Call a function some client provides, without waiting.
            %
            %   f = d.call_async('add', args)          % a dime_future
            %   f = d.call_async('add', args, 'timeout', 5)
            %   r = f.result();  tf = f.done();  f.cancel();
            %
            % 'timeout' bounds the wait for a provider to take the call
            % (then the future fails with dime:noProvider); f.result(t)
            % bounds a wait for the result. Clearing f does not cancel the
            % call. See dime_future.
            if nargin < 2
                dime.missing('call_async', 1);
            end
            [args, timeout, name] = dime.call_args(name, varargin, 'call_async');
            h = dime_mex('call', obj.h, name, dime.to_wire(args), dime.seconds_to_ms(timeout));
            f = dime_future(h, name);
        end

        function n = serve(obj, name, fn, varargin)
            % SERVE  Provide a function to callers and serve its calls here.
            %
            %   d.serve('add', @(s) s.x + 1)              % until interrupted (Ctrl-C)
            %   n = d.serve('add', @fn, 'count', 3)        % serve 3 calls, then return
            %   d.serve('add', @fn, 'timeout', 10)         % dime:timeout after 10 s
            %                                              % without a call
            %
            % fn takes the call's argument value (or nothing, if it takes
            % no arguments) and returns the result value (or nothing: the
            % caller gets []). An error fn raises goes back to the caller
            % as a remote error with its identifier as the type (or
            % 'MException' if it has none), its message, and its stack as
            % the traceback; serving goes on. A result that cannot be sent
            % (e.g. a function handle) goes back as a dime:type error.
            % Calls are served one at a time. Before returning (also on an
            % error or Ctrl-C) the function stops being provided; a call
            % the broker had already handed over but that never ran fails
            % with a remote dime:providerStopped error, a call interrupted
            % while running with a remote error. A reader that opens the
            % name as a stream (d.stream) gets a remote dime:notStream
            % error (not counted). Returns how many calls were served.
            if nargin < 3
                dime.missing('serve', 2);
            end
            [name, fn, count, timeout] = dime.serve_args('serve', name, fn, varargin);
            n = dime.serve_loop(obj.h, 'serve', name, fn, count, timeout, false);
        end

        % --------------------------------------------------------- streams
        % A client provides a named stream (d.serve_stream); any client
        % reads it (d.stream), item by item, in order. A credit window
        % (items and bytes) bounds how far the producer runs ahead of the
        % reader, so a slow reader slows the producer.

        function s = stream(obj, name, varargin)
            % STREAM  Open a stream some client provides (a dime_stream).
            %
            %   s = d.stream('count', 5)
            %   s = d.stream('count', 5, 'timeout', 10, 'items', 64, 'bytes', 2^20)
            %   [v, ok] = s.next();  s.close();
            %
            % 'timeout' (seconds, default forever) bounds the wait for a
            % provider (then next raises dime:noProvider); 'items' and
            % 'bytes' set the credit window (default 1024 items, 64 MiB).
            % See dime_stream.
            if nargin < 2
                dime.missing('stream', 1);
            end
            [pos, opts] = dime.options(varargin, {'timeout', 'items', 'bytes'}, 1, ...
                ['stream(function, [args], [''timeout'', seconds], [''items'', N], ' ...
                 '[''bytes'', N])']);
            name = dime.function_name(name);
            args = [];
            if ~isempty(pos)
                args = pos{1};
            end
            timeout = Inf;
            if isfield(opts, 'timeout')
                timeout = dime.seconds(opts.timeout);
            end
            window = [0 0];
            opt = {'items', 'bytes'};
            for i = 1:2
                if isfield(opts, opt{i})
                    w = opts.(opt{i});
                    if ~(isnumeric(w) && isscalar(w) && isreal(w) && w >= 1 && w == round(w))
                        error('dime:argument', 'stream: %s must be a whole number >= 1', opt{i});
                    end
                    window(i) = double(w);
                end
            end
            h = dime_mex('stream_open', obj.h, name, dime.to_wire(args), window(1), window(2), ...
                         dime.seconds_to_ms(timeout));
            s = dime_stream(h, name);
        end

        function n = serve_stream(obj, name, fn, varargin)
            % SERVE_STREAM  Provide a stream to readers and produce it here.
            %
            %   d.serve_stream('count', @produce)                  % until interrupted (Ctrl-C)
            %   n = d.serve_stream('count', @produce, 'count', 2)  % 2 streams, then return
            %   d.serve_stream('count', @produce, 'timeout', 10)   % dime:timeout after
            %                                                      % 10 s without a reader
            %
            %   function produce(args, emit)
            %       for i = 1:args
            %           if ~emit(i), return; end   % false: the reader stopped
            %       end
            %   end
            %
            % fn(args, emit) (or fn(emit) if fn takes one argument) is
            % called once per reader with the reader's argument value; it
            % calls emit(item) for each item, in order. emit waits while
            % the reader's window is full (in slices, so Ctrl-C gets
            % through) and returns true once the item is sent, false once
            % the reader has stopped (closed the stream or gone): fn should
            % then return. When fn returns the stream ends normally; an
            % error fn raises ends it with a remote error at the reader,
            % after the items already sent (identifier as the type, or
            % 'MException', message, stack as the traceback); serving goes
            % on. An item that cannot be sent (e.g. a function handle)
            % raises dime:type from emit (so, unless fn catches it, it ends
            % the stream with that error). Readers are served one at a
            % time; a plain d.call of the name fails with a remote
            % dime:notStream error. Returns how many streams were served;
            % stops providing before returning, as d.serve.
            if nargin < 3
                dime.missing('serve_stream', 2);
            end
            [name, fn, count, timeout] = dime.serve_args('serve_stream', name, fn, varargin);
            n = dime.serve_loop(obj.h, 'serve_stream', name, fn, count, timeout, true);
        end
    end

    methods (Access = private)
        function [names, values] = receive(obj, n)
            [names, values, fix] = dime_mex('sync', obj.h, n);
            for i = find(fix)
                values{i} = dime.from_wire(values{i});
            end
        end

        function t = blocking(obj, cmd, pattern, pos, sp)
            spec = dime.compile_pattern(pattern);
            [t, fix] = dime_mex(cmd, obj.h, sp, spec, dime.to_ms(pos));
            t = dime.tuple_back(t, fix);
        end

        function t = nonblocking(obj, cmd, pattern, sp)
            spec = dime.compile_pattern(pattern);
            [t, fix] = dime_mex(cmd, obj.h, sp, spec);
            if iscell(t)
                t = dime.tuple_back(t, fix);
            end
        end
    end

    methods (Static)
        function v = version()
            % DIME.VERSION  The versions of libdime and of this binding, as a
            % struct: binding, library (the loaded libdime's), mex (the
            % dime.h dime_mex was compiled against) and library_path. Builds
            % dime_mex first if needed; raises dime:version, naming both,
            % when libdime's version is not the binding's.
            v = mex_ready();
        end

        % Pattern wildcards for in/rd/inp/rdp/count, and dime.absent() for
        % share_cas. Each returns a marker struct; use them as top-level
        % fields of a pattern cell.

        function m = any()
            % DIME.ANY  Pattern field matching any value.
            m = struct(dime.PMARK, {{'any'}});
        end

        function m = type(name)
            % DIME.TYPE  Pattern field matching any value of a class:
            %   'double', 'single', 'int8' ... 'uint64'  a scalar of exactly that class
            %   'logical' (or 'bool')                    a logical scalar
            %   'char' (or 'string')                     a string
            %   'cell' (or 'list')                       a list (cell)
            %   'struct', 'containers.Map' (or 'map')    a map
            %   'null'                                   [] (null)
            %   'int', 'float', 'complex'                a scalar of any integer class /
            %                                            single or double / complex class
            %   'complex double', 'complex single'       a complex scalar of that class
            %   'matrix'                                 any matrix (see dime.matrix)
            %   'any'                                    anything (as dime.any)
            % Scalars and matrices differ: [1 2] is a matrix, 5 a double scalar.
            name = dime.str(name);
            if ~ischar(name)
                error('dime:argument', 'dime.type takes a class name');
            end
            switch name
                case {'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', ...
                      'uint64', 'single', 'double', 'int', 'float', 'complex', ...
                      'complex double', 'complex single', 'null', 'matrix'}
                    t = name;
                case {'logical', 'bool'}
                    t = 'bool';
                case {'char', 'string'}
                    t = 'string';
                case {'cell', 'list'}
                    t = 'list';
                case {'struct', 'map', 'containers.Map'}
                    t = 'map';
                case 'any'
                    m = dime.any();
                    return;
                otherwise
                    error('dime:argument', 'dime.type: unknown class ''%s''', name);
            end
            m = struct(dime.PMARK, {{'type', t}});
        end

        function m = matrix(cls, rank)
            % DIME.MATRIX  Pattern field matching a matrix (a numeric or
            % logical array sent as such; never a scalar) of class cls
            % ('double', 'single', 'int8' ... 'uint64', 'logical',
            % 'complex double', 'complex single'; '' or 'any' or omitted:
            % any class) and rank (number of dimensions as sent: 2 for a
            % 1xN or MxN array; [] or omitted: any).
            if nargin < 1 || isempty(cls)
                cls = '';
            end
            cls = dime.str(cls);
            if nargin < 2
                rank = [];
            end
            known = {'', 'any', 'double', 'single', 'int8', 'int16', 'int32', 'int64', ...
                     'uint8', 'uint16', 'uint32', 'uint64', 'logical', 'complex double', ...
                     'complex single'};
            if ~ischar(cls) || ~any(strcmp(cls, known))
                error('dime:argument', 'dime.matrix: unknown class ''%s''', num2str(cls));
            end
            if ~isempty(rank) && ~(isnumeric(rank) && isscalar(rank) && isreal(rank) ...
                                   && rank >= 0 && rank <= 255 && rank == round(rank))
                error('dime:argument', 'dime.matrix: the rank must be an integer 0..255 or []');
            end
            m = struct(dime.PMARK, {{'matrix', {cls, double(rank)}}});
        end

        function m = range(lo, hi)
            % DIME.RANGE  Pattern field matching a real numeric scalar (any
            % integer class, single or double) v with lo <= v <= hi; [] or
            % omitted (or -Inf / Inf) leaves a side open. NaN never matches.
            % Bounds travel as doubles (integers are compared exactly).
            if nargin < 1
                lo = [];
            end
            if nargin < 2
                hi = [];
            end
            b = [0 0 0 0];
            bounds = {lo, hi};
            for i = 1:2
                x = bounds{i};
                if isempty(x)
                    continue;
                end
                if ~(isnumeric(x) && isscalar(x) && isreal(x))
                    error('dime:argument', 'dime.range: bounds must be real numeric scalars or []');
                end
                if isnan(x)
                    error('dime:argument', 'dime.range: a bound cannot be NaN');
                end
                if isinteger(x) && cast(double(x), class(x)) ~= x
                    error('dime:argument', 'dime.range: bound %s is not exact as a double', ...
                          num2str(x));
                end
                b(i) = double(x);
                b(i + 2) = 1;
            end
            if b(3) && b(4) && b(1) > b(2)
                error('dime:argument', 'dime.range: empty range (lo > hi)');
            end
            m = struct(dime.PMARK, {{'range', b}});
        end

        function m = absent()
            % DIME.ABSENT  As share_cas's expected value: "the key must not exist".
            m = struct(dime.PMARK, {{'absent'}});
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
            % is a real numeric scalar; otherwise (mixed keys, or an empty
            % char key, which Octave's containers.Map cannot hold) an Nx2
            % cell {key, value; ...}.
            if all(cellfun(@ischar, k)) && ~any(cellfun(@isempty, k))
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

        % --------------------------------------- remote calls (dime_future too)

        function done = future_wait(f, timeout)
            % Whether the call of future handle f finished within timeout
            % seconds (Inf: wait until it does), asking the library at most
            % dime.SLICE s at a time so Ctrl-C gets through in between.
            t0 = tic;
            while true
                if dime_mex('future_wait', f, dime.slice_ms(timeout - toc(t0)))
                    done = true;
                    return;
                end
                if toc(t0) >= timeout
                    done = false;
                    return;
                end
            end
        end

        function [ok, r, failure] = future_take(f, name)
            % The outcome of a finished call: ok and its result r (failure
            % = []), or not ok, r = [] and failure (see dime.failure).
            [ok, r, fix] = dime_mex('future_result', f);
            failure = [];
            if ok
                if fix
                    r = dime.from_wire(r);
                end
            else
                failure = dime.failure_of(r, name);
                r = [];
            end
        end

        function failure = failure_of(e, name)
            % The failure of a call of name, from the struct future_result
            % returns: the message as raised names the function and, for a
            % remote error, holds its type, message and traceback.
            if strcmp(e.identifier, 'dime:remoteError')
                msg = sprintf('''%s'' raised %s: %s', name, e.type, e.message);
                if ~isempty(e.traceback)
                    msg = sprintf('%s\nRemote traceback:\n%s', msg, e.traceback);
                end
            else
                msg = sprintf('''%s'': %s', name, e.message);
            end
            failure = dime.failure(e.identifier, msg, e.type, e.traceback);
        end

        function future_release(f, cancel)
            % Frees future handle f (cancelling its call first if cancel and
            % it has not finished). Quiet: it runs from delete, also after
            % the connection went away.
            try
                dime_mex('future_free', f, cancel);
            catch
                % nothing left to free
            end
        end

        function e = failure(identifier, message, type, traceback)
            % The err output of d.call / f.result for a failed call.
            if nargin < 3
                type = '';
                traceback = '';
            end
            e = struct('identifier', identifier, 'message', message, 'type', type, ...
                       'traceback', traceback);
        end

        function t = seconds(t)
            % A timeout in seconds, checked: a real non-negative number
            % (Inf, or [] for forever).
            if isempty(t)
                t = Inf;
                return;
            end
            if ~(isnumeric(t) && isscalar(t) && isreal(t)) || isnan(t) || t < 0
                error('dime:argument', 'a timeout must be a number of seconds >= 0 (Inf: forever)');
            end
            t = double(t);
        end

        function ms = slice_ms(left)
            % One slice of a sliced wait with `left` seconds to go, in
            % milliseconds: at most dime.SLICE, never negative (which the
            % library reads as "forever"), rounded up so a slice never
            % ends before the deadline.
            ms = ceil(max(0, min(dime.SLICE, left)) * 1000);
        end
    end

    methods (Static, Access = private)
        function missing(method, n)
            error('dime:argument', '%s needs at least %d argument(s); see help dime', method, n);
        end

        function [args, timeout, name] = call_args(name, rest, method)
            % d.call / d.call_async arguments: [args], ['timeout', seconds].
            [pos, opts] = dime.options(rest, {'timeout'}, 1, ...
                                       [method '(function, [args], [''timeout'', seconds])']);
            name = dime.function_name(name);
            args = [];
            if ~isempty(pos)
                args = pos{1};
            end
            timeout = Inf;
            if isfield(opts, 'timeout')
                timeout = dime.seconds(opts.timeout);
            end
        end

        function [pos, opts] = options(args, names, nmax, usage)
            % Trailing name/value option pairs (names: a cellstr) off args,
            % into the struct opts; at most nmax positional arguments
            % remain in pos. A trailing pair whose name is one of names is
            % always read as the option.
            opts = struct();
            n = numel(args);
            while n >= 2 && ischar(dime.str(args{n - 1})) ...
                  && any(strcmpi(dime.str(args{n - 1}), names)) ...
                  && ~isfield(opts, lower(dime.str(args{n - 1})))
                opts.(lower(dime.str(args{n - 1}))) = args{n};
                n = n - 2;
            end
            pos = args(1:n);
            if numel(pos) > nmax
                error('dime:argument', 'usage: d.%s', usage);
            end
        end

        function name = function_name(name)
            name = dime.str(name);
            if ~ischar(name) || isempty(name) || size(name, 1) ~= 1
                error('dime:argument', 'a function name must be a non-empty char row vector');
            end
        end

        function ms = seconds_to_ms(t)
            if isinf(t)
                ms = -1;
            else
                ms = round(t * 1000);
            end
        end

        function run_call(rq, fn, args, fix, name)
            % Runs fn on one call's arguments and answers it: with the
            % result, or with the error fn raised. Frees request rq.
            try
                if fix
                    args = dime.from_wire(args);
                end
                try
                    nin = nargin(fn);
                catch
                    nin = 1; % a builtin: give it the argument
                end
                try
                    nout = nargout(fn);
                catch
                    nout = 1;
                end
                if nin == 0
                    in = {};
                else
                    in = {args};
                end
                if nout == 0
                    fn(in{:});
                    result = [];
                else
                    result = fn(in{:});
                end
            catch err
                dime_mex('reply_error', rq, dime.error_type(err), dime.no_nul(err.message), ...
                         dime.format_stack(err));
                dime_mex('request_free', rq);
                return;
            end
            try
                if ~(isnumeric(result) || islogical(result) || ischar(result))
                    result = dime.to_wire(result);
                end
                dime_mex('reply', rq, result);
            catch err
                if ~any(strcmp(err.identifier, {'dime:type', 'dime:argument', 'dime:codec'}))
                    rethrow(err); % the connection: serving cannot go on
                end
                dime_mex('reply_error', rq, err.identifier, dime.no_nul(sprintf( ...
                    'the result of ''%s'' cannot be sent: %s', name, err.message)), '');
            end
            dime_mex('request_free', rq);
        end

        function run_stream(rq, fn, args, fix)
            % Runs fn on one stream call's arguments with an emit function
            % sending to it, then ends the stream: normally, or with the
            % error fn raised. Frees request rq on every way out.
            release = onCleanup(@() dime_mex('request_free', rq));
            emit = @(item) dime.stream_emit(rq, item);
            try
                if fix
                    args = dime.from_wire(args);
                end
                try
                    nin = nargin(fn);
                catch
                    nin = 2;
                end
                if nin == 1
                    fn(emit);
                else
                    fn(args, emit);
                end
            catch err
                if any(strcmp(err.identifier, {'dime:connection', 'dime:closed'}))
                    rethrow(err); % the connection: serving cannot go on
                end
                try
                    dime_mex('reply_error', rq, dime.error_type(err), ...
                             dime.no_nul(err.message), dime.format_stack(err));
                catch
                    % the reader had stopped: the stream is over already
                end
                return;
            end
            try
                dime_mex('stream_end', rq);
            catch err
                if any(strcmp(err.identifier, {'dime:connection', 'dime:closed'}))
                    rethrow(err);
                end
                % the reader had stopped: the stream is over already
            end
        end

        function sent = stream_emit(rq, item)
            % The emit function of d.serve_stream: sends item on stream
            % call rq, waiting in slices while the reader's window is full;
            % false once the reader has stopped.
            if ~(isnumeric(item) || islogical(item) || ischar(item))
                item = dime.to_wire(item);
            end
            while true
                st = dime_mex('stream_send', rq, item, dime.SLICE_MS);
                if st >= 0
                    sent = st == 1;
                    return;
                end
            end
        end

        function t = error_type(err)
            t = err.identifier;
            if isempty(t)
                t = 'MException';
            end
        end

        function s = no_nul(s)
            s = strrep(s, char(0), '\0');
        end

        function tb = format_stack(err)
            % The frames of err's stack inside the served function (up to
            % the first frame of dime.m), one per line, innermost first.
            tb = '';
            self = [mfilename('fullpath') '.m'];
            for i = 1:numel(err.stack)
                s = err.stack(i);
                if strcmp(s.file, self)
                    break;
                end
                line = sprintf('  at %s (%s:%d)', s.name, s.file, s.line);
                if isempty(tb)
                    tb = line;
                else
                    tb = sprintf('%s\n%s', tb, line);
                end
            end
            tb = dime.no_nul(tb);
        end

        function [name, fn, count, timeout] = serve_args(what, name, fn, rest)
            % The arguments d.serve and d.serve_stream share, checked: the
            % function name, fn as a handle, and the 'count' (whole, >= 0,
            % default Inf) and 'timeout' (seconds, default Inf) options.
            [~, opts] = dime.options(rest, {'count', 'timeout'}, 0, ...
                sprintf('%s(function, fn, [''count'', N], [''timeout'', seconds])', what));
            count = Inf;
            if isfield(opts, 'count')
                count = opts.count;
                if ~(isnumeric(count) && isscalar(count) && isreal(count) && count >= 0 ...
                     && (count == round(count) || isinf(count)))
                    error('dime:argument', '%s: count must be a whole number >= 0 (or Inf)', what);
                end
            end
            timeout = Inf;
            if isfield(opts, 'timeout')
                timeout = dime.seconds(opts.timeout);
            end
            name = dime.function_name(name);
            if ischar(fn)
                fn = str2func(fn);
            end
            if ~isa(fn, 'function_handle')
                error('dime:argument', '%s: fn must be a function handle', what);
            end
        end

        function n = serve_loop(h, what, name, fn, count, timeout, stream)
            % The loop of d.serve (stream false) and d.serve_stream (true):
            % provides name, runs fn for up to count requests of its kind
            % (a request of the other kind gets a remote dime:notStream
            % error and is not counted), raises dime:timeout when none
            % comes within timeout seconds of the last, and stops
            % providing before returning (also on an error or Ctrl-C).
            n = 0;
            if count == 0
                return;
            end
            dime_mex('provide', h, name, 1);
            stop = onCleanup(@() dime.serve_end(h, name));
            idle = tic;
            slice = dime.SLICE_MS;
            while n < count
                if ~isinf(timeout)
                    slice = dime.slice_ms(timeout - toc(idle));
                end
                [rq, args, fix] = dime_mex('next_call', h, name, slice);
                if rq == 0
                    if toc(idle) >= timeout
                        if stream
                            awaited = 'reader';
                        else
                            awaited = 'call';
                        end
                        error('dime:timeout', '%s: no %s of ''%s'' came within %g s (%d served)', ...
                              what, awaited, name, timeout, n);
                    end
                    continue;
                end
                if logical(dime_mex('request_is_stream', rq)) ~= stream
                    if stream
                        why = sprintf('''%s'' is a stream: read it with d.stream', name);
                    else
                        why = sprintf('''%s'' is a plain function, not a stream: call it with d.call', name);
                    end
                    dime_mex('reply_error', rq, 'dime:notStream', why, '');
                    dime_mex('request_free', rq);
                    continue;
                end
                if n + 1 >= count
                    % Stop providing before the last request, so the broker
                    % hands this provider none it will not serve.
                    dime_mex('unprovide', h, name);
                end
                if stream
                    dime.run_stream(rq, fn, args, fix);
                else
                    dime.run_call(rq, fn, args, fix, name);
                end
                n = n + 1;
                idle = tic;
            end
        end

        function serve_end(h, name)
            % d.serve's cleanup: stop providing name, fail the calls handed
            % over that never ran, release the rest. Quiet: it runs from
            % onCleanup, also after the connection went away.
            try
                dime_mex('serve_end', h, name, ...
                         sprintf('the provider of ''%s'' stopped serving before running this call', name));
            catch
                % closed (or the MEX file cleared): nothing is left to stop
            end
        end

        function [pos, name] = share_opt(args, nmax, usage)
            [pos, name] = dime.split_opt(args, 'share', nmax, usage);
            if nargout < 2
                if ~isempty(pos)
                    error('dime:argument', 'usage: d.%s', usage);
                end
                pos = name;
            end
        end

        function [pos, name] = space_opt(args, nmax, usage)
            [pos, name] = dime.split_opt(args, 'space', nmax, usage);
            if nargout < 2
                if ~isempty(pos)
                    error('dime:argument', 'usage: d.%s', usage);
                end
                pos = name;
            end
        end

        function [pos, name] = split_opt(args, opt, nmax, usage)
            % Trailing option pair (opt, NAME) off args; at most nmax
            % positional arguments remain.
            name = '';
            n = numel(args);
            if n >= 2 && ischar(dime.str(args{n - 1})) && strcmpi(dime.str(args{n - 1}), opt)
                name = dime.str(args{n});
                if ~ischar(name)
                    error('dime:argument', 'the %s name must be a char row vector', opt);
                end
                args = args(1:n - 2);
            end
            if numel(args) > nmax
                error('dime:argument', 'usage: d.%s', usage);
            end
            pos = args;
        end

        function x = str(x)
            if ~exist('OCTAVE_VERSION', 'builtin') && isstring(x) && isscalar(x)
                x = char(x);
            end
        end

        function ms = lease_ms(ttl)
            % A lease in seconds as positive milliseconds.
            if ~(isnumeric(ttl) && isscalar(ttl) && isreal(ttl)) || ~(ttl > 0) || isinf(ttl)
                error('dime:argument', 'a lease (ttl) must be a positive number of seconds');
            end
            ms = max(1, round(double(ttl) * 1000));
        end

        function ms = to_ms(pos)
            % Timeout in seconds (first of the cell pos; absent, [] or Inf:
            % forever) as milliseconds (-1: forever).
            if isempty(pos) || isempty(pos{1}) || isinf(pos{1})
                ms = -1;
                return;
            end
            t = pos{1};
            if ~(isnumeric(t) && isscalar(t) && isreal(t)) || isnan(t)
                error('dime:argument', 'a timeout must be a number of seconds');
            end
            ms = max(0, round(double(t) * 1000));
        end

        function tf = is_marker(x, kind)
            tf = isstruct(x) && isscalar(x) && isfield(x, dime.PMARK) ...
                 && numel(fieldnames(x)) == 1 && iscell(x.(dime.PMARK)) ...
                 && ~isempty(x.(dime.PMARK)) ...
                 && (isempty(kind) || strcmp(x.(dime.PMARK){1}, kind));
        end

        function spec = compile_pattern(pattern)
            % A pattern cell as the 2xN cell dime_mex reads: kinds, arguments.
            if ~iscell(pattern)
                error('dime:argument', 'a pattern is a cell array, e.g. {''job'', dime.type(''int64'')}');
            end
            n = numel(pattern);
            spec = cell(2, n);
            for i = 1:n
                f = pattern{i};
                if dime.is_marker(f, '')
                    m = f.(dime.PMARK);
                    switch m{1}
                        case 'any'
                            spec(:, i) = {'any'; []};
                        case {'type', 'matrix', 'range'}
                            spec(:, i) = {m{1}; m{2}};
                        otherwise
                            error('dime:argument', 'pattern field %d: dime.%s() is not a pattern field', ...
                                  i, m{1});
                    end
                else
                    spec(:, i) = {'value'; dime.to_wire(f)};
                end
            end
        end

        function t = tuple_back(t, fix)
            if fix
                t = dime.from_wire(t);
            end
            if isempty(t)
                t = cell(1, 0);
            end
        end

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
