function s = dt_read_log(path)
% DT_READ_LOG  The text of a peer's log file, for failure messages; a note
% instead when there is none.
try
    s = fileread(path);
catch
    s = '(no log)';
end
end
