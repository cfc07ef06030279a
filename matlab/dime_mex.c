/*
 * dime_mex.c: the one MEX file behind matlab/dime.m.
 *
 * A thin C client of include/dime.h (libdime): it converts between
 * mxArrays and dime_values and calls the library; it knows nothing of the
 * wire protocol. Build it with matlab/build_mex.m (MATLAB or Octave) or
 * matlab/build.sh (Octave, from a shell).
 *
 *   v     = dime_mex('version')
 *   h     = dime_mex('connect', address)          % uint64 handle
 *           dime_mex('close', h)                  % idempotent
 *           dime_mex('join', h, group, ...)       % or a cellstr
 *           dime_mex('leave', h, group, ...)
 *           dime_mex('send', h, group, name1, val1, name2, val2, ...)
 *           dime_mex('broadcast', h, name1, val1, ...)
 *   [names, values, fix] = dime_mex('sync', h, n) % 1xK cells, 1xK logical
 *   n     = dime_mex('wait', h, timeout_ms)       % negative / Inf: forever
 *   g     = dime_mex('devices', h)                % 1xN cell of char
 *   y     = dime_mex('convert', x)                % mx -> dime -> mx, no server
 *   k     = dime_mex('open_count')                % open connections
 *   ...   = dime_mex('share_<op>', h, share, ...)  % shared dictionaries
 *   ...   = dime_mex('ts_<op>', h, space, ...)     % tuple spaces
 *           (see share_cmd and ts_cmd below; dime.m wraps them)
 *
 * Every failure raises mexErrMsgIdAndTxt("dime:<kind>", library message),
 * <kind> derived from the dime_status (see status_kind). Values are
 * converted completely before anything is sent, so a value that cannot be
 * sent (a function handle, an object) raises dime:type and sends nothing;
 * the connection stays usable.
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

#include "mex.h"
#include "dime.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The field of the 1x1 struct standing for a map whose keys are not all
 * valid field names (containers.Map): a 1x2 cell {keys, values}, each a
 * 1xN cell. dime.m builds it before sending and resolves it after sync. */
#define MAP_MARKER "dime__containers_Map__"

/* Octave's MEX layer narrows a returned complex array whose imaginary part
 * is all zero to a real one; MATLAB does not. Under Octave we build such
 * arrays with the interpreter's complex(), which keeps them complex. */
#if defined(DIME_OCTAVE)
#define NARROWS_ZERO_IMAG 1
#else
#define NARROWS_ZERO_IMAG 0
#endif

/* ------------------------------------------------------------- errors */

static char g_msg[2048];

/* Raises dime:<kind> with a formatted message. Callers own nothing that
 * needs freeing at this point (mxMalloc'd memory is released by the MEX
 * layer). */
