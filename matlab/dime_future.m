classdef dime_future < handle
    % DIME_FUTURE  A remote call in flight, from d.call_async.
    %
    %   f = d.call_async('add', struct('x', 1));
    %   ... other work ...
    %   r = f.result();          % wait for the result (Ctrl-C interrupts the
    %                            % wait, not the call)
    %   r = f.result(5);         % dime:timeout if it has not finished in 5 s
    %   [r, err] = f.result();   % no error raised for a failed call
    %   tf = f.done();           % finished (result or error)?
    %   tf = f.wait(5);          % wait up to 5 s; whether it finished
    %   tf = f.cancel();         % withdraw it; false if it had finished
    %
    % result raises the errors of d.call (dime:remoteError,
    % dime:providerLost, dime:noProvider, dime:cancelled, ...), the same
    % every time it is asked. Clearing f frees it without cancelling the
    % call (its result is dropped); closing the connection frees it too
    % (then result raises dime:closed unless it was read before).

    properties (SetAccess = private)
        function_name = ''   % the function called
    end

    properties (Access = private)
        f = uint64(0)        % dime_mex future handle; 0 once the outcome is read
        settled = false      % the outcome is below
        value = []           % the result
        failure = []         % or why there is none (see dime.failure)
    end

    methods
        function obj = dime_future(handle, name)
            % DIME_FUTURE  Made by d.call_async; not called directly.
            if nargin < 2 || ~isa(handle, 'uint64')
                error('dime:argument', 'dime_future objects come from d.call_async');
            end
            obj.f = handle;
            obj.function_name = name;
        end

        function delete(obj)
            % DELETE  Free the future (the call goes on; its result is dropped).
            if obj.f ~= 0
                dime.future_release(obj.f, false);
                obj.f = uint64(0);
            end
        end

        function tf = done(obj)
            % DONE  Whether the call has finished (with a result or an error).
            tf = obj.settled || dime_mex('future_done', obj.f);
        end

        function tf = wait(obj, timeout)
            % WAIT  Wait up to timeout seconds (default: forever) for the
            % call to finish; whether it has.
            if nargin < 2
                timeout = Inf;
            end
            tf = obj.settled || dime.future_wait(obj.f, dime.seconds(timeout));
        end

        function varargout = result(obj, timeout)
            % RESULT  The call's result, waiting for it (timeout in seconds,
            % default forever: dime:timeout if it runs out; the call goes
            % on). [r, err] = f.result(...) returns the failure in err
            % instead of raising it (err = [] on success).
            if nargin < 2
                timeout = Inf;
            end
            timeout = dime.seconds(timeout);
            if ~obj.settled
                if ~dime.future_wait(obj.f, timeout)
                    error('dime:timeout', '''%s'' has not returned within %g s', ...
                          obj.function_name, timeout);
                end
                [ok, r, err] = dime.future_take(obj.f, obj.function_name);
                obj.settled = true;
                if ok
                    obj.value = r;
                else
                    obj.failure = err;
                end
                % The outcome is kept here: the library's copy can go.
                dime.future_release(obj.f, false);
                obj.f = uint64(0);
            end
            if ~isempty(obj.failure) && nargout < 2
                error(obj.failure.identifier, '%s', obj.failure.message);
            end
            varargout{1} = obj.value;
            if nargout > 1
                varargout{2} = obj.failure;
            end
        end

        function tf = cancel(obj)
            % CANCEL  Withdraw the call: one no provider has taken never
            % runs; a running one's result is discarded. Then result raises
            % dime:cancelled. False if the call had already finished.
            tf = ~obj.settled && dime_mex('future_cancel', obj.f);
        end
    end
end
