/* same_value(a, b): deep equality of two dime_values through the public
 * accessors only: same kind, same bits for scalars (so NaN equals the same
 * NaN and -0.0 differs from 0.0), same bytes for strings, same class, shape
 * and elements for matrices, and the same items, in order, for lists and
 * maps. Shared by the C tests that read values back from the server. */
#ifndef DIME_TEST_SAME_VALUE_H
#define DIME_TEST_SAME_VALUE_H

#include <string.h>

#include "dime.h"

/* Reads one scalar of C type `type` from a and b with `getter` and
 * compares the bits; returns from the enclosing function. */
#define SAME_SCALAR_(type, getter) \
    do { \
        type x_, y_; \
        memset(&x_, 0, sizeof x_); \
        memset(&y_, 0, sizeof y_); \
        return getter(a, &x_) == DIME_STATUS_OK && getter(b, &y_) == DIME_STATUS_OK && \
               memcmp(&x_, &y_, sizeof x_) == 0; \
    } while (0)

static int same_value(const dime_value *a, const dime_value *b);

static int same_matrix(const dime_value *a, const dime_value *b)
{
    dime_class ca = 0, cb = 0;
    size_t ra = 0, rb = 0, na = 0, nb = 0;
    const size_t *da = NULL, *db = NULL;
    const void *pa = NULL, *pb = NULL;
    if (dime_matrix_class(a, &ca) != DIME_STATUS_OK || dime_matrix_class(b, &cb) != DIME_STATUS_OK ||
        ca != cb)
        return 0;
    if (dime_matrix_rank(a, &ra) != DIME_STATUS_OK || dime_matrix_rank(b, &rb) != DIME_STATUS_OK ||
        ra != rb)
        return 0;
    if (dime_matrix_dims(a, &da) != DIME_STATUS_OK || dime_matrix_dims(b, &db) != DIME_STATUS_OK ||
        (ra > 0 && memcmp(da, db, ra * sizeof *da) != 0))
        return 0;
    if (dime_matrix_data(a, &pa, &na) != DIME_STATUS_OK ||
        dime_matrix_data(b, &pb, &nb) != DIME_STATUS_OK || na != nb)
        return 0;
    return na == 0 || memcmp(pa, pb, na) == 0;
}

static int same_list(const dime_value *a, const dime_value *b)
{
    size_t la = 0, lb = 0, i;
    if (dime_value_list_len(a, &la) != DIME_STATUS_OK ||
        dime_value_list_len(b, &lb) != DIME_STATUS_OK || la != lb)
        return 0;
    for (i = 0; i < la; i++) {
        const dime_value *x = NULL, *y = NULL;
        if (dime_value_list_get(a, i, &x) != DIME_STATUS_OK ||
            dime_value_list_get(b, i, &y) != DIME_STATUS_OK || !same_value(x, y))
            return 0;
    }
    return 1;
}

static int same_map(const dime_value *a, const dime_value *b)
{
    size_t la = 0, lb = 0, i;
    if (dime_value_map_len(a, &la) != DIME_STATUS_OK ||
        dime_value_map_len(b, &lb) != DIME_STATUS_OK || la != lb)
        return 0;
    for (i = 0; i < la; i++) {
        const dime_value *ka = NULL, *kb = NULL, *va = NULL, *vb = NULL;
        if (dime_value_map_key_at(a, i, &ka) != DIME_STATUS_OK ||
            dime_value_map_key_at(b, i, &kb) != DIME_STATUS_OK || !same_value(ka, kb) ||
            dime_value_map_value_at(a, i, &va) != DIME_STATUS_OK ||
            dime_value_map_value_at(b, i, &vb) != DIME_STATUS_OK || !same_value(va, vb))
            return 0;
    }
    return 1;
}

static int same_value(const dime_value *a, const dime_value *b)
{
    dime_kind k = dime_value_kind(a);
    if (a == NULL || b == NULL || k != dime_value_kind(b)) return 0;
    switch (k) {
    case DIME_KIND_NULL: return 1;
    case DIME_KIND_BOOL: SAME_SCALAR_(bool, dime_value_get_bool);
    case DIME_KIND_INT8: SAME_SCALAR_(int8_t, dime_value_get_int8);
    case DIME_KIND_INT16: SAME_SCALAR_(int16_t, dime_value_get_int16);
    case DIME_KIND_INT32: SAME_SCALAR_(int32_t, dime_value_get_int32);
    case DIME_KIND_INT64: SAME_SCALAR_(int64_t, dime_value_get_int64);
    case DIME_KIND_UINT8: SAME_SCALAR_(uint8_t, dime_value_get_uint8);
    case DIME_KIND_UINT16: SAME_SCALAR_(uint16_t, dime_value_get_uint16);
    case DIME_KIND_UINT32: SAME_SCALAR_(uint32_t, dime_value_get_uint32);
    case DIME_KIND_UINT64: SAME_SCALAR_(uint64_t, dime_value_get_uint64);
    case DIME_KIND_SINGLE: SAME_SCALAR_(float, dime_value_get_single);
    case DIME_KIND_DOUBLE: SAME_SCALAR_(double, dime_value_get_double);
    case DIME_KIND_COMPLEX_SINGLE: {
        float p[4] = {0, 0, 0, 0};
        return dime_value_get_complex_single(a, &p[0], &p[1]) == DIME_STATUS_OK &&
               dime_value_get_complex_single(b, &p[2], &p[3]) == DIME_STATUS_OK &&
               memcmp(&p[0], &p[2], 2 * sizeof p[0]) == 0;
    }
    case DIME_KIND_COMPLEX_DOUBLE: {
        double p[4] = {0, 0, 0, 0};
        return dime_value_get_complex_double(a, &p[0], &p[1]) == DIME_STATUS_OK &&
               dime_value_get_complex_double(b, &p[2], &p[3]) == DIME_STATUS_OK &&
               memcmp(&p[0], &p[2], 2 * sizeof p[0]) == 0;
    }
    case DIME_KIND_STRING: {
        const char *sa = NULL, *sb = NULL;
        size_t la = 0, lb = 0;
        return dime_value_get_string(a, &sa, &la) == DIME_STATUS_OK &&
               dime_value_get_string(b, &sb, &lb) == DIME_STATUS_OK && la == lb &&
               (la == 0 || memcmp(sa, sb, la) == 0);
    }
    case DIME_KIND_MATRIX: return same_matrix(a, b);
    case DIME_KIND_LIST: return same_list(a, b);
    case DIME_KIND_MAP: return same_map(a, b);
    case DIME_KIND_INVALID: return 0;
    }
    return 0;
}

/* A new string value from a NUL-terminated literal (NULL on failure). */
static dime_value *str_value(const char *s)
{
    dime_value *v = NULL;
    if (dime_value_new_string(s, strlen(s), &v) != DIME_STATUS_OK) return NULL;
    return v;
}

#endif