static void fail(const char *kind, const char *fmt, ...)
{
    char id[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    snprintf(id, sizeof id, "dime:%s", kind);
    mexErrMsgIdAndTxt(id, "%s", g_msg);
}

static const char *status_kind(dime_status st)
{
    switch (st) {
    case DIME_STATUS_NULL_ARGUMENT:
    case DIME_STATUS_INVALID_ARGUMENT: return "argument";
    case DIME_STATUS_WRONG_TYPE: return "type";
    case DIME_STATUS_OUT_OF_RANGE: return "range";
    case DIME_STATUS_NOT_FOUND: return "notfound";
    case DIME_STATUS_CONNECTION_LOST: return "connection";
    case DIME_STATUS_CLOSED: return "closed";
    case DIME_STATUS_PROTOCOL_ERROR: return "protocol";
    case DIME_STATUS_SERVER_ERROR: return "server";
    case DIME_STATUS_TIMEOUT: return "timeout";
    case DIME_STATUS_CODEC_ERROR: return "codec";
    case DIME_STATUS_PANIC: return "internal";
    default: return "unknown";
    }
}

/* Raises the error of a failed library call (reads dime_last_error first,
 * so call it right after the failing call). */
static void fail_status(dime_status st, const char *context)
{
    const char *m = dime_last_error();
    if (context && *context)
        fail(status_kind(st), "%s: %s", context, (m && *m) ? m : "(no message)");
    else
        fail(status_kind(st), "%s", (m && *m) ? m : "(no message)");
}

#define CHECK(call, context)                                                   \
    do {                                                                       \
        dime_status st_ = (call);                                              \
        if (st_ != DIME_STATUS_OK)                                             \
            fail_status(st_, (context));                                       \
    } while (0)

/* Conversion errors are collected here instead of raised at once, so the
 * caller can free the partly built value first. */
typedef struct {
    const char *kind; /* NULL: no error */
    char msg[1024];
} conv_err;

static void conv_fail(conv_err *e, const char *kind, const char *fmt, ...)
{
    va_list ap;
    if (e->kind)
        return; /* keep the first error */
    e->kind = kind;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

/* ----------------------------------------------------- open connections */

static dime_client **g_clients;
static size_t g_nclients, g_capclients;
static dime_messages *g_pending; /* freed if a conversion raised mid-sync */
static dime_value *g_pending_value; /* likewise for devices/convert */

/* Values and patterns a share or tuple-space command owns while it runs;
 * freed when it ends, or at the next call if it raised (mexErrMsg* does
 * not return). */
#define MAX_TRACKED 4
static dime_value *g_tracked[MAX_TRACKED];
static dime_pattern *g_tracked_pattern;

static void release_tracked(void)
{
    size_t i;
    for (i = 0; i < MAX_TRACKED; i++) {
        dime_value_free(g_tracked[i]);
        g_tracked[i] = NULL;
    }
    dime_pattern_free(g_tracked_pattern);
    g_tracked_pattern = NULL;
}

static void close_all(void)
{
    size_t i;
    for (i = 0; i < g_nclients; i++)
        dime_client_free(g_clients[i]);
    free(g_clients);
    g_clients = NULL;
    g_nclients = g_capclients = 0;
    dime_messages_free(g_pending);
    g_pending = NULL;
    dime_value_free(g_pending_value);
    g_pending_value = NULL;
    release_tracked();
}

static void register_client(dime_client *c)
{
    if (g_nclients == g_capclients) {
        size_t cap = g_capclients ? 2 * g_capclients : 8;
        dime_client **p = (dime_client **)realloc(g_clients, cap * sizeof *p);
        if (!p) {
            dime_client_free(c);
            fail("internal", "out of memory");
        }
        g_clients = p;
        g_capclients = cap;
    }
    g_clients[g_nclients++] = c;
}

static long find_client(uint64_t h)
{
    size_t i;
    for (i = 0; i < g_nclients; i++)
        if ((uint64_t)(uintptr_t)g_clients[i] == h)
            return (long)i;
    return -1;
}

static uint64_t handle_arg(const mxArray *a)
{
    if (!mxIsUint64(a) || mxIsComplex(a) || mxGetNumberOfElements(a) != 1)
        fail("argument", "a connection handle must be a uint64 scalar");
    return *(const uint64_t *)mxGetData(a);
}

static dime_client *client_arg(const mxArray *a)
{
    long i = find_client(handle_arg(a));
    if (i < 0)
        fail("closed", "this dime connection is closed");
    return g_clients[i];
}

/* --------------------------------------------------------- text helpers */

/* UTF-8 bytes of `n` mxChars read with stride `stride` from `c`, written
 * into a new mxMalloc'd buffer (NUL-terminated; *len excludes the NUL).
 * Octave's mxChar is a byte (its strings are UTF-8 already); MATLAB's is a
 * UTF-16 code unit, transcoded here (unpaired surrogates become U+FFFD). */
static char *chars_to_utf8(const mxChar *c, size_t n, size_t stride, size_t *len)
{
    char *out;
    size_t i, k = 0;
    if (sizeof(mxChar) == 1) {
        out = (char *)mxMalloc(n + 1);
        for (i = 0; i < n; i++)
            out[i] = (char)c[i * stride];
        out[n] = 0;
        *len = n;
        return out;
    }
    out = (char *)mxMalloc(3 * n + 1); /* a UTF-16 unit never needs more */
    for (i = 0; i < n; i++) {
        uint32_t u = (uint32_t)(uint16_t)c[i * stride];
        if (u >= 0xD800 && u <= 0xDBFF && i + 1 < n) {
            uint32_t lo = (uint32_t)(uint16_t)c[(i + 1) * stride];
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                i++;
            } else {
                u = 0xFFFD;
            }
        } else if (u >= 0xD800 && u <= 0xDFFF) {
            u = 0xFFFD;
        }
        if (u < 0x80) {
            out[k++] = (char)u;
        } else if (u < 0x800) {
            out[k++] = (char)(0xC0 | (u >> 6));
            out[k++] = (char)(0x80 | (u & 0x3F));
        } else if (u < 0x10000) {
            out[k++] = (char)(0xE0 | (u >> 12));
            out[k++] = (char)(0x80 | ((u >> 6) & 0x3F));
            out[k++] = (char)(0x80 | (u & 0x3F));
        } else {
            out[k++] = (char)(0xF0 | (u >> 18));
            out[k++] = (char)(0x80 | ((u >> 12) & 0x3F));
            out[k++] = (char)(0x80 | ((u >> 6) & 0x3F));
            out[k++] = (char)(0x80 | (u & 0x3F));
        }
    }
    out[k] = 0;
    *len = k;
    return out;
}

/* A 1xN char row (0x0 when empty) holding `len` UTF-8 bytes (Octave) or
 * their UTF-16 transcoding (MATLAB). */
static mxArray *utf8_to_mx(const char *s, size_t len)
{
    mwSize dims[2];
    mxArray *a;
    mxChar *c;
    size_t i, k = 0, units;
    if (sizeof(mxChar) == 1) {
        dims[0] = len ? 1 : 0;
        dims[1] = len;
        a = mxCreateCharArray(2, dims);
        if (len)
            memcpy(mxGetChars(a), s, len);
        return a;
    }
    /* count UTF-16 units */
    for (i = 0; i < len; i++) {
        unsigned char b = (unsigned char)s[i];
        if ((b & 0xC0) != 0x80)
            k += (b >= 0xF0) ? 2 : 1;
    }
    units = k;
    dims[0] = k ? 1 : 0;
    dims[1] = k;
    a = mxCreateCharArray(2, dims);
    c = mxGetChars(a);
    k = 0;
    /* The count above trusts that `s` is valid UTF-8 (libdime's strings
     * are); the bound keeps a malformed sequence from writing past the
     * array, whatever it decodes to. */
    for (i = 0; i < len && k < units;) {
        unsigned char b = (unsigned char)s[i];
        uint32_t u;
        int extra;
        if (b < 0x80) { u = b; extra = 0; }
        else if (b >= 0xF0) { u = b & 0x07; extra = 3; }
        else if (b >= 0xE0) { u = b & 0x0F; extra = 2; }
        else { u = b & 0x1F; extra = 1; }
        i++;
        while (extra-- > 0 && i < len)
            u = (u << 6) | ((unsigned char)s[i++] & 0x3F);
        if (u >= 0x10000 && k + 1 < units) {
            u -= 0x10000;
            c[k++] = (mxChar)(0xD800 + (u >> 10));
            c[k++] = (mxChar)(0xDC00 + (u & 0x3FF));
        } else {
            c[k++] = (mxChar)u;
        }
    }
    return a;
}

/* A NUL-terminated UTF-8 copy (mxMalloc'd) of a char row-vector argument. */
static char *string_arg(const mxArray *a, const char *what)
{
    size_t len;
    if (!mxIsChar(a) || (mxGetM(a) > 1 && mxGetNumberOfElements(a) > 0)
        || mxGetNumberOfDimensions(a) > 2)
        fail("argument", "%s must be a character row vector", what);
    return chars_to_utf8(mxGetChars(a), mxGetNumberOfElements(a), 1, &len);
}

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

static dime_value *to_dime(const mxArray *a, conv_err *e, int depth);

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
static dime_value *to_dime(const mxArray *a, conv_err *e, int depth)
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

/* Converts argument `a`, raising dime:<kind> naming `name` on failure. */
static dime_value *value_arg(const mxArray *a, const char *name)
{
    conv_err e;
    dime_value *v;
    e.kind = NULL;
    e.msg[0] = 0;
    v = to_dime(a, &e, 0);
    if (!v) {
        if (!e.kind)
            conv_fail(&e, "internal", "conversion failed");
        if (name)
            fail(e.kind, "variable '%s': %s", name, e.msg);
        fail(e.kind, "%s", e.msg);
    }
    return v;
}

/* ------------------------------------------------ dime_value -> mxArray */

/* Set by from_dime when a map came back as a marker for dime.m to finish. */
static int g_has_marker;

static mxArray *from_dime(const dime_value *v);

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
    CHECK(dime_matrix_data(v, &data, &nbytes), "matrix");
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
    if (cplx)
        return complex_to_mx(id, nd, md, data, n);
    if (id == mxLOGICAL_CLASS)
        a = mxCreateLogicalArray(nd, md);
    else
        a = mxCreateUninitNumericArray(nd, md, id, mxREAL);
    if (nbytes)
        memcpy(mxGetData(a), data, nbytes); /* the one copy */
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

static mxArray *map_to_mx(const dime_value *v)
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
            mxSetFieldByNumber(s, 0, f, from_dime(x));
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
        mxSetCell(keys, i, from_dime(k));
        mxSetCell(vals, i, from_dime(x));
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
    g_has_marker = 1;
    return s;
}

