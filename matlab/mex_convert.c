/*
 * mex_convert.c: mxArray <-> dime_value.
 *
 * Conversions (see matlab/README.md for the full table):
 *   []  (0x0 double)            <-> null
 *   logical scalar / array      <-> bool / logical matrix (tag 0x1F)
 *   numeric scalar (1x1)        <-> scalar of its class (complex stays complex)
 *   numeric array, any rank     <-> matrix (column-major, as is; other
 *                                   empties keep class and shape)
 *   char row vector             <-> string (UTF-8; MATLAB's UTF-16 is transcoded)
 *   multi-row char array         -> list of row strings
 *   cell (any shape)             -> list (column-major order); list -> 1xN cell
 *   scalar struct               <-> map (struct when every key is a valid
 *                                   field name; otherwise a marker that
 *                                   dime.m turns into a containers.Map)
 *   struct array                 -> list of maps
 *   marker struct from dime.m    -> map with arbitrary keys (containers.Map)
 * Received rank-0 matrices become 1x1, rank-1 matrices Nx1.
 */
#include "dime_mex.h"

#include <string.h>
#if defined(__linux__)
#include <stdint.h>
#include <sys/mman.h>
#endif

/* ------------------------------------------------ mxArray -> dime_value */

static dime_class class_of(mxClassID id, int complex_)
{
    switch (id) {
    case mxDOUBLE_CLASS: return complex_ ? DIME_CLASS_COMPLEX_DOUBLE : DIME_CLASS_DOUBLE;
    case mxSINGLE_CLASS: return complex_ ? DIME_CLASS_COMPLEX_SINGLE : DIME_CLASS_SINGLE;
    case mxINT8_CLASS: return DIME_CLASS_INT8;
    case mxINT16_CLASS: return DIME_CLASS_INT16;
    case mxINT32_CLASS: return DIME_CLASS_INT32;
    case mxINT64_CLASS: return DIME_CLASS_INT64;
    case mxUINT8_CLASS: return DIME_CLASS_UINT8;
    case mxUINT16_CLASS: return DIME_CLASS_UINT16;
    case mxUINT32_CLASS: return DIME_CLASS_UINT32;
    case mxUINT64_CLASS: return DIME_CLASS_UINT64;
    case mxLOGICAL_CLASS: return DIME_CLASS_LOGICAL;
    default: return 0;
    }
}

static dime_value *scalar_to_dime(const mxArray *a, mxClassID id, int cplx)
{
    const void *p = mxGetData(a);
    if (cplx) {
#if MX_HAS_INTERLEAVED_COMPLEX
        if (id == mxDOUBLE_CLASS) {
            const double *z = (const double *)p;
            return dime_value_new_complex_double(z[0], z[1]);
        } else {
            const float *z = (const float *)p;
            return dime_value_new_complex_single(z[0], z[1]);
        }
#else
        const void *q = mxGetImagData(a);
        if (id == mxDOUBLE_CLASS)
            return dime_value_new_complex_double(*(const double *)p, *(const double *)q);
        return dime_value_new_complex_single(*(const float *)p, *(const float *)q);
#endif
    }
    switch (id) {
    case mxDOUBLE_CLASS: return dime_value_new_double(*(const double *)p);
    case mxSINGLE_CLASS: return dime_value_new_single(*(const float *)p);
    case mxINT8_CLASS: return dime_value_new_int8(*(const int8_t *)p);
    case mxINT16_CLASS: return dime_value_new_int16(*(const int16_t *)p);
    case mxINT32_CLASS: return dime_value_new_int32(*(const int32_t *)p);
    case mxINT64_CLASS: return dime_value_new_int64(*(const int64_t *)p);
    case mxUINT8_CLASS: return dime_value_new_uint8(*(const uint8_t *)p);
    case mxUINT16_CLASS: return dime_value_new_uint16(*(const uint16_t *)p);
    case mxUINT32_CLASS: return dime_value_new_uint32(*(const uint32_t *)p);
    case mxUINT64_CLASS: return dime_value_new_uint64(*(const uint64_t *)p);
    case mxLOGICAL_CLASS: return dime_value_new_bool(*(const mxLogical *)p != 0);
    default: return NULL;
    }
}

