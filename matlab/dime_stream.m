classdef dime_stream < handle
    % DIME_STREAM  A stream being read, from d.stream.
    %
    %   s = d.stream('count', 5);
    %   while true
    %       [v, ok] = s.next();      % ok false once the stream has ended
    %       if ~ok, break; end
    %       disp(v);
    %   end
    %   v = s.next();                % [] at the end (then s.done() is true)
    %   v = s.next(2);               % dime:timeout if nothing came in 2 s
    %   [v, ok] = s.next(2);         % ok false: ended (s.done()) or timed out
    %   s.close();                   % stop reading; the producer is stopped
    %
    % next waits in slices of dime.SLICE s, so Ctrl-C interrupts the wait
    % (the stream stays open). A stream that failed raises, after the
    % items sent before the failure, the errors of d.call:
    % dime:remoteError (the producer raised; the message has its type,
    % message and traceback), dime:providerLost, dime:noProvider,
    % dime:connection — again on every later next. Clearing s or closing
    % the connection closes it too (then next raises dime:closed).

    properties (SetAccess = private)
        function_name = ''   % the stream function
    end

    properties (Access = private)
        s = uint64(0)        % dime_mex stream handle; 0 once released
        ended = false        % the stream ended (normally or not)
        closed = false       % close() was called before it ended
        failure = []         % why it failed (see dime.failure), or []
    end

    methods
        function obj = dime_stream(handle, name)
            % DIME_STREAM  Made by d.stream; not called directly.
            if nargin < 2 || ~isa(handle, 'uint64')
                error('dime:argument', 'dime_stream objects come from d.stream');
            end
            obj.s = handle;
            obj.function_name = name;
        end

        function delete(obj)
            % DELETE  Close the stream (stops the producer if still running).
            obj.release();
        end

        function tf = done(obj)
            % DONE  Whether the stream has ended (normally, or with an
            % error next raises); false while items may still come.
            tf = obj.ended;
        end

        function close(obj)
            % CLOSE  Stop reading: a producer still running is stopped (its
            % next emit returns false) and what it sent is dropped. Then
            % next raises dime:closed. Closing twice is harmless.
            if ~obj.ended
                obj.closed = true;
            end
            obj.release();
        end

        function varargout = next(obj, timeout)
            % NEXT  The next item, waiting for it (timeout in seconds,
            % default forever). At the end: v = [] and s.done() is true.
            % [v, ok] = s.next(...): ok is true when v is an item, false at
            % the end or when the timeout ran out (without ok, running out
            % raises dime:timeout; the stream goes on either way).
            if nargin < 2
                timeout = Inf;
            end
            timeout = dime.seconds(timeout);
            if obj.closed
                error('dime:closed', 'the stream of ''%s'' was closed', obj.function_name);
            end
            v = [];
            ok = false;
            timedout = false;
            if ~obj.ended
                t0 = tic;
                while true
                    [state, r, fix] = dime_mex('stream_next', obj.s, ...
                                               dime.slice_ms(timeout - toc(t0)));
                    if state == 1
                        ok = true;
                        v = r;
                        if fix
                            v = dime.from_wire(v);
                        end
                        break;
                    elseif state < 0
                        obj.ended = true;
                        if state == -2
                            obj.failure = dime.failure_of(r, obj.function_name);
                        end
                        % The outcome is kept here: the library's stream can go.
                        obj.release();
                        break;
                    elseif toc(t0) >= timeout
                        timedout = true;
                        break;
                    end
                end
            end
            if ~isempty(obj.failure)
                error(obj.failure.identifier, '%s', obj.failure.message);
            end
            if timedout && nargout < 2
                error('dime:timeout', 'no item of ''%s'' came within %g s', ...
                      obj.function_name, timeout);
            end
            varargout{1} = v;
            if nargout > 1
                varargout{2} = ok;
            end
        end
    end

    methods (Access = private)
        function release(obj)
            % Frees the library's stream. Quiet: it runs from delete, also
            % after the connection went away.
            if obj.s ~= 0
                try
                    dime_mex('stream_close', obj.s);
                catch
                    % the MEX file was cleared: nothing is left to free
                end
                obj.s = uint64(0);
            end
        end
    end
end