static mxArray *from_dime(const dime_value *v)
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
            mxSetCell(c, i, from_dime(x));
        }
        return c;
    }
    case DIME_KIND_MAP: return map_to_mx(v);
    default: fail("codec", "received a value of unknown kind %d", (int)dime_value_kind(v));
    }
    return NULL;
}

/* ------------------------------------------------------------ commands */

static void need_args(int nrhs, int n, const char *usage)
{
    if (nrhs < n)
        fail("argument", "usage: %s", usage);
}

static double scalar_arg(const mxArray *a, const char *what)
{
    if (!mxIsNumeric(a) || mxIsComplex(a) || mxGetNumberOfElements(a) != 1)
        fail("argument", "%s must be a real numeric scalar", what);
    return mxGetScalar(a);
}

/* Group names from arguments first..nrhs-1: strings or cellstrs. */
static void groups_cmd(int nrhs, const mxArray *prhs[], int join)
{
    dime_client *c;
    const char **names;
    size_t count = 0, cap = 0, k;
    int i;
    need_args(nrhs, 2, join ? "dime_mex('join', h, group, ...)" : "dime_mex('leave', h, group, ...)");
    c = client_arg(prhs[1]);
    for (i = 2; i < nrhs; i++)
        cap += mxIsCell(prhs[i]) ? mxGetNumberOfElements(prhs[i]) : 1;
    names = (const char **)mxMalloc((cap ? cap : 1) * sizeof *names);
    for (i = 2; i < nrhs; i++) {
        if (mxIsCell(prhs[i])) {
            size_t n = mxGetNumberOfElements(prhs[i]);
            for (k = 0; k < n; k++) {
                const mxArray *x = mxGetCell(prhs[i], k);
                if (!x)
                    fail("argument", "group names must be character row vectors");
                names[count++] = string_arg(x, "a group name");
            }
        } else {
            names[count++] = string_arg(prhs[i], "a group name");
        }
    }
    if (join)
        CHECK(dime_join(c, names, count), "join");
    else
        CHECK(dime_leave(c, names, count), "leave");
}