/* A numeric or logical array as a matrix that borrows the mxArray's
 * elements (no copy here; the library reads them while sending). Complex
 * data that MATLAB/Octave keeps split (non-interleaved API) is interleaved
 * once into an mxMalloc'd buffer the MEX layer frees on return. */
static dime_value *matrix_to_dime(const mxArray *a, dime_class cls, conv_err *e)
{
    mwSize nd = mxGetNumberOfDimensions(a), i;
    const mwSize *md = mxGetDimensions(a);
    size_t dims[64], n = mxGetNumberOfElements(a);
    const void *data = mxGetData(a);
    dime_value *v = NULL;
    dime_status st;
    if (nd > 64) {
        conv_fail(e, "type", "arrays of more than 64 dimensions are not supported");
        return NULL;
    }
    for (i = 0; i < nd; i++)
        dims[i] = (size_t)md[i];
#if !MX_HAS_INTERLEAVED_COMPLEX
    if (cls == DIME_CLASS_COMPLEX_DOUBLE && n > 0) {
        const double *re = (const double *)data, *im = (const double *)mxGetImagData(a);
        double *z = (double *)mxMalloc(2 * n * sizeof(double));
        size_t k;
        for (k = 0; k < n; k++) {
            z[2 * k] = re[k];
            z[2 * k + 1] = im[k];
        }
        data = z;
    } else if (cls == DIME_CLASS_COMPLEX_SINGLE && n > 0) {
        const float *re = (const float *)data, *im = (const float *)mxGetImagData(a);
        float *z = (float *)mxMalloc(2 * n * sizeof(float));
        size_t k;
        for (k = 0; k < n; k++) {
            z[2 * k] = re[k];
            z[2 * k + 1] = im[k];
        }
        data = z;
    }
#endif
    if (n == 0)
        data = NULL;
    st = dime_value_new_matrix_borrowed(cls, (size_t)nd, dims, data, &v);
    if (st != DIME_STATUS_OK) {
        conv_fail(e, status_kind(st), "%s", dime_last_error());
        return NULL;
    }
    return v;
}

static dime_value *string_to_dime(const char *s, size_t len, conv_err *e)
{
    dime_value *v = NULL;
    dime_status st = dime_value_new_string(s, len, &v);
    if (st != DIME_STATUS_OK) {
        if (st == DIME_STATUS_INVALID_ARGUMENT)
            conv_fail(e, "type",
                      "char array is not valid UTF-8 (Octave chars are UTF-8 bytes; "
                      "send binary data as uint8)");
        else
            conv_fail(e, status_kind(st), "%s", dime_last_error());
        return NULL;
    }
    return v;
}

static dime_value *char_to_dime(const mxArray *a, conv_err *e)
{
    size_t m = mxGetM(a), n = mxGetN(a), len, r;
    const mxChar *c = mxGetChars(a);
    char *s;
    dime_value *list, *item;
    if (mxGetNumberOfDimensions(a) > 2) {
        conv_fail(e, "type", "char arrays of more than 2 dimensions are not supported");
        return NULL;
    }
    if (m <= 1) {
        s = chars_to_utf8(c, m ? n : 0, 1, &len);
        item = string_to_dime(s, len, e);
        mxFree(s);
        return item;
    }
    /* several rows: a list of row strings */
    list = dime_value_new_list();
    for (r = 0; r < m; r++) {
        s = chars_to_utf8(c + r, n, m, &len);
        item = string_to_dime(s, len, e);
        mxFree(s);
        if (!item || dime_value_list_append(list, item) != DIME_STATUS_OK) {
            dime_value_free(item);
            dime_value_free(list);
            conv_fail(e, "internal", "could not build a list");
            return NULL;
        }
    }
    return list;
}

