function s = dt_describe(v)
% DT_DESCRIBE  A one-line rendering of any value, for failure messages.
try
    s = strtrim(evalc('disp(v)'));
catch
    s = class(v);
end
end