/* send/broadcast: name/value pairs from argument `first` on. All values
 * are converted before anything is sent. */
static void send_cmd(int nrhs, const mxArray *prhs[], const char *group, int first, dime_client *c)
{
    size_t count, k;
    const char **names;
    dime_value **values;
    dime_status st;
    if ((nrhs - first) % 2 != 0)
        fail("argument", "variables must come as name, value pairs");
    count = (size_t)(nrhs - first) / 2;
    if (count == 0)
        return;
    names = (const char **)mxMalloc(count * sizeof *names);
    values = (dime_value **)mxMalloc(count * sizeof *values);
    for (k = 0; k < count; k++)
        names[k] = string_arg(prhs[first + 2 * k], "a variable name");
    for (k = 0; k < count; k++) {
        conv_err e;
        e.kind = NULL;
        e.msg[0] = 0;
        values[k] = to_dime(prhs[first + 2 * k + 1], &e, 0);
        if (!values[k]) {
            size_t j;
            char msg[sizeof e.msg];
            const char *kind = e.kind ? e.kind : "internal";
            memcpy(msg, e.msg, sizeof msg);
            for (j = 0; j < k; j++)
                dime_value_free(values[j]);
            fail(kind, "variable '%s': %s", names[k], msg);
        }
    }
    if (group)
        st = dime_send_many(c, group, names, (const dime_value *const *)values, count);
    else
        st = dime_broadcast_many(c, names, (const dime_value *const *)values, count);
    if (st != DIME_STATUS_OK) {
        char msg[sizeof g_msg];
        snprintf(msg, sizeof msg, "%s", dime_last_error());
        for (k = 0; k < count; k++)
            dime_value_free(values[k]);
        fail(status_kind(st), "%s: %s", group ? "send" : "broadcast", msg);
    }
    for (k = 0; k < count; k++)
        dime_value_free(values[k]);
}

static void sync_cmd(int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    dime_client *c;
    dime_messages *msgs = NULL;
    double n = -1;
    size_t len, i;
    mxArray *names, *values, *fix;
    mxLogical *fx;
    need_args(nrhs, 2, "[names, values, fix] = dime_mex('sync', h, n)");
    c = client_arg(prhs[1]);
    if (nrhs > 2)
        n = scalar_arg(prhs[2], "n");
    CHECK(dime_sync(c, (n < 0 || n != n || n > 9.2e18) ? DIME_SYNC_ALL : (int64_t)n, &msgs), "sync");
    g_pending = msgs; /* freed at the next call if a conversion raises */
    len = dime_messages_len(msgs);
    names = mxCreateCellMatrix(1, len);
    values = mxCreateCellMatrix(1, len);
    fix = mxCreateLogicalMatrix(1, len);
    fx = mxGetLogicals(fix);
    for (i = 0; i < len; i++) {
        const char *name = NULL;
        const dime_value *v = NULL;
        CHECK(dime_messages_get(msgs, i, &name, &v), "sync");
        g_has_marker = 0;
        mxSetCell(names, i, utf8_to_mx(name, strlen(name)));
        mxSetCell(values, i, from_dime(v));
        fx[i] = g_has_marker ? 1 : 0;
    }
    g_pending = NULL;
    dime_messages_free(msgs);
    plhs[0] = names;
    if (nlhs > 1)
        plhs[1] = values;
    else
        mxDestroyArray(values);
    if (nlhs > 2)
        plhs[2] = fix;
    else
        mxDestroyArray(fix);
}

/* ------------------------------------------- shares and tuple spaces */

/* Owns `v` until the command ends (or the next call, if it raises). */
static dime_value *track(dime_value *v)
{
    size_t i;
    for (i = 0; i < MAX_TRACKED; i++) {
        if (!g_tracked[i]) {
            g_tracked[i] = v;
            return v;
        }
    }
    dime_value_free(v);
    fail("internal", "too many values in one command");
    return NULL;
}

/* A key (or share/space name): a char row with no NUL inside. */
static char *name_arg(const mxArray *a, const char *what)
{
    char *s = string_arg(a, what);
    size_t n = mxGetNumberOfElements(a);
    if (sizeof(mxChar) == 1 && strlen(s) != n)
        fail("argument", "%s must not contain NUL characters", what);
    return s;
}

/* A lock key, or NULL (the whole-share lock) for [] / ''. */
static const char *lock_key_arg(int nrhs, const mxArray *prhs[], int i)
{
    if (i >= nrhs || mxIsEmpty(prhs[i]))
        return NULL;
    return name_arg(prhs[i], "a lock key");
}

