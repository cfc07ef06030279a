function lib = mex_library(p, choice)
% MEX_LIBRARY  The libdime to build dime_mex against, as an absolute path.
%
%   choice = ''          $DIME_LIBRARY if set; else the library dime_mex was
%                       last built against, if it still exists; else the
%                       one in this folder (a packaged copy); else the
%                       repository's target/release, then target/debug
%   choice = 'release'   the repository's target/release/libdime.so
%   choice = 'debug'     the repository's target/debug/libdime.so
%   choice = PATH        that file
%
% Raises dime:build naming where it looked when there is none.
if nargin < 2
    choice = '';
end
if any(strcmp(choice, {'release', 'debug'}))
    lib = fullfile(p.repo, 'target', choice, p.libname);
    if ~exist(lib, 'file')
        flag = '';
        if strcmp(choice, 'release')
            flag = ' --release';
        end
        error('dime:build', 'no %s: run `cargo build%s` in %s first', lib, flag, p.repo);
    end
    lib = canonical(lib);
    return;
end
if ~isempty(choice)
    if ~exist(choice, 'file')
        error('dime:build', 'no libdime at %s', choice);
    end
    lib = canonical(choice);
    return;
end
env = getenv('DIME_LIBRARY');
if ~isempty(env)
    if ~exist(env, 'file')
        error('dime:build', 'DIME_LIBRARY=%s does not name a file', env);
    end
    lib = canonical(env);
    return;
end
candidates = {fullfile(p.here, p.libname), ...
              fullfile(p.repo, 'target', 'release', p.libname), ...
              fullfile(p.repo, 'target', 'debug', p.libname)};
if exist(p.record, 'file')
    candidates = [{strtrim(fileread(p.record))}, candidates];
end
for i = 1:numel(candidates)
    if ~isempty(candidates{i}) && exist(candidates{i}, 'file') == 2
        lib = canonical(candidates{i});
        return;
    end
end
error('dime:build', ['cannot find libdime (%s) to build dime_mex against: set ' ...
      'DIME_LIBRARY to its path, put it in %s, or run `cargo build --release` in ' ...
      'the dime repository'], p.libname, p.here);
end

function c = canonical(path)
% The absolute path without symbolic links, so that two names of one file
% compare equal.
if exist('OCTAVE_VERSION', 'builtin')
    c = canonicalize_file_name(path);
elseif usejava('jvm')
    f = java.io.File(path);
    if ~f.isAbsolute()   % java resolves against MATLAB's start folder, not pwd
        f = java.io.File(fullfile(pwd, path));
    end
    c = char(f.getCanonicalPath());
else
    c = path;   % matlab -nojvm: as given (a rebuild at worst)
end
end
