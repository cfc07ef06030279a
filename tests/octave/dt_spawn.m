function dt_spawn(cmd, log)
% DT_SPAWN  Start the shell command CMD in the background, its output in
% the file LOG, without the AddressSanitizer preload of the test itself
% (a peer is not what is under test) and killed after 150 s at the latest
% (so a test that fails half-way leaves nothing running for long).
system(sprintf('env -u LD_PRELOAD timeout 150 %s > "%s" 2>&1 &', cmd, log));
end