/* Milliseconds; negative, NaN or Inf: forever. */
static int64_t ms_arg(int nrhs, const mxArray *prhs[], int i)
{
    double t;
    if (i >= nrhs || mxIsEmpty(prhs[i]))
        return DIME_WAIT_FOREVER;
    t = scalar_arg(prhs[i], "the timeout");
    if (t < 0 || t != t || t > 9.2e18)
        return DIME_WAIT_FOREVER;
    return (int64_t)t;
}

/* plhs[0] = the value `v` (owned; freed here or at the next call if the
 * conversion raises), plhs[1] = whether dime.m must resolve map markers. */
static void return_value(int nlhs, mxArray *plhs[], dime_value *v)
{
    mxArray *out;
    g_has_marker = 0;
    g_pending_value = v;
    out = from_dime(v);
    g_pending_value = NULL;
    dime_value_free(v);
    plhs[0] = out;
    if (nlhs > 1)
        plhs[1] = mxCreateLogicalScalar(g_has_marker != 0);
}

static void return_none(int nlhs, mxArray *plhs[])
{
    plhs[0] = mxCreateDoubleMatrix(0, 0, mxREAL);
    if (nlhs > 1)
        plhs[1] = mxCreateLogicalScalar(0);
}

#define SHARE_USAGE "dime_mex('share_<op>', h, share, ...); see dime_mex.c"

/*   dime_mex('share_set', h, share, key, value)
 *   [v, fix] = dime_mex('share_get' | 'share_pop', h, share, key)
 *   found = dime_mex('share_del' | 'share_contains', h, share, key)
 *   keys  = dime_mex('share_keys', h, share)           % 1xN cell
 *   n     = dime_mex('share_len', h, share)
 *           dime_mex('share_clear', h, share)
 *   [m, fix] = dime_mex('share_get_many', h, share, keys)  % cellstr -> map
 *           dime_mex('share_set_many', h, share, map)
 *   [v, fix] = dime_mex('share_incr', h, share, key, delta)
 *   swapped = dime_mex('share_cas', h, share, key, new [, expected])  % no expected: absent
 *   [v, fix] = dime_mex('share_wait_key', h, share, key, timeout_ms)
 *           dime_mex('share_lock', h, share, key_or_[], timeout_ms)
 *   ok    = dime_mex('share_try_lock', h, share, key_or_[])
 *           dime_mex('share_unlock', h, share, key_or_[]) */
