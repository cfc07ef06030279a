function dt_expect_error(name, fn, id)
% DT_EXPECT_ERROR  Check that calling fn() raises an error with identifier id.
try
    fn();
    dt_check(name, false, sprintf('no error (expected %s)', id));
catch e
    dt_check(name, strcmp(e.identifier, id), ...
             sprintf('raised %s "%s", expected %s', e.identifier, e.message, id));
end
end
