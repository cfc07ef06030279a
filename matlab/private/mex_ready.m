function v = mex_ready()
% MEX_READY  Makes dime_mex usable, once per session: builds it (with
% build_mex) when it is missing, was built against another libdime than
% mex_library chooses, or is older than that library or than its C
% sources; then checks versions. Returns what dime.version() reports:
%   v.binding       this binding's version
%   v.library       the loaded libdime's version
%   v.mex           the dime.h version dime_mex was compiled against
%   v.library_path  the libdime dime_mex was built against
% and raises dime:version (naming both) when libdime's version is not the
% binding's, or dime_mex was compiled against another dime.h.
persistent ready
if ~isempty(ready)
    v = ready;
    return;
end
p = mex_paths();
lib = mex_library(p);
if needs_build(p, lib)
    fprintf('dime: building dime_mex against %s\n', lib);
    clear('dime_mex');   % an old one loaded in this session would stay in use
    build_mex(lib);
end
v.binding = binding_version();
[v.library, v.mex] = dime_mex('version');
v.library_path = lib;
if ~strcmp(v.library, v.binding)
    error('dime:version', ['libdime %s (%s) does not match this MATLAB binding %s (%s): ' ...
          'use the libdime of the same release (set DIME_LIBRARY, or run build_mex(PATH))'], ...
          v.library, lib, v.binding, p.here);
end
if ~strcmp(v.mex, v.library)
    error('dime:version', ['dime_mex was compiled against dime.h %s but libdime is %s: ' ...
          'run build_mex'], v.mex, v.library);
end
ready = v;
end

function yes = needs_build(p, lib)
yes = true;
if ~exist(p.mex, 'file') || ~exist(p.record, 'file') ...
        || ~strcmp(strtrim(fileread(p.record)), lib)
    return;
end
built = modified(p.mex);
inputs = [{lib, fullfile(p.include, 'dime.h')}, ...
          listing(p.here, '*.c'), listing(p.here, '*.h')];
for i = 1:numel(inputs)
    if modified(inputs{i}) > built
        return;
    end
end
yes = false;
end

function t = modified(path)
d = dir(path);
if isempty(d)
    t = Inf;   % missing: a build will say what is wrong
else
    t = d(1).datenum;
end
end

function files = listing(folder, pattern)
d = dir(fullfile(folder, pattern));
files = cellfun(@(n) fullfile(folder, n), {d.name}, 'UniformOutput', false);
end