static int append_or_free(dime_value *list, dime_value *item, conv_err *e)
{
    if (!item)
        return 0;
    if (dime_value_list_append(list, item) != DIME_STATUS_OK) {
        conv_fail(e, "internal", "%s", dime_last_error());
        dime_value_free(item);
        return 0;
    }
    return 1;
}

static dime_value *cell_to_dime(const mxArray *a, conv_err *e, int depth)
{
    size_t n = mxGetNumberOfElements(a), i;
    dime_value *list = dime_value_new_list();
    for (i = 0; i < n; i++) {
        const mxArray *x = mxGetCell(a, i);
        dime_value *item = x ? to_dime(x, e, depth + 1) : dime_value_new_null();
        if (!append_or_free(list, item, e)) {
            dime_value_free(list);
            return NULL;
        }
    }
    return list;
}

/* One element of a struct array as a map. */
static dime_value *struct_elem_to_dime(const mxArray *a, size_t idx, conv_err *e, int depth)
{
    int nf = mxGetNumberOfFields(a), f;
    dime_value *map = dime_value_new_map();
    for (f = 0; f < nf; f++) {
        const mxArray *x = mxGetFieldByNumber(a, idx, f);
        dime_value *v = x ? to_dime(x, e, depth + 1) : dime_value_new_null();
        if (!v) {
            dime_value_free(map);
            return NULL;
        }
        if (dime_value_map_set(map, mxGetFieldNameByNumber(a, f), v) != DIME_STATUS_OK) {
            conv_fail(e, "internal", "%s", dime_last_error());
            dime_value_free(v);
            dime_value_free(map);
            return NULL;
        }
    }
    return map;
}

/* The marker dime.m makes of a containers.Map: {keys, values}. */
static dime_value *marker_to_dime(const mxArray *m, conv_err *e, int depth)
{
    const mxArray *keys, *vals;
    dime_value *map;
    size_t n, i;
    if (!m || !mxIsCell(m) || mxGetNumberOfElements(m) != 2
        || !(keys = mxGetCell(m, 0)) || !(vals = mxGetCell(m, 1))
        || !mxIsCell(keys) || !mxIsCell(vals)
        || mxGetNumberOfElements(keys) != mxGetNumberOfElements(vals)) {
        conv_fail(e, "argument", "malformed %s marker", MAP_MARKER);
        return NULL;
    }
    n = mxGetNumberOfElements(keys);
    map = dime_value_new_map();
    for (i = 0; i < n; i++) {
        const mxArray *kx = mxGetCell(keys, i), *vx = mxGetCell(vals, i);
        dime_value *k = kx ? to_dime(kx, e, depth + 1) : dime_value_new_null();
        dime_value *v = k ? (vx ? to_dime(vx, e, depth + 1) : dime_value_new_null()) : NULL;
        if (!k || !v || dime_value_map_set_value(map, k, v) != DIME_STATUS_OK) {
            if (k && v)
                conv_fail(e, "internal", "%s", dime_last_error());
            dime_value_free(k);
            dime_value_free(v);
            dime_value_free(map);
            return NULL;
        }
    }
    return map;
}

static dime_value *struct_to_dime(const mxArray *a, conv_err *e, int depth)
{
    size_t n = mxGetNumberOfElements(a), i;
    dime_value *list;
    if (n == 1) {
        if (mxGetNumberOfFields(a) == 1 && strcmp(mxGetFieldNameByNumber(a, 0), MAP_MARKER) == 0)
            return marker_to_dime(mxGetFieldByNumber(a, 0, 0), e, depth);
        return struct_elem_to_dime(a, 0, e, depth);
    }
    list = dime_value_new_list();
    for (i = 0; i < n; i++) {
        if (!append_or_free(list, struct_elem_to_dime(a, i, e, depth), e)) {
            dime_value_free(list);
            return NULL;
        }
    }
    return list;
}

