function test_install()
% The binding as one folder on the path (scripts/package-matlab.sh makes it:
% the .m files, MEX sources, dime.h and libdime.so, outside the repository):
% the first dime() builds the MEX file there, against the libdime inside,
% with no DIME_LIBRARY set; it is rebuilt when older than the library;
% dime.version() reports matching versions and refuses a library of
% another version; without a C compiler the first use says so.
here = fileparts(mfilename('fullpath'));
repo = fileparts(fileparts(here));
sock = getenv('DIME_SOCK');
cargo = fileread(fullfile(repo, 'Cargo.toml'));
version = regexp(cargo, '(?m)^version = "([^"]+)"', 'tokens', 'once'){1};

folder = [tempname() '-dime-matlab'];
[status, out] = system(sprintf('%s %s %s', fullfile(repo, 'scripts', 'package-matlab.sh'), ...
                               folder, getenv('DIME_LIBRARY')));
dt_check('install package-matlab.sh makes the folder', status == 0, out);
cleanup = onCleanup(@() remove_folder(folder));
rmpath(fullfile(repo, 'matlab'));
addpath(folder);
unsetenv('DIME_LIBRARY');
mexfile = fullfile(folder, 'dime_mex.mex');
dt_check('install no MEX file before first use', ~exist(mexfile, 'file'), 'already there');

% --- first use builds the MEX file, against the folder's own library
try
    d = dime('ipc', sock);
    d.join('install');
    m = magic(4);
    d.send('install', 'm');
    clear m;
    d.wait(5);
    d.sync();
    dt_check('install first use builds dime_mex and round-trips', ...
             exist(mexfile, 'file') == 3 && isequal(m, magic(4)), 'no MEX file or m differs');
    clear d;
catch e
    dt_check('install first use builds dime_mex and round-trips', false, e.message);
end
which_lib = strtrim(fileread(fullfile(folder, 'dime_mex.library')));
dt_check('install built against the folder''s libdime', ...
         strcmp(which_lib, canonicalize_file_name(fullfile(folder, 'libdime.so'))), which_lib);
[~, ldd] = system(sprintf('ldd %s', mexfile));
dt_check('install the MEX file loads the folder''s libdime', ...
         ~isempty(strfind(ldd, fullfile(folder, 'libdime.so'))), ldd);

% --- dime.version()
v = dime.version();
dt_check('install dime.version reports library, binding and mex versions', ...
         strcmp(v.library, version) && strcmp(v.binding, version) && strcmp(v.mex, version) ...
         && strcmp(v.library_path, which_lib), ...
         sprintf('%s/%s/%s, Cargo.toml %s', v.library, v.binding, v.mex, version));

% --- a library newer than the MEX file: the next session's first use rebuilds
before = stat(mexfile).mtime;
pause(1.1);
system(sprintf('touch %s', fullfile(folder, 'libdime.so')));
clear functions;   % as in a new session: dime_mex unloaded, first-use check again
try
    d = dime('ipc', sock);
    clear d;
    dt_check('install a newer library rebuilds dime_mex', stat(mexfile).mtime > before, ...
             'MEX file not rebuilt');
catch e
    dt_check('install a newer library rebuilds dime_mex', false, e.message);
end
clear functions;
before = stat(mexfile).mtime;
d = dime('ipc', sock);
clear d;
dt_check('install an up-to-date MEX file is not rebuilt', stat(mexfile).mtime == before, ...
         'rebuilt');

% --- a binding of another version refuses this libdime
src = fullfile(folder, 'private', 'binding_version.m');
text = fileread(src);
fid = fopen(src, 'w');
fprintf(fid, '%s', strrep(text, ['''' version ''''], '''0.0.0-other'''));
fclose(fid);
clear functions;
try
    dime.version();
    dt_check('install dime.version refuses a version mismatch', false, 'no error');
catch e
    dt_check('install dime.version refuses a version mismatch', ...
             strcmp(e.identifier, 'dime:version') && ~isempty(strfind(e.message, '0.0.0-other')) ...
             && ~isempty(strfind(e.message, ['libdime ' version])), ...
             sprintf('%s: %s', e.identifier, e.message));
end
dt_expect_error('install dime() refuses a version mismatch', @() dime('ipc', sock), 'dime:version');
fid = fopen(src, 'w');
fprintf(fid, '%s', text);
fclose(fid);

% --- no C compiler: the first use says what to install
delete(mexfile);
cc = getenv('CC');
setenv('CC', '/nonexistent/dime-test-cc');
clear functions;
try
    dime('ipc', sock);
    dt_check('install without a compiler: a clear error', false, 'no error');
catch e
    dt_check('install without a compiler: a clear error', ...
             strcmp(e.identifier, 'dime:build') && ~isempty(strfind(e.message, 'no C compiler')) ...
             && ~isempty(strfind(e.message, '/nonexistent/dime-test-cc')), ...
             sprintf('%s: %s', e.identifier, e.message));
end
if isempty(cc)
    unsetenv('CC');
else
    setenv('CC', cc);
end
end

function remove_folder(folder)
confirm_recursive_rmdir(false);
rmdir(folder, 's');
end