static void share_cmd(const char *cmd, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    const char *op = cmd + 6;
    dime_client *c;
    const char *share, *key = NULL;
    dime_value *out = NULL;
    int keyed = strcmp(op, "keys") && strcmp(op, "len") && strcmp(op, "clear")
                && strcmp(op, "get_many") && strcmp(op, "set_many") && strcmp(op, "lock")
                && strcmp(op, "try_lock") && strcmp(op, "unlock");
    need_args(nrhs, keyed ? 4 : 3, SHARE_USAGE);
    c = client_arg(prhs[1]);
    share = name_arg(prhs[2], "the share name");
    if (keyed)
        key = name_arg(prhs[3], "the key");

    if (strcmp(op, "set") == 0) {
        dime_value *v;
        need_args(nrhs, 5, "dime_mex('share_set', h, share, key, value)");
        v = track(value_arg(prhs[4], NULL));
        CHECK(share_set(c, share, key, v), "share_set");
    } else if (strcmp(op, "get") == 0 || strcmp(op, "pop") == 0) {
        int pop = op[0] == 'p';
        dime_status st = pop ? share_pop(c, share, key, &out) : share_get(c, share, key, &out);
        if (st != DIME_STATUS_OK)
            fail_status(st, pop ? "share_pop" : "share_get");
        return_value(nlhs, plhs, out);
    } else if (strcmp(op, "del") == 0 || strcmp(op, "contains") == 0) {
        bool found = false;
        if (op[0] == 'd')
            CHECK(share_del(c, share, key, &found), "share_del");
        else
            CHECK(share_contains(c, share, key, &found), "share_contains");
        plhs[0] = mxCreateLogicalScalar(found);
    } else if (strcmp(op, "keys") == 0) {
        CHECK(share_keys(c, share, &out), "share_keys");
        return_value(0, plhs, out);
    } else if (strcmp(op, "len") == 0) {
        size_t n = 0;
        CHECK(share_len(c, share, &n), "share_len");
        plhs[0] = mxCreateDoubleScalar((double)n);
    } else if (strcmp(op, "clear") == 0) {
        CHECK(share_clear(c, share), "share_clear");
    } else if (strcmp(op, "get_many") == 0) {
        const mxArray *k;
        const char **keys;
        size_t n, i;
        need_args(nrhs, 4, "dime_mex('share_get_many', h, share, keys)");
        k = prhs[3];
        if (mxIsChar(k)) {
            n = 1;
            keys = (const char **)mxMalloc(sizeof *keys);
            keys[0] = name_arg(k, "a key");
        } else if (mxIsCell(k)) {
            n = mxGetNumberOfElements(k);
            keys = (const char **)mxMalloc((n ? n : 1) * sizeof *keys);
            for (i = 0; i < n; i++) {
                const mxArray *x = mxGetCell(k, i);
                if (!x)
                    fail("argument", "keys must be character row vectors");
                keys[i] = name_arg(x, "a key");
            }
        } else {
            fail("argument", "keys must be a cell array of character row vectors");
            return;
        }
        CHECK(share_get_many(c, share, keys, n, &out), "share_get_many");
        return_value(nlhs, plhs, out);
    } else if (strcmp(op, "set_many") == 0) {
        dime_value *m;
        need_args(nrhs, 4, "dime_mex('share_set_many', h, share, map)");
        m = track(value_arg(prhs[3], NULL));
        CHECK(share_set_many(c, share, m), "share_set_many");
    } else if (strcmp(op, "incr") == 0) {
        dime_value *d;
        need_args(nrhs, 5, "dime_mex('share_incr', h, share, key, delta)");
        d = track(value_arg(prhs[4], NULL));
        CHECK(share_incr(c, share, key, d, &out), "share_incr");
        return_value(nlhs, plhs, out);
    } else if (strcmp(op, "cas") == 0) {
        dime_value *nv, *ev = NULL;
        bool swapped = false;
        need_args(nrhs, 5, "dime_mex('share_cas', h, share, key, new [, expected])");
        nv = track(value_arg(prhs[4], NULL));
        if (nrhs > 5)
            ev = track(value_arg(prhs[5], NULL));
        CHECK(share_cas(c, share, key, ev, nv, &swapped), "share_cas");
        plhs[0] = mxCreateLogicalScalar(swapped);
    } else if (strcmp(op, "wait_key") == 0) {
        dime_status st = share_wait_key(c, share, key, ms_arg(nrhs, prhs, 4), &out);
        if (st != DIME_STATUS_OK)
            fail_status(st, "share_wait_key");
        return_value(nlhs, plhs, out);
    } else if (strcmp(op, "lock") == 0) {
        const char *k = lock_key_arg(nrhs, prhs, 3);
        CHECK(share_lock(c, share, k, ms_arg(nrhs, prhs, 4)), "share_lock");
    } else if (strcmp(op, "try_lock") == 0) {
        const char *k = lock_key_arg(nrhs, prhs, 3);
        dime_status st = share_try_lock(c, share, k);
        if (st != DIME_STATUS_OK && st != DIME_STATUS_TIMEOUT)
            fail_status(st, "share_try_lock");
        plhs[0] = mxCreateLogicalScalar(st == DIME_STATUS_OK);
    } else if (strcmp(op, "unlock") == 0) {
        CHECK(share_unlock(c, share, lock_key_arg(nrhs, prhs, 3)), "share_unlock");
    } else {
        fail("argument", "unknown command '%s'", cmd);
    }
    release_tracked();
}

static dime_class matrix_class_named(const char *s)
{
    static const struct {
        const char *name;
        dime_class cls;
    } t[] = {
        {"", DIME_CLASS_ANY}, {"any", DIME_CLASS_ANY},
        {"int8", DIME_CLASS_INT8}, {"int16", DIME_CLASS_INT16},
        {"int32", DIME_CLASS_INT32}, {"int64", DIME_CLASS_INT64},
        {"uint8", DIME_CLASS_UINT8}, {"uint16", DIME_CLASS_UINT16},
        {"uint32", DIME_CLASS_UINT32}, {"uint64", DIME_CLASS_UINT64},
        {"single", DIME_CLASS_SINGLE}, {"double", DIME_CLASS_DOUBLE},
        {"complex single", DIME_CLASS_COMPLEX_SINGLE},
        {"complex double", DIME_CLASS_COMPLEX_DOUBLE},
        {"logical", DIME_CLASS_LOGICAL},
    };
    size_t i;
    for (i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(s, t[i].name) == 0)
            return t[i].cls;
    fail("argument", "unknown matrix class '%s'", s);
    return DIME_CLASS_ANY;
}

/* The pattern dime.m compiled: a 2xN cell, row 1 the kinds ('value',
 * 'any', 'type', 'matrix', 'range'), row 2 their arguments (the value; [];
 * a dime type name; {class name, rank}; [lo hi has_lo has_hi]). */
