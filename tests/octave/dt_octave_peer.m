function dt_octave_peer(expr, log)
% DT_OCTAVE_PEER  Run the Octave expression EXPR in a second octave-cli
% in the background (dime.m and these helpers on its path), its output in
% the file LOG (see dt_spawn).
here = fileparts(mfilename('fullpath'));
mdir = fileparts(which('dime'));
dt_spawn(sprintf('octave-cli --no-gui --norc --no-history --quiet --eval "addpath(''%s'', ''%s''); %s"', ...
                 mdir, here, strrep(expr, '"', '\"')), log);
end