/* Converts any supported mxArray; NULL (with *e set) otherwise. */
dime_value *to_dime(const mxArray *a, conv_err *e, int depth)
{
    mxClassID id = mxGetClassID(a);
    int cplx;
    dime_class cls;
    if (depth > 200) {
        conv_fail(e, "type", "value nested more than 200 levels deep");
        return NULL;
    }
    switch (id) {
    case mxCHAR_CLASS: return char_to_dime(a, e);
    case mxCELL_CLASS: return cell_to_dime(a, e, depth);
    case mxSTRUCT_CLASS: return struct_to_dime(a, e, depth);
    default: break;
    }
    cplx = mxIsComplex(a) ? 1 : 0;
    cls = class_of(id, cplx);
    if (cls == 0 || (cplx && id != mxDOUBLE_CLASS && id != mxSINGLE_CLASS)) {
        conv_fail(e, "type", "cannot send a value of class %s%s", cplx ? "complex " : "",
                  mxGetClassName(a));
        return NULL;
    }
    if (mxIsSparse(a)) {
        conv_fail(e, "type", "cannot send a sparse %s matrix (use full())", mxGetClassName(a));
        return NULL;
    }
    if (id == mxDOUBLE_CLASS && mxGetNumberOfDimensions(a) == 2 && mxGetM(a) == 0
        && mxGetN(a) == 0)
        return dime_value_new_null(); /* [] */
    if (mxGetNumberOfElements(a) == 1)
        return scalar_to_dime(a, id, cplx);
    return matrix_to_dime(a, cls, e);
}

/* Converts argument `a` into a value `call` owns, raising dime:<kind>
 * naming `name` on failure. */
dime_value *value_arg(mex_call *call, const mxArray *a, const char *name)
{
    conv_err e;
    dime_value *v;
    conv_err_init(&e);
    v = to_dime(a, &e, 0);
    if (!v) {
        if (!e.kind)
            conv_fail(&e, "internal", "conversion failed");
        if (name)
            fail(e.kind, "variable '%s': %s", name, e.msg);
        fail(e.kind, "%s", e.msg);
    }
    return mex_call_own(call, v);
}

/* ------------------------------------------------ dime_value -> mxArray */

static mxClassID mx_class_of(dime_class cls, int *cplx)
{
    *cplx = 0;
    switch (cls) {
    case DIME_CLASS_INT8: return mxINT8_CLASS;
    case DIME_CLASS_INT16: return mxINT16_CLASS;
    case DIME_CLASS_INT32: return mxINT32_CLASS;
    case DIME_CLASS_INT64: return mxINT64_CLASS;
    case DIME_CLASS_UINT8: return mxUINT8_CLASS;
    case DIME_CLASS_UINT16: return mxUINT16_CLASS;
    case DIME_CLASS_UINT32: return mxUINT32_CLASS;
    case DIME_CLASS_UINT64: return mxUINT64_CLASS;
    case DIME_CLASS_SINGLE: return mxSINGLE_CLASS;
    case DIME_CLASS_DOUBLE: return mxDOUBLE_CLASS;
    case DIME_CLASS_COMPLEX_SINGLE: *cplx = 1; return mxSINGLE_CLASS;
    case DIME_CLASS_COMPLEX_DOUBLE: *cplx = 1; return mxDOUBLE_CLASS;
    case DIME_CLASS_LOGICAL: return mxLOGICAL_CLASS;
    default: return mxUNKNOWN_CLASS;
    }
}

#if NARROWS_ZERO_IMAG
/* complex(re, im) through the interpreter: an array Octave keeps complex
 * even when im is all zero. Consumes re and im. */
static mxArray *keep_complex(mxArray *re, mxArray *im)
{
    mxArray *in[2], *out = NULL;
    in[0] = re;
    in[1] = im;
    if (mexCallMATLAB(1, &out, 2, in, "complex") != 0 || !out)
        fail("internal", "complex() failed");
    mxDestroyArray(re);
    mxDestroyArray(im);
    return out;
}
#endif

/* A complex array of class `id` and shape `dims` from interleaved (re, im)
 * elements: one copy (MATLAB, interleaved API) or one de-interleaving pass
 * (Octave's split storage). */
