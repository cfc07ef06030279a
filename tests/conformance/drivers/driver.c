/*
 * driver.c: conformance driver for C, a plain client of include/dime.h.
 *
 *   driver SOCKET GROUP
 *
 * Connects over the unix socket, joins GROUP, prints "ready", then runs the
 * same commands as driver.py (row / send / recv; see there) from stdin
 * until EOF, with values in the token form of tests/conformance/model.py. The C value
 * of a row is built with the dime_value constructors (hint "rowmajor": a
 * matrix from row-major data with dime_value_new_matrix_borrowed_row_major);
 * a received value is described through the accessors only.
 */
#define _POSIX_C_SOURCE 200809L

#include "dime.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ helpers */

static char g_error[1024];

static void set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "driver.c: out of memory\n");
        exit(2);
    }
    return p;
}

/* A growable string. */
typedef struct {
    char *s;
    size_t len, cap;
} buf;

static void buf_add(buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (cap < b->len + n + 1)
            cap *= 2;
        p = realloc(b->s, cap);
        if (!p) {
            fprintf(stderr, "driver.c: out of memory\n");
            exit(2);
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void buf_word(buf *b, const char *w)
{
    if (b->len)
        buf_add(b, " ", 1);
    buf_add(b, w, strlen(w));
}

static void buf_fmt(buf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_word(b, tmp);
}

static void buf_hex(buf *b, const unsigned char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;
    if (n == 0) {
        buf_word(b, "-");
        return;
    }
    if (b->len)
        buf_add(b, " ", 1);
    for (i = 0; i < n; i++) {
        char two[2];
        two[0] = digits[p[i] >> 4];
        two[1] = digits[p[i] & 15];
        buf_add(b, two, 2);
    }
}

static int is_little_endian(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* Reverses each `part`-byte word of p[0..n) on little-endian hosts
 * (big-endian wire <-> native). */
static void swap_parts(unsigned char *p, size_t n, size_t part)
{
    size_t i, j;
    if (!is_little_endian() || part < 2)
        return;
    for (i = 0; i + part <= n; i += part) {
        for (j = 0; j < part / 2; j++) {
            unsigned char t = p[i + j];
            p[i + j] = p[i + part - 1 - j];
            p[i + part - 1 - j] = t;
        }
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes a hex token ("-" is empty) into a new buffer; NULL on bad hex. */
static unsigned char *unhex(const char *t, size_t *n)
{
    size_t len = strlen(t), i;
    unsigned char *out;
    if (strcmp(t, "-") == 0) {
        *n = 0;
        return xmalloc(1);
    }
    if (len % 2) {
        set_error("odd hex length");
        return NULL;
    }
    out = xmalloc(len / 2);
    for (i = 0; i < len / 2; i++) {
        int hi = hexval(t[2 * i]), lo = hexval(t[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(out);
            set_error("bad hex digit");
            return NULL;
        }
        out[i] = (unsigned char)(hi * 16 + lo);
    }
    *n = len / 2;
    return out;
}

/* ------------------------------------------------------------ classes */

static const struct {
    const char *name;
    dime_class cls;
    dime_kind kind;
    size_t part;
} CLASSES[] = {
    {"int8", DIME_CLASS_INT8, DIME_KIND_INT8, 1},
    {"int16", DIME_CLASS_INT16, DIME_KIND_INT16, 2},
    {"int32", DIME_CLASS_INT32, DIME_KIND_INT32, 4},
    {"int64", DIME_CLASS_INT64, DIME_KIND_INT64, 8},
    {"uint8", DIME_CLASS_UINT8, DIME_KIND_UINT8, 1},
    {"uint16", DIME_CLASS_UINT16, DIME_KIND_UINT16, 2},
    {"uint32", DIME_CLASS_UINT32, DIME_KIND_UINT32, 4},
    {"uint64", DIME_CLASS_UINT64, DIME_KIND_UINT64, 8},
    {"single", DIME_CLASS_SINGLE, DIME_KIND_SINGLE, 4},
    {"double", DIME_CLASS_DOUBLE, DIME_KIND_DOUBLE, 8},
    {"csingle", DIME_CLASS_COMPLEX_SINGLE, DIME_KIND_COMPLEX_SINGLE, 4},
    {"cdouble", DIME_CLASS_COMPLEX_DOUBLE, DIME_KIND_COMPLEX_DOUBLE, 8},
    {"logical", DIME_CLASS_LOGICAL, DIME_KIND_INVALID, 1},
};
#define NCLASSES (sizeof CLASSES / sizeof CLASSES[0])

static int is_complex(dime_class cls)
{
    return cls == DIME_CLASS_COMPLEX_SINGLE || cls == DIME_CLASS_COMPLEX_DOUBLE;
}

static int class_index(const char *name)
{
    size_t i;
    for (i = 0; i < NCLASSES; i++)
        if (strcmp(CLASSES[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int class_index_of(dime_class cls)
{
    size_t i;
    for (i = 0; i < NCLASSES; i++)
        if (CLASSES[i].cls == cls)
            return (int)i;
    return -1;
}

static int kind_index_of(dime_kind kind)
{
    size_t i;
    for (i = 0; i < NCLASSES; i++)
        if (CLASSES[i].kind == kind)
            return (int)i;
    return -1;
}

/* ------------------------------------------------------------ building */

typedef struct {
    char **tok;
    size_t n, pos;
} tokens;

/* Buffers lent to borrowing matrices, freed after the send. */
typedef struct {
    void *p[16];
    size_t n;
} keep_list;

static const char *next_token(tokens *t)
{
    if (t->pos >= t->n) {
        set_error("value ends early");
        return NULL;
    }
    return t->tok[t->pos++];
}

static int next_size(tokens *t, size_t *out)
{
    const char *s = next_token(t);
    char *end;
    unsigned long long v;
    if (!s)
        return 0;
    v = strtoull(s, &end, 10);
    if (*end || end == s) {
        set_error("bad number '%s'", s);
        return 0;
    }
    *out = (size_t)v;
    return 1;
}

/* *v after a constructor returned st (NULL with the error set on failure). */
static dime_value *check_new(dime_status st, dime_value **v, const char *what)
{
    if (st != DIME_STATUS_OK) {
        set_error("%s: %s", what, dime_last_error());
        return NULL;
    }
    return *v;
}

static dime_value *build_scalar(int ci, unsigned char *b, size_t n)
{
    size_t part = CLASSES[ci].part;
    int cplx = is_complex(CLASSES[ci].cls);
    if (n != part * (cplx ? 2 : 1)) {
        set_error("%s scalar of %zu bytes", CLASSES[ci].name, n);
        return NULL;
    }
    swap_parts(b, n, part);
    switch (CLASSES[ci].cls) {
#define NEW(CLS, CTYPE, CTOR)                                                                      \
    case CLS: {                                                                                    \
        CTYPE x;                                                                                   \
        memcpy(&x, b, sizeof x);                                                                   \
        return CTOR(x);                                                                            \
    }
        NEW(DIME_CLASS_INT8, int8_t, dime_value_new_int8)
        NEW(DIME_CLASS_INT16, int16_t, dime_value_new_int16)
        NEW(DIME_CLASS_INT32, int32_t, dime_value_new_int32)
        NEW(DIME_CLASS_INT64, int64_t, dime_value_new_int64)
        NEW(DIME_CLASS_UINT8, uint8_t, dime_value_new_uint8)
        NEW(DIME_CLASS_UINT16, uint16_t, dime_value_new_uint16)
        NEW(DIME_CLASS_UINT32, uint32_t, dime_value_new_uint32)
        NEW(DIME_CLASS_UINT64, uint64_t, dime_value_new_uint64)
        NEW(DIME_CLASS_SINGLE, float, dime_value_new_single)
        NEW(DIME_CLASS_DOUBLE, double, dime_value_new_double)
#undef NEW
    case DIME_CLASS_COMPLEX_SINGLE: {
        float z[2];
        memcpy(z, b, sizeof z);
        return dime_value_new_complex_single(z[0], z[1]);
    }
    case DIME_CLASS_COMPLEX_DOUBLE: {
        double z[2];
        memcpy(z, b, sizeof z);
        return dime_value_new_complex_double(z[0], z[1]);
    }
    default:
        set_error("no scalar of class %s", CLASSES[ci].name);
        return NULL;
    }
}

/* Column-major elements -> row-major (C order), `esize` bytes each. */
static void to_row_major(const unsigned char *src, unsigned char *dst, size_t rank,
                         const size_t *dims, size_t esize)
{
    size_t total = 1, i, d;
    for (d = 0; d < rank; d++)
        total *= dims[d];
    for (i = 0; i < total; i++) {
        /* i is a column-major index; find its row-major position */
        size_t rest = i, rm = 0;
        size_t idx[64];
        for (d = 0; d < rank; d++) {
            idx[d] = rest % dims[d];
            rest /= dims[d];
        }
        for (d = 0; d < rank; d++)
            rm = rm * dims[d] + idx[d];
        memcpy(dst + rm * esize, src + i * esize, esize);
    }
}

static dime_value *build(tokens *t, int rowmajor, keep_list *keep);

static dime_value *build_matrix(tokens *t, int rowmajor, keep_list *keep)
{
    const char *cname = next_token(t);
    size_t rank = 0, dims[64], i, n = 0, total = 1, esize;
    unsigned char *data;
    dime_value *v = NULL;
    int ci, cplx;
    const char *h;
    if (!cname || !next_size(t, &rank))
        return NULL;
    ci = class_index(cname);
    if (ci < 0 || rank > 64) {
        set_error("bad matrix class %s or rank %zu", cname, rank);
        return NULL;
    }
    for (i = 0; i < rank; i++) {
        if (!next_size(t, &dims[i]))
            return NULL;
        total *= dims[i];
    }
    if (!(h = next_token(t)) || !(data = unhex(h, &n)))
        return NULL;
    cplx = is_complex(CLASSES[ci].cls);
    esize = CLASSES[ci].part * (cplx ? 2 : 1);
    if (n != total * esize) {
        set_error("matrix data of %zu bytes, expected %zu", n, total * esize);
        free(data);
        return NULL;
    }
    swap_parts(data, n, CLASSES[ci].part);
    if (rowmajor && keep->n < sizeof keep->p / sizeof keep->p[0]) {
        unsigned char *rm = xmalloc(n);
        dime_status st;
        to_row_major(data, rm, rank, dims, esize);
        free(data);
        keep->p[keep->n++] = rm;
        st = dime_value_new_matrix_borrowed_row_major(CLASSES[ci].cls, rank, dims, n ? rm : NULL,
                                                      &v);
        return check_new(st, &v, "dime_value_new_matrix_borrowed_row_major");
    }
    v = check_new(dime_value_new_matrix(CLASSES[ci].cls, rank, dims, n ? data : NULL, &v), &v,
                  "dime_value_new_matrix");
    free(data);
    return v;
}

static dime_value *build(tokens *t, int rowmajor, keep_list *keep)
{
    const char *k = next_token(t);
    if (!k)
        return NULL;
    if (strcmp(k, "N") == 0)
        return dime_value_new_null();
    if (strcmp(k, "B") == 0) {
        const char *b = next_token(t);
        return b ? dime_value_new_bool(strcmp(b, "1") == 0) : NULL;
    }
    if (strcmp(k, "S") == 0) {
        const char *cname = next_token(t), *h;
        unsigned char *b;
        size_t n;
        int ci;
        dime_value *v;
        if (!cname || !(h = next_token(t)))
            return NULL;
        if ((ci = class_index(cname)) < 0) {
            set_error("bad scalar class %s", cname);
            return NULL;
        }
        if (!(b = unhex(h, &n)))
            return NULL;
        v = build_scalar(ci, b, n);
        free(b);
        return v;
    }
    if (strcmp(k, "M") == 0)
        return build_matrix(t, rowmajor, keep);
    if (strcmp(k, "U") == 0) {
        const char *h = next_token(t);
        unsigned char *b;
        size_t n;
        dime_value *v = NULL;
        if (!h || !(b = unhex(h, &n)))
            return NULL;
        v = check_new(dime_value_new_string((const char *)b, n, &v), &v, "dime_value_new_string");
        free(b);
        return v;
    }
    if (strcmp(k, "L") == 0) {
        size_t n, i;
        dime_value *list;
        if (!next_size(t, &n))
            return NULL;
        list = dime_value_new_list();
        for (i = 0; i < n; i++) {
            dime_value *item = build(t, 0, keep);
            if (!item || dime_value_list_append(list, item) != DIME_STATUS_OK) {
                if (item)
                    set_error("dime_value_list_append: %s", dime_last_error());
                dime_value_free(item);
                dime_value_free(list);
                return NULL;
            }
        }
        return list;
    }
    if (strcmp(k, "D") == 0) {
        size_t n, i;
        dime_value *map;
        if (!next_size(t, &n))
            return NULL;
        map = dime_value_new_map();
        for (i = 0; i < n; i++) {
            dime_value *key = build(t, 0, keep);
            dime_value *val = key ? build(t, 0, keep) : NULL;
            if (!key || !val || dime_value_map_set_value(map, key, val) != DIME_STATUS_OK) {
                if (key && val)
                    set_error("dime_value_map_set_value: %s", dime_last_error());
                dime_value_free(key);
                dime_value_free(val);
                dime_value_free(map);
                return NULL;
            }
        }
        return map;
    }
    set_error("no C value for a %s node", k);
    return NULL;
}

/* ------------------------------------------------------------ describing */

static int describe(const dime_value *v, buf *out);

static int describe_scalar(const dime_value *v, int ci, buf *out)
{
    unsigned char b[16];
    size_t n = 0, part = CLASSES[ci].part;
    dime_status st = DIME_STATUS_OK;
    switch (CLASSES[ci].kind) {
#define GET(KIND, CTYPE, GETTER)                                                                   \
    case KIND: {                                                                                   \
        CTYPE x;                                                                                   \
        st = GETTER(v, &x);                                                                        \
        memcpy(b, &x, sizeof x);                                                                   \
        n = sizeof x;                                                                              \
        break;                                                                                     \
    }
        GET(DIME_KIND_INT8, int8_t, dime_value_get_int8)
        GET(DIME_KIND_INT16, int16_t, dime_value_get_int16)
        GET(DIME_KIND_INT32, int32_t, dime_value_get_int32)
        GET(DIME_KIND_INT64, int64_t, dime_value_get_int64)
        GET(DIME_KIND_UINT8, uint8_t, dime_value_get_uint8)
        GET(DIME_KIND_UINT16, uint16_t, dime_value_get_uint16)
        GET(DIME_KIND_UINT32, uint32_t, dime_value_get_uint32)
        GET(DIME_KIND_UINT64, uint64_t, dime_value_get_uint64)
        GET(DIME_KIND_SINGLE, float, dime_value_get_single)
        GET(DIME_KIND_DOUBLE, double, dime_value_get_double)
#undef GET
    case DIME_KIND_COMPLEX_SINGLE: {
        float z[2];
        st = dime_value_get_complex_single(v, &z[0], &z[1]);
        memcpy(b, z, sizeof z);
        n = sizeof z;
        break;
    }
    case DIME_KIND_COMPLEX_DOUBLE: {
        double z[2];
        st = dime_value_get_complex_double(v, &z[0], &z[1]);
        memcpy(b, z, sizeof z);
        n = sizeof z;
        break;
    }
    default:
        set_error("no scalar kind %d", (int)CLASSES[ci].kind);
        return 0;
    }
    if (st != DIME_STATUS_OK) {
        set_error("reading a %s scalar: %s", CLASSES[ci].name, dime_last_error());
        return 0;
    }
    swap_parts(b, n, part);
    buf_word(out, "S");
    buf_word(out, CLASSES[ci].name);
    buf_hex(out, b, n);
    return 1;
}

static int describe_matrix(const dime_value *v, buf *out)
{
    dime_class cls = 0;
    size_t rank = 0, nbytes = 0, i;
    const size_t *dims = NULL;
    const void *data = NULL;
    unsigned char *copy;
    int ci;
    if (dime_matrix_class(v, &cls) || dime_matrix_rank(v, &rank) ||
        (rank && dime_matrix_dims(v, &dims)) || dime_matrix_data(v, &data, &nbytes)) {
        set_error("reading a matrix: %s", dime_last_error());
        return 0;
    }
    if ((ci = class_index_of(cls)) < 0) {
        set_error("matrix of unknown class %u", (unsigned)cls);
        return 0;
    }
    buf_word(out, "M");
    buf_word(out, CLASSES[ci].name);
    buf_fmt(out, "%zu", rank);
    for (i = 0; i < rank; i++)
        buf_fmt(out, "%zu", dims[i]);
    copy = xmalloc(nbytes);
    if (nbytes)
        memcpy(copy, data, nbytes);
    swap_parts(copy, nbytes, CLASSES[ci].part);
    buf_hex(out, copy, nbytes);
    free(copy);
    return 1;
}

static int describe(const dime_value *v, buf *out)
{
    dime_kind kind = dime_value_kind(v);
    int ci;
    switch (kind) {
    case DIME_KIND_NULL:
        buf_word(out, "N");
        return 1;
    case DIME_KIND_BOOL: {
        bool b = false;
        if (dime_value_get_bool(v, &b) != DIME_STATUS_OK) {
            set_error("reading a bool: %s", dime_last_error());
            return 0;
        }
        buf_word(out, "B");
        buf_word(out, b ? "1" : "0");
        return 1;
    }
    case DIME_KIND_MATRIX:
        return describe_matrix(v, out);
    case DIME_KIND_STRING: {
        const char *s = NULL;
        size_t n = 0;
        if (dime_value_get_string(v, &s, &n) != DIME_STATUS_OK) {
            set_error("reading a string: %s", dime_last_error());
            return 0;
        }
        buf_word(out, "U");
        buf_hex(out, (const unsigned char *)s, n);
        return 1;
    }
    case DIME_KIND_LIST: {
        size_t n = 0, i;
        if (dime_value_list_len(v, &n) != DIME_STATUS_OK)
            return 0;
        buf_word(out, "L");
        buf_fmt(out, "%zu", n);
        for (i = 0; i < n; i++) {
            const dime_value *x = NULL;
            if (dime_value_list_get(v, i, &x) != DIME_STATUS_OK || !describe(x, out))
                return 0;
        }
        return 1;
    }
    case DIME_KIND_MAP: {
        size_t n = 0, i;
        if (dime_value_map_len(v, &n) != DIME_STATUS_OK)
            return 0;
        buf_word(out, "D");
        buf_fmt(out, "%zu", n);
        for (i = 0; i < n; i++) {
            const dime_value *k = NULL, *x = NULL;
            if (dime_value_map_key_at(v, i, &k) != DIME_STATUS_OK ||
                dime_value_map_value_at(v, i, &x) != DIME_STATUS_OK || !describe(k, out) ||
                !describe(x, out))
                return 0;
        }
        return 1;
    }
    default:
        if ((ci = kind_index_of(kind)) >= 0)
            return describe_scalar(v, ci, out);
        set_error("value of unknown kind %d", (int)kind);
        return 0;
    }
}

/* ------------------------------------------------------------ commands */

static void say_hexmsg(const char *word, const char *id, const char *msg)
{
    buf b = {0};
    buf_word(&b, word);
    if (id)
        buf_word(&b, id);
    buf_hex(&b, (const unsigned char *)msg, strlen(msg));
    printf("%s\n", b.s);
    fflush(stdout);
    free(b.s);
}

/* A stored row: its id, hints and the tokens of its value. */
typedef struct {
    char *id;
    int rowmajor;
    char *line;
    tokens t;
} row;

static void split(char *line, tokens *t)
{
    size_t cap = 64;
    char *p = line;
    t->tok = xmalloc(cap * sizeof *t->tok);
    t->n = 0;
    t->pos = 0;
    while (*p) {
        char *sp = strchr(p, ' ');
        if (t->n == cap) {
            char **bigger = realloc(t->tok, 2 * cap * sizeof *t->tok);
            if (!bigger) {
                fprintf(stderr, "driver.c: out of memory\n");
                exit(2);
            }
            t->tok = bigger;
            cap *= 2;
        }
        t->tok[t->n++] = p;
        if (!sp)
            break;
        *sp = 0;
        p = sp + 1;
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void send_rows(dime_client *c, row *rows, size_t nrows, const char *group,
                      const char *prefix)
{
    size_t i, j, count = 0;
    char name[256], text[32];
    dime_value *marker = NULL;
    for (i = 0; i < nrows; i++) {
        keep_list keep = {{0}, 0};
        dime_value *v;
        rows[i].t.pos = 0;
        v = build(&rows[i].t, rows[i].rowmajor, &keep);
        if (v && rows[i].t.pos != rows[i].t.n) {
            set_error("tokens left over after the value");
            dime_value_free(v);
            v = NULL;
        }
        snprintf(name, sizeof name, "%s__%s", prefix, rows[i].id);
        if (!v)
            say_hexmsg("err", rows[i].id, g_error);
        else if (dime_send(c, group, name, v) != DIME_STATUS_OK)
            say_hexmsg("err", rows[i].id, dime_last_error());
        else {
            printf("sent %s\n", rows[i].id);
            fflush(stdout);
            count++;
        }
        dime_value_free(v);
        for (j = 0; j < keep.n; j++)
            free(keep.p[j]);
    }
    /* the end marker: how many rows this sender sent */
    snprintf(name, sizeof name, "%s__end", prefix);
    snprintf(text, sizeof text, "%zu", count);
    if (dime_value_new_string(text, strlen(text), &marker) != DIME_STATUS_OK ||
        dime_send(c, group, name, marker) != DIME_STATUS_OK)
        say_hexmsg("err", "-", dime_last_error());
    dime_value_free(marker);
    printf("sent-done\n");
    fflush(stdout);
}

/* Senders of a recv command: each one's announced row count (-1 until its
 * end marker arrives) and how many of its rows arrived. */
typedef struct {
    const char *name;
    long announced;
    long arrived;
} sender;

static int all_arrived(const sender *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (s[i].announced < 0 || s[i].arrived < s[i].announced)
            return 0;
    return 1;
}

static sender *find_sender(sender *s, size_t n, const char *name, size_t len)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (strlen(s[i].name) == len && strncmp(s[i].name, name, len) == 0)
            return &s[i];
    return NULL;
}

static void receive(dime_client *c, sender *senders, size_t nsenders, double seconds)
{
    double deadline = now() + seconds;
    while (!all_arrived(senders, nsenders) && now() < deadline) {
        dime_messages *msgs = NULL;
        size_t queued = 0, i;
        dime_status st = dime_wait(c, 200, &queued);
        if (st == DIME_STATUS_TIMEOUT)
            continue;
        if (st != DIME_STATUS_OK) {
            say_hexmsg("rerr", NULL, dime_last_error());
            break;
        }
        if (dime_sync(c, 1, &msgs) != DIME_STATUS_OK) {
            say_hexmsg("rerr", NULL, dime_last_error());
            continue;
        }
        for (i = 0; i < dime_messages_len(msgs); i++) {
            const char *name = NULL, *cut;
            const dime_value *v = NULL;
            sender *from;
            buf b = {0};
            if (dime_messages_get(msgs, i, &name, &v) != DIME_STATUS_OK) {
                say_hexmsg("rerr", NULL, dime_last_error());
                continue;
            }
            cut = strstr(name, "__");
            from = cut ? find_sender(senders, nsenders, name, (size_t)(cut - name)) : NULL;
            if (from && strcmp(cut, "__end") == 0 && dime_value_kind(v) == DIME_KIND_STRING) {
                const char *s = NULL;
                size_t len = 0;
                char text[32] = {0};
                dime_value_get_string(v, &s, &len);
                memcpy(text, s, len < sizeof text - 1 ? len : sizeof text - 1);
                from->announced = strtol(text, NULL, 10);
                continue;
            }
            if (from)
                from->arrived++;
            if (describe(v, &b))
                printf("got %s %s\n", name, b.s);
            else {
                free(b.s);
                b.s = NULL;
                b.len = b.cap = 0;
                buf_word(&b, "E");
                buf_hex(&b, (const unsigned char *)g_error, strlen(g_error));
                printf("got %s %s\n", name, b.s);
            }
            fflush(stdout);
            free(b.s);
        }
        dime_messages_free(msgs);
    }
    printf("recv-done\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    char addr[1024], *line = NULL;
    size_t cap = 0, nrows = 0, rows_cap = 128, i;
    ssize_t len;
    dime_client *c = NULL;
    const char *groups[1];
    row *rows;
    if (argc < 3) {
        fprintf(stderr, "usage: driver SOCKET GROUP\n");
        return 2;
    }
    snprintf(addr, sizeof addr, "unix:%s", argv[1]);
    if (dime_connect(addr, &c) != DIME_STATUS_OK) {
        fprintf(stderr, "driver.c: dime_connect: %s\n", dime_last_error());
        return 1;
    }
    groups[0] = argv[2];
    if (dime_join(c, groups, 1) != DIME_STATUS_OK) {
        fprintf(stderr, "driver.c: dime_join: %s\n", dime_last_error());
        return 1;
    }
    printf("ready c %s\n", dime_version());
    fflush(stdout);
    rows = xmalloc(rows_cap * sizeof *rows);
    while ((len = getline(&line, &cap, stdin)) > 0) {
        tokens w;
        if (line[len - 1] == '\n')
            line[len - 1] = 0;
        if (strncmp(line, "row ", 4) == 0) {
            row *r;
            char *copy = strdup(line);
            if (!copy)
                return 2;
            if (nrows == rows_cap) {
                row *bigger = realloc(rows, 2 * rows_cap * sizeof *rows);
                if (!bigger)
                    return 2;
                rows = bigger;
                rows_cap *= 2;
            }
            r = &rows[nrows];
            split(copy, &r->t);
            if (r->t.n < 4) {
                say_hexmsg("err", "-", "malformed row command");
                free(r->t.tok);
                free(copy);
                continue;
            }
            r->line = copy;
            r->id = r->t.tok[1];
            r->rowmajor = strstr(r->t.tok[2], "rowmajor") != NULL;
            /* the value starts at the fourth word */
            r->t.tok += 3;
            r->t.n -= 3;
            nrows++;
            continue;
        }
        split(line, &w);
        if (w.n >= 3 && strcmp(w.tok[0], "send") == 0)
            send_rows(c, rows, nrows, w.tok[1], w.tok[2]);
        else if (w.n >= 2 && strcmp(w.tok[0], "recv") == 0) {
            size_t nsenders = w.n - 2, j;
            sender *senders = xmalloc(nsenders * sizeof *senders);
            for (j = 0; j < nsenders; j++) {
                senders[j].name = w.tok[2 + j];
                senders[j].announced = -1;
                senders[j].arrived = 0;
            }
            receive(c, senders, nsenders, strtod(w.tok[1], NULL));
            free(senders);
        } else
            say_hexmsg("err", "-", "unknown command");
        free(w.tok);
    }
    for (i = 0; i < nrows; i++) {
        free(rows[i].t.tok - 3);
        free(rows[i].line);
    }
    free(rows);
    free(line);
    dime_client_free(c);
    return 0;
}
