function build_mex(choice)
% BUILD_MEX  Build dime_mex, the MEX file behind dime.m, against libdime.
%
%   build_mex              % the libdime dime.m would use (below)
%   build_mex('release')   % the repository's target/release/libdime.so
%   build_mex('debug')     % the repository's target/debug/libdime.so
%   build_mex(path)        % the libdime.so at path
%
% dime.m runs this itself on first use when dime_mex is missing or older
% than its library or C sources, so call it only to choose another
% library. The library dime.m uses is $DIME_LIBRARY if set, else the one
% dime_mex was last built against, else libdime.so in this folder (a
% packaged copy, scripts/package-matlab.sh), else the repository's
% target/release, then target/debug (`cargo build --release` builds it).
% Works in GNU Octave (mkoctfile --mex, writes dime_mex.mex) and in MATLAB
% (mex -R2018a, writes dime_mex.mexa64), and needs a C compiler. The MEX
% file links the library with an rpath, so it loads without
% LD_LIBRARY_PATH; it is rebuilt by itself if the library moves. Linux only
% for now (libdime.so).

if nargin < 1
    choice = '';
end
p = mex_paths();
here = p.here;
lib = mex_library(p, choice);
libdir = fileparts(lib);
inc = p.include;
check_compiler();
% dime_mex.c (mexFunction) and the files it is split into by job; see
% dime_mex.h. Add a new .c file here, used by both branches below.
src = fullfile(here, {'dime_mex.c', 'mex_errors.c', 'mex_handles.c', 'mex_text.c', ...
                      'mex_convert.c', 'mex_commands.c', 'mex_rpc.c', 'mex_stream.c'});

% A failed build leaves no record, so the next use tries again.
if exist(p.record, 'file')
    delete(p.record);
end
if exist('OCTAVE_VERSION', 'builtin')
    % Octave's interleaved-complex MEX API (-R2018a) corrupts memory when
    % creating complex arrays in Octave 7, so Octave uses the split API.
    [out, status] = mkoctfile('--mex', '-DDIME_OCTAVE', ['-I' inc], ...
                              ['-L' libdir], '-ldime', ['-Wl,-rpath,' libdir], ...
                              '-o', p.mex, src{:});
    if status ~= 0
        error('dime:build', ['mkoctfile could not build dime_mex (is liboctave-dev, ' ...
              'with mex.h, installed?):\n%s'], out);
    end
    if ~isempty(strtrim(out))
        disp(out);
    end
else
    mex('-R2018a', ['-I' inc], ['-L' libdir], '-ldime', ...
        ['LDFLAGS=$LDFLAGS -Wl,-rpath,' libdir], '-outdir', here, '-output', 'dime_mex', ...
        src{:});
end
fid = fopen(p.record, 'w');
if fid < 0
    error('dime:build', 'cannot write %s', p.record);
end
fprintf(fid, '%s\n', lib);
fclose(fid);
fprintf('dime_mex built against %s\n', lib);
end

function check_compiler()
% Raises dime:build saying what to install when there is no C compiler.
if exist('OCTAVE_VERSION', 'builtin')
    cc = strtrim(mkoctfile('-p', 'CC'));
    words = strsplit(cc, ' ');
    [status, ~] = system(sprintf('command -v ''%s'' >/dev/null 2>&1', words{1}));
    if isempty(cc) || status ~= 0
        error('dime:build', ['no C compiler found to build dime_mex, the MEX file ' ...
              'behind dime.m (mkoctfile uses ''%s''): install one (Debian: apt-get ' ...
              'install gcc liboctave-dev), then use dime again or run build_mex'], cc);
    end
else
    if isempty(mex.getCompilerConfigurations('C', 'Selected'))
        error('dime:build', ['no C compiler found to build dime_mex, the MEX file ' ...
              'behind dime.m: install a supported one and select it with ' ...
              '`mex -setup C`, then use dime again or run build_mex']);
    end
end
end