static mxArray *complex_to_mx(mxClassID id, mwSize nd, const mwSize *dims, const void *src,
                              size_t n)
{
    size_t esz = (id == mxDOUBLE_CLASS) ? sizeof(double) : sizeof(float);
#if MX_HAS_INTERLEAVED_COMPLEX
    mxArray *a = mxCreateNumericArray(nd, dims, id, mxCOMPLEX);
    if (n)
        memcpy(mxGetData(a), src, 2 * n * esz);
    return a;
#else
    size_t k;
    int all_zero = 1;
    mxArray *a = mxCreateNumericArray(nd, dims, id, mxCOMPLEX);
    if (id == mxDOUBLE_CLASS) {
        const double *z = (const double *)src;
        double *re = (double *)mxGetData(a), *im = (double *)mxGetImagData(a);
        for (k = 0; k < n; k++) {
            re[k] = z[2 * k];
            im[k] = z[2 * k + 1];
            if (im[k] != 0) /* -0.0 counts: Octave narrows it too */
                all_zero = 0;
        }
    } else {
        const float *z = (const float *)src;
        float *re = (float *)mxGetData(a), *im = (float *)mxGetImagData(a);
        for (k = 0; k < n; k++) {
            re[k] = z[2 * k];
            im[k] = z[2 * k + 1];
            if (im[k] != 0) /* -0.0 counts: Octave narrows it too */
                all_zero = 0;
        }
    }
    (void)esz;
#if NARROWS_ZERO_IMAG
    if (all_zero) {
        /* Rebuild as complex(re, im) so Octave does not narrow it. */
        mxArray *re = mxCreateNumericArray(nd, dims, id, mxREAL);
        mxArray *im = mxCreateNumericArray(nd, dims, id, mxREAL);
        if (n) {
            memcpy(mxGetData(re), mxGetData(a), n * esz);
            memcpy(mxGetData(im), mxGetImagData(a), n * esz);
        }
        mxDestroyArray(a);
        return keep_complex(re, im);
    }
#else
    (void)all_zero;
#endif
    return a;
#endif
}

/* A fresh array's pages are faulted in by the copy into it, one per 4 KiB;
 * for large arrays, ask Linux for 2 MiB pages instead (a hint: ignored
 * where transparent huge pages are off). */
static void prefer_huge_pages(void *data, size_t nbytes)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t start = ((uintptr_t)data + huge - 1) & ~(huge - 1);
    uintptr_t end = ((uintptr_t)data + nbytes) & ~(huge - 1);
    if (nbytes >= ((size_t)64 << 20) && end > start)
        madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
    (void)data, (void)nbytes;
#endif
}

static mxArray *matrix_to_mx(const dime_value *v)
{
    dime_class cls = 0;
    size_t rank = 0, n = 0, nbytes = 0, i;
    const size_t *dims = NULL;
    const void *data = NULL;
    mwSize md[256];
    mwSize nd;
    mxClassID id;
    int cplx;
    mxArray *a;
    CHECK(dime_matrix_class(v, &cls), "matrix");
    CHECK(dime_matrix_rank(v, &rank), "matrix");
    if (rank > 0)
        CHECK(dime_matrix_dims(v, &dims), "matrix");
    CHECK(dime_matrix_numel(v, &n), "matrix");
    if (rank == 0) {
        md[0] = md[1] = 1;
        nd = 2;
    } else if (rank == 1) {
        md[0] = (mwSize)dims[0]; /* rank 1 -> Nx1 (DiME2 rule) */
        md[1] = 1;
        nd = 2;
    } else {
        for (i = 0; i < rank && i < 256; i++)
            md[i] = (mwSize)dims[i];
        nd = (mwSize)rank;
    }
    id = mx_class_of(cls, &cplx);
    if (id == mxUNKNOWN_CLASS)
        fail("codec", "received a matrix of unknown class %u", (unsigned)cls);
    if (cplx) {
        /* Column-major, interleaved (transposed once if it came row-major). */
        CHECK(dime_matrix_data(v, &data, &nbytes), "matrix");
        return complex_to_mx(id, nd, md, data, n);
    }
    if (id == mxLOGICAL_CLASS)
        a = mxCreateLogicalArray(nd, md);
    else
        a = mxCreateUninitNumericArray(nd, md, id, mxREAL);
    nbytes = n * dime_class_size(cls);
    prefer_huge_pages(mxGetData(a), nbytes);
    /* The one copy: a plain copy, or one cache-blocked transpose when the
     * sender's array travelled row-major (dimeb_layout). */
    CHECK(dime_matrix_copy_column_major(v, mxGetData(a), nbytes), "matrix");
    return a;
}

