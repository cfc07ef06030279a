function build_mex(profile)
% BUILD_MEX  Build dime_mex, the MEX file behind dime.m, against libdime.
%
%   build_mex              % link target/release/libdime.so if built, else target/debug
%   build_mex('debug')     % link target/debug/libdime.so
%   build_mex('release')   % link target/release/libdime.so
%
% Build the library first (`cargo build --release` in the repository).
% Works in GNU Octave (mkoctfile --mex, writes dime_mex.mex) and in MATLAB
% (mex -R2018a, writes dime_mex.mexa64). The MEX file links the shared
% library with an rpath, so it loads without LD_LIBRARY_PATH; rebuild it if
% the repository moves. Linux only for now (libdime.so).

here = fileparts(mfilename('fullpath'));
repo = fileparts(here);
if nargin < 1 || isempty(profile)
    if exist(fullfile(repo, 'target', 'release', 'libdime.so'), 'file')
        profile = 'release';
    else
        profile = 'debug';
    end
end
libdir = fullfile(repo, 'target', profile);
if ~exist(fullfile(libdir, 'libdime.so'), 'file')
    flag = '';
    if strcmp(profile, 'release')
        flag = ' --release';
    end
    error('dime:build', 'no %s: run `cargo build%s` in %s first', ...
          fullfile(libdir, 'libdime.so'), flag, repo);
end
inc = fullfile(repo, 'include');
% dime_mex.c (mexFunction) and the files it is split into by job; see
% dime_mex.h. Add a new .c file here, used by both branches below.
src = fullfile(here, {'dime_mex.c', 'mex_errors.c', 'mex_handles.c', 'mex_text.c', ...
                      'mex_convert.c', 'mex_commands.c', 'mex_rpc.c'});

if exist('OCTAVE_VERSION', 'builtin')
    % Octave's interleaved-complex MEX API (-R2018a) corrupts memory when
    % creating complex arrays in Octave 7, so Octave uses the split API.
    [out, status] = mkoctfile('--mex', '-DDIME_OCTAVE', ['-I' inc], ...
                              ['-L' libdir], '-ldime', ['-Wl,-rpath,' libdir], ...
                              '-o', fullfile(here, 'dime_mex.mex'), src{:});
    if status ~= 0
        error('dime:build', 'mkoctfile failed:\n%s', out);
    end
    if ~isempty(strtrim(out))
        disp(out);
    end
else
    mex('-R2018a', ['-I' inc], ['-L' libdir], '-ldime', ...
        ['LDFLAGS=$LDFLAGS -Wl,-rpath,' libdir], '-outdir', here, '-output', 'dime_mex', ...
        src{:});
end
fprintf('dime_mex built against %s\n', fullfile(libdir, 'libdime.so'));
end
