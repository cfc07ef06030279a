function p = mex_paths()
% MEX_PATHS  Where dime_mex and what it is built from are:
%   p.here     this binding's folder (the one added to the path)
%   p.repo     the repository around it, when it sits in one
%   p.mex      the MEX file (dime_mex.mex in Octave, dime_mex.<mexext> in MATLAB)
%   p.record   the file naming the libdime the MEX file was last built against
%   p.include  the folder with dime.h: this folder in a packaged copy
%              (scripts/package-matlab.sh), else the repository's include/
%   p.libname  the library's file name on this platform
here = fileparts(fileparts(mfilename('fullpath')));
p.here = here;
p.repo = fileparts(here);
if exist('OCTAVE_VERSION', 'builtin')
    p.mex = fullfile(here, 'dime_mex.mex');
else
    p.mex = fullfile(here, ['dime_mex.' mexext()]);
end
p.record = fullfile(here, 'dime_mex.library');
if exist(fullfile(here, 'dime.h'), 'file')
    p.include = here;
else
    p.include = fullfile(p.repo, 'include');
end
if ismac()
    p.libname = 'libdime.dylib';
else
    p.libname = 'libdime.so';
end
end