static mxArray *num_scalar(mxClassID id, const void *x, size_t size)
{
    mxArray *a = mxCreateNumericMatrix(1, 1, id, mxREAL);
    memcpy(mxGetData(a), x, size);
    return a;
}

static mxArray *complex_scalar(mxClassID id, double re, double im)
{
    mwSize dims[2] = {1, 1};
    if (id == mxDOUBLE_CLASS) {
        double z[2];
        z[0] = re;
        z[1] = im;
        return complex_to_mx(id, 2, dims, z, 1);
    } else {
        float z[2];
        z[0] = (float)re;
        z[1] = (float)im;
        return complex_to_mx(id, 2, dims, z, 1);
    }
}

static int valid_field_name(const char *s, size_t len)
{
    size_t i;
    if (len == 0 || len > 63)
        return 0;
    if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
        return 0;
    for (i = 1; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
              || c == '_'))
            return 0;
    }
    /* `s` is not NUL-terminated (dime_value_get_string): compare lengths,
     * then bytes; strcmp would read past the key (issue 21). */
    return !(len == sizeof MAP_MARKER - 1 && memcmp(s, MAP_MARKER, len) == 0);
}

static mxArray *map_to_mx(mex_call *call, const dime_value *v)
{
    size_t n = 0, i, j;
    int as_struct = 1;
    mxArray *s, *keys, *vals, *pair;
    CHECK(dime_value_map_len(v, &n), "map");
    /* A struct if every key is a distinct valid field name. */
    for (i = 0; i < n && as_struct; i++) {
        const dime_value *k = NULL;
        const char *ks;
        size_t kl;
        CHECK(dime_value_map_key_at(v, i, &k), "map");
        if (dime_value_kind(k) != DIME_KIND_STRING
            || dime_value_get_string(k, &ks, &kl) != DIME_STATUS_OK
            || memchr(ks, 0, kl) || !valid_field_name(ks, kl)) {
            as_struct = 0;
            break;
        }
        for (j = 0; j < i; j++) {
            const dime_value *k2 = NULL;
            const char *ks2;
            size_t kl2;
            CHECK(dime_value_map_key_at(v, j, &k2), "map");
            CHECK(dime_value_get_string(k2, &ks2, &kl2), "map");
            if (kl2 == kl && memcmp(ks, ks2, kl) == 0)
                as_struct = 0;
        }
    }
    if (as_struct) {
        s = mxCreateStructMatrix(1, 1, 0, NULL);
        for (i = 0; i < n; i++) {
            const dime_value *k = NULL, *x = NULL;
            const char *ks;
            size_t kl;
            char name[64];
            int f;
            CHECK(dime_value_map_key_at(v, i, &k), "map");
            CHECK(dime_value_map_value_at(v, i, &x), "map");
            CHECK(dime_value_get_string(k, &ks, &kl), "map");
            memcpy(name, ks, kl);
            name[kl] = 0;
            f = mxAddField(s, name);
            if (f < 0)
                fail("internal", "could not add field '%s'", name);
            mxSetFieldByNumber(s, 0, f, from_dime(call, x));
        }
        return s;
    }
    /* Otherwise the marker dime.m turns into a containers.Map. */
    keys = mxCreateCellMatrix(1, n);
    vals = mxCreateCellMatrix(1, n);
    for (i = 0; i < n; i++) {
        const dime_value *k = NULL, *x = NULL;
        CHECK(dime_value_map_key_at(v, i, &k), "map");
        CHECK(dime_value_map_value_at(v, i, &x), "map");
        mxSetCell(keys, i, from_dime(call, k));
        mxSetCell(vals, i, from_dime(call, x));
    }
    pair = mxCreateCellMatrix(1, 2);
    mxSetCell(pair, 0, keys);
    mxSetCell(pair, 1, vals);
    {
        const char *fields[1];
        fields[0] = MAP_MARKER;
        s = mxCreateStructMatrix(1, 1, 1, fields);
    }
    mxSetFieldByNumber(s, 0, 0, pair);
    call->has_marker = 1;
    return s;
}