static dime_pattern *pattern_arg(const mxArray *spec)
{
    dime_pattern *p;
    size_t n, i;
    if (!mxIsCell(spec) || (mxGetNumberOfElements(spec) > 0 && mxGetM(spec) != 2))
        fail("argument", "a compiled pattern must be a 2xN cell (use dime.m)");
    n = mxGetNumberOfElements(spec) / 2; /* not mxGetN: Octave 7 leaks its dims cache */
    p = dime_pattern_new();
    g_tracked_pattern = p;
    for (i = 0; i < n; i++) {
        const mxArray *k = mxGetCell(spec, 2 * i), *a = mxGetCell(spec, 2 * i + 1);
        char *kind;
        dime_status st;
        char ctx[48];
        snprintf(ctx, sizeof ctx, "pattern field %u", (unsigned)(i + 1));
        if (!k)
            fail("argument", "%s: no kind", ctx);
        kind = string_arg(k, "a pattern kind");
        if (strcmp(kind, "value") == 0) {
            dime_value *v;
            conv_err e;
            e.kind = NULL;
            e.msg[0] = 0;
            v = a ? to_dime(a, &e, 0) : dime_value_new_null();
            if (!v)
                fail(e.kind ? e.kind : "internal", "%s: %s", ctx, e.msg);
            st = dime_pattern_add_value(p, v); /* copies v */
            if (st != DIME_STATUS_OK) {
                char msg[sizeof g_msg];
                snprintf(msg, sizeof msg, "%s", dime_last_error());
                dime_value_free(v);
                fail(status_kind(st), "%s: %s", ctx, msg);
            }
            dime_value_free(v);
        } else if (strcmp(kind, "any") == 0) {
            CHECK(dime_pattern_add_any(p), ctx);
        } else if (strcmp(kind, "type") == 0) {
            if (!a)
                fail("argument", "%s: no type name", ctx);
            CHECK(dime_pattern_add_type(p, string_arg(a, "a type name")), ctx);
        } else if (strcmp(kind, "matrix") == 0) {
            const mxArray *cn, *rk;
            double r;
            if (!a || !mxIsCell(a) || mxGetNumberOfElements(a) != 2 || !(cn = mxGetCell(a, 0))
                || !(rk = mxGetCell(a, 1)))
                fail("argument", "%s: a matrix field needs {class, rank}", ctx);
            r = mxIsEmpty(rk) ? -1 : scalar_arg(rk, "a rank");
            if (r != r || r > 255 || (r >= 0 && r != (double)(int32_t)r))
                fail("argument", "%s: the rank must be an integer 0..255 (or [] for any)", ctx);
            CHECK(dime_pattern_add_matrix(p, matrix_class_named(string_arg(cn, "a class name")),
                                          r < 0 ? DIME_RANK_ANY : (int32_t)r),
                  ctx);
        } else if (strcmp(kind, "range") == 0) {
            const double *b;
            if (!a || !mxIsDouble(a) || mxIsComplex(a) || mxGetNumberOfElements(a) != 4)
                fail("argument", "%s: a range field needs [lo hi has_lo has_hi]", ctx);
            b = (const double *)mxGetData(a);
            CHECK(dime_pattern_add_range(p, b[0], b[1], b[2] != 0, b[3] != 0), ctx);
        } else {
            fail("argument", "%s: unknown kind '%s'", ctx, kind);
        }
    }
    return p;
}

/*   dime_mex('ts_out', h, space, tuple)                  % tuple: a cell
 *   [t, fix] = dime_mex('ts_in' | 'ts_rd', h, space, spec, timeout_ms)
 *   [t, fix] = dime_mex('ts_inp' | 'ts_rdp', h, space, spec)   % [] if none
 *   n = dime_mex('ts_count', h, space, spec)
 * spec: the 2xN cell dime.m compiles from a pattern (see pattern_arg). */
static void ts_cmd(const char *cmd, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    const char *op = cmd + 3;
    dime_client *c;
    const char *space;
    dime_value *out = NULL;
    need_args(nrhs, 4, "dime_mex('ts_<op>', h, space, tuple_or_pattern, ...)");
    c = client_arg(prhs[1]);
    space = name_arg(prhs[2], "the space name");
    if (strcmp(op, "out") == 0) {
        dime_value *t;
        if (!mxIsCell(prhs[3]))
            fail("argument", "a tuple must be a cell array");
        t = track(value_arg(prhs[3], NULL));
        CHECK(dime_out(c, space, t), "out");
    } else if (strcmp(op, "in") == 0 || strcmp(op, "rd") == 0) {
        int in = op[0] == 'i';
        dime_pattern *p = pattern_arg(prhs[3]);
        int64_t ms = ms_arg(nrhs, prhs, 4);
        dime_status st = in ? dime_in(c, space, p, ms, &out) : dime_rd(c, space, p, ms, &out);
        if (st != DIME_STATUS_OK)
            fail_status(st, in ? "in" : "rd");
        return_value(nlhs, plhs, out);
    } else if (strcmp(op, "inp") == 0 || strcmp(op, "rdp") == 0) {
        int in = op[0] == 'i';
        dime_pattern *p = pattern_arg(prhs[3]);
        dime_status st = in ? dime_inp(c, space, p, &out) : dime_rdp(c, space, p, &out);
        if (st == DIME_STATUS_NOT_FOUND)
            return_none(nlhs, plhs);
        else if (st != DIME_STATUS_OK)
            fail_status(st, in ? "inp" : "rdp");
        else
            return_value(nlhs, plhs, out);
    } else if (strcmp(op, "count") == 0) {
        size_t n = 0;
        dime_pattern *p = pattern_arg(prhs[3]);
        CHECK(dime_count(c, space, p, &n), "count");
        plhs[0] = mxCreateDoubleScalar((double)n);
    } else {
        fail("argument", "unknown command '%s'", cmd);
    }
    release_tracked();
}

