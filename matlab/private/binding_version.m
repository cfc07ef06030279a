function v = binding_version()
% BINDING_VERSION  The version of this MATLAB binding (dime.m and the MEX
% sources beside it). It is libdime's version (Cargo.toml) of the same
% release, and dime.version() refuses a library of another version;
% tests/octave/test_install.m checks the two agree.
v = '0.1.0';
end