mxArray *from_dime(mex_call *call, const dime_value *v)
{
    switch (dime_value_kind(v)) {
    case DIME_KIND_NULL: return mxCreateDoubleMatrix(0, 0, mxREAL);
    case DIME_KIND_BOOL: {
        bool b = false;
        CHECK(dime_value_get_bool(v, &b), "bool");
        return mxCreateLogicalScalar(b);
    }
#define SCALAR(KIND, CTYPE, GETTER, MXID)                                      \
    case KIND: {                                                               \
        CTYPE x;                                                               \
        CHECK(GETTER(v, &x), #CTYPE);                                          \
        return num_scalar(MXID, &x, sizeof x);                                 \
    }
        SCALAR(DIME_KIND_INT8, int8_t, dime_value_get_int8, mxINT8_CLASS)
        SCALAR(DIME_KIND_INT16, int16_t, dime_value_get_int16, mxINT16_CLASS)
        SCALAR(DIME_KIND_INT32, int32_t, dime_value_get_int32, mxINT32_CLASS)
        SCALAR(DIME_KIND_INT64, int64_t, dime_value_get_int64, mxINT64_CLASS)
        SCALAR(DIME_KIND_UINT8, uint8_t, dime_value_get_uint8, mxUINT8_CLASS)
        SCALAR(DIME_KIND_UINT16, uint16_t, dime_value_get_uint16, mxUINT16_CLASS)
        SCALAR(DIME_KIND_UINT32, uint32_t, dime_value_get_uint32, mxUINT32_CLASS)
        SCALAR(DIME_KIND_UINT64, uint64_t, dime_value_get_uint64, mxUINT64_CLASS)
        SCALAR(DIME_KIND_SINGLE, float, dime_value_get_single, mxSINGLE_CLASS)
        SCALAR(DIME_KIND_DOUBLE, double, dime_value_get_double, mxDOUBLE_CLASS)
#undef SCALAR
    case DIME_KIND_COMPLEX_SINGLE: {
        float re, im;
        CHECK(dime_value_get_complex_single(v, &re, &im), "complex");
        return complex_scalar(mxSINGLE_CLASS, re, im);
    }
    case DIME_KIND_COMPLEX_DOUBLE: {
        double re, im;
        CHECK(dime_value_get_complex_double(v, &re, &im), "complex");
        return complex_scalar(mxDOUBLE_CLASS, re, im);
    }
    case DIME_KIND_MATRIX: return matrix_to_mx(v);
    case DIME_KIND_STRING: {
        const char *s = NULL;
        size_t len = 0;
        CHECK(dime_value_get_string(v, &s, &len), "string");
        return utf8_to_mx(s, len);
    }
    case DIME_KIND_LIST: {
        size_t n = 0, i;
        mxArray *c;
        CHECK(dime_value_list_len(v, &n), "list");
        c = n ? mxCreateCellMatrix(1, n) : mxCreateCellMatrix(0, 0); /* [] -> {} */
        for (i = 0; i < n; i++) {
            const dime_value *x = NULL;
            CHECK(dime_value_list_get(v, i, &x), "list");
            mxSetCell(c, i, from_dime(call, x));
        }
        return c;
    }
    case DIME_KIND_MAP: return map_to_mx(call, v);
    default: fail("codec", "received a value of unknown kind %d", (int)dime_value_kind(v));
    }
    return NULL;
}