void mexFunction(int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    static int at_exit_set = 0;
    char *cmd;
    if (!at_exit_set) {
        mexAtExit(close_all);
        at_exit_set = 1;
    }
    dime_messages_free(g_pending);
    g_pending = NULL;
    dime_value_free(g_pending_value);
    g_pending_value = NULL;
    release_tracked();
    if (nrhs < 1 || !mxIsChar(prhs[0]))
        fail("argument", "usage: dime_mex(command, ...); see dime_mex.c");
    cmd = string_arg(prhs[0], "the command");

    if (strcmp(cmd, "version") == 0) {
        plhs[0] = mxCreateString(dime_version());
    } else if (strcmp(cmd, "connect") == 0) {
        char *addr;
        dime_client *c = NULL;
        need_args(nrhs, 2, "h = dime_mex('connect', address)");
        addr = string_arg(prhs[1], "the address");
        CHECK(dime_connect(addr, &c), addr);
        register_client(c);
        plhs[0] = mxCreateNumericMatrix(1, 1, mxUINT64_CLASS, mxREAL);
        *(uint64_t *)mxGetData(plhs[0]) = (uint64_t)(uintptr_t)c;
    } else if (strcmp(cmd, "close") == 0) {
        long i;
        need_args(nrhs, 2, "dime_mex('close', h)");
        i = find_client(handle_arg(prhs[1]));
        if (i >= 0) {
            dime_client *c = g_clients[i];
            g_clients[i] = g_clients[--g_nclients];
            dime_client_free(c);
        }
    } else if (strcmp(cmd, "join") == 0) {
        groups_cmd(nrhs, prhs, 1);
    } else if (strcmp(cmd, "leave") == 0) {
        groups_cmd(nrhs, prhs, 0);
    } else if (strcmp(cmd, "send") == 0) {
        dime_client *c;
        char *group;
        need_args(nrhs, 3, "dime_mex('send', h, group, name, value, ...)");
        c = client_arg(prhs[1]);
        group = string_arg(prhs[2], "the group name");
        send_cmd(nrhs, prhs, group, 3, c);
    } else if (strcmp(cmd, "broadcast") == 0) {
        dime_client *c;
        need_args(nrhs, 2, "dime_mex('broadcast', h, name, value, ...)");
        c = client_arg(prhs[1]);
        send_cmd(nrhs, prhs, NULL, 2, c);
    } else if (strcmp(cmd, "sync") == 0) {
        sync_cmd(nlhs, plhs, nrhs, prhs);
    } else if (strcmp(cmd, "wait") == 0) {
        dime_client *c;
        double t = -1;
        size_t count = 0;
        need_args(nrhs, 2, "n = dime_mex('wait', h, timeout_ms)");
        c = client_arg(prhs[1]);
        if (nrhs > 2)
            t = scalar_arg(prhs[2], "the timeout");
        CHECK(dime_wait(c, (t < 0 || t != t || t > 9.2e18) ? DIME_WAIT_FOREVER : (int64_t)t, &count),
              "wait");
        plhs[0] = mxCreateDoubleScalar((double)count);
    } else if (strcmp(cmd, "devices") == 0) {
        dime_client *c;
        dime_value *list = NULL;
        mxArray *out;
        need_args(nrhs, 2, "g = dime_mex('devices', h)");
        c = client_arg(prhs[1]);
        CHECK(dime_devices(c, &list), "devices");
        g_pending_value = list;
        out = from_dime(list);
        g_pending_value = NULL;
        dime_value_free(list);
        plhs[0] = out;
    } else if (strcmp(cmd, "convert") == 0) {
        dime_value *v, *copy = NULL;
        dime_status st;
        mxArray *out;
        need_args(nrhs, 2, "y = dime_mex('convert', x)");
        v = value_arg(prhs[1], NULL);
        st = dime_value_clone(v, &copy); /* an owning copy, like a received value */
        dime_value_free(v);
        if (st != DIME_STATUS_OK)
            fail_status(st, "convert");
        g_has_marker = 0;
        g_pending_value = copy;
        out = from_dime(copy);
        g_pending_value = NULL;
        dime_value_free(copy);
        plhs[0] = out;
        if (nlhs > 1)
            plhs[1] = mxCreateLogicalScalar(g_has_marker != 0);
    } else if (strncmp(cmd, "share_", 6) == 0) {
        share_cmd(cmd, nlhs, plhs, nrhs, prhs);
    } else if (strncmp(cmd, "ts_", 3) == 0) {
        ts_cmd(cmd, nlhs, plhs, nrhs, prhs);
    } else if (strcmp(cmd, "open_count") == 0) {
        plhs[0] = mxCreateDoubleScalar((double)g_nclients);
    } else {
        fail("argument", "unknown command '%s'", cmd);
    }
}
