function dt_check_received(got, want, from)
% DT_CHECK_RECEIVED  One check per row {name, value} of WANT: GOT (a struct
% of received variables) must hold NAME with exactly that value.
for i = 1:size(want, 1)
    name = want{i, 1};
    label = ['octave receives ' name ' from ' from];
    if ~isfield(got, name)
        dt_check(label, false, 'not received');
        continue;
    end
    [ok, why] = dt_same(got.(name), want{i, 2}, name);
    dt_check(label, ok, why);
end
end
