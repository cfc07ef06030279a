// dime.h must compile as C++ too (cbindgen's cpp_compat wraps the
// declarations in extern "C"); this also links and calls one function.
#include "dime.h"

#include <cstdio>
#include <cstring>

int main()
{
    dime_value *v = dime_value_new_double(2.5);
    double x = 0;
    bool ok = dime_value_get_double(v, &x) == DIME_STATUS_OK && x == 2.5 &&
              dime_value_kind(v) == DIME_KIND_DOUBLE &&
              std::strcmp(dime_version(), DIME_VERSION_STRING) == 0;
    dime_value_free(v);
    std::printf("%s - C++ build of dime.h\n", ok ? "ok 1" : "not ok 1");
    return ok ? 0 : 1;
}
