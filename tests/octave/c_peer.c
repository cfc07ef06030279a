/*
 * c_peer.c: the C side of the Octave <-> C matrix interop test (test_c.m),
 * a plain client of include/dime.h.
 *
 *   c_peer SOCKET
 *
 * Joins "c", sends `ready` to "oct", receives Octave's matrices until
 * `done` and checks class, rank, dims and elements (bit for bit), then
 * sends to "oct": `report` (a list of "PASS ..."/"FAIL ..." strings), its
 * own matrices, and `done`.
 */
#include "dime.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static dime_value *g_report;

static void report(int ok, const char *name, const char *why)
{
    char line[512];
    dime_value *s = NULL;
    snprintf(line, sizeof line, "%s c receives %s%s%s", ok ? "PASS" : "FAIL", name, ok ? "" : ": ",
             ok ? "" : why);
    if (dime_value_new_string(line, strlen(line), &s) == DIME_STATUS_OK)
        dime_value_list_append(g_report, s);
}

static void die(const char *what)
{
    fprintf(stderr, "c_peer: %s: %s\n", what, dime_last_error());
    exit(1);
}

/* Checks that `v` is a matrix of class `cls`, shape dims[0..rank), with
 * exactly the bytes of `data`. */
static void check_matrix(const char *name, const dime_value *v, dime_class cls, size_t rank,
                         const size_t *dims, const void *data, size_t nbytes)
{
    dime_class c = 0;
    size_t r = 0, n = 0;
    const size_t *d = NULL;
    const void *p = NULL;
    char why[256];
    if (dime_value_kind(v) != DIME_KIND_MATRIX) {
        snprintf(why, sizeof why, "kind %d, expected a matrix", (int)dime_value_kind(v));
        report(0, name, why);
        return;
    }
    if (dime_matrix_class(v, &c) || dime_matrix_rank(v, &r) || dime_matrix_data(v, &p, &n)) {
        report(0, name, dime_last_error());
        return;
    }
    if (r > 0 && dime_matrix_dims(v, &d)) {
        report(0, name, dime_last_error());
        return;
    }
    if (c != cls) {
        snprintf(why, sizeof why, "class %u, expected %u", (unsigned)c, (unsigned)cls);
        report(0, name, why);
        return;
    }
    if (r != rank || (rank && memcmp(d, dims, rank * sizeof *dims) != 0)) {
        snprintf(why, sizeof why, "rank %zu dims [%zu %zu ...], expected rank %zu", r,
                 r > 0 ? d[0] : 0, r > 1 ? d[1] : 0, rank);
        report(0, name, why);
        return;
    }
    if (n != nbytes || (nbytes && memcmp(p, data, nbytes) != 0)) {
        report(0, name, "elements differ");
        return;
    }
    report(1, name, "");
}

static const dime_value *find(dime_messages **all, size_t nall, const char *name)
{
    size_t i, j;
    for (i = 0; i < nall; i++) {
        for (j = 0; j < dime_messages_len(all[i]); j++) {
            const char *n = NULL;
            const dime_value *v = NULL;
            if (dime_messages_get(all[i], j, &n, &v) == DIME_STATUS_OK && strcmp(n, name) == 0)
                return v;
        }
    }
    return NULL;
}

static dime_value *matrix(dime_class cls, size_t rank, const size_t *dims, const void *data)
{
    dime_value *v = NULL;
    if (dime_value_new_matrix(cls, rank, dims, data, &v) != DIME_STATUS_OK)
        die("dime_value_new_matrix");
    return v;
}

int main(int argc, char **argv)
{
    char addr[1024];
    dime_client *c = NULL;
    const char *groups[1] = {"c"};
    dime_messages *all[256];
    size_t nall = 0, i;
    int done = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: c_peer SOCKET\n");
        return 2;
    }
    snprintf(addr, sizeof addr, "unix:%s", argv[1]);
    if (dime_connect(addr, &c) != DIME_STATUS_OK)
        die("dime_connect");
    if (dime_join(c, groups, 1) != DIME_STATUS_OK)
        die("dime_join");
    {
        dime_value *t = dime_value_new_bool(true);
        if (dime_send(c, "oct", "ready", t) != DIME_STATUS_OK)
            die("dime_send ready");
        dime_value_free(t);
    }
    while (!done && nall < 256) {
        size_t count = 0;
        if (dime_wait(c, 60000, &count) != DIME_STATUS_OK)
            die("dime_wait");
        if (dime_sync(c, DIME_SYNC_ALL, &all[nall]) != DIME_STATUS_OK)
            die("dime_sync");
        nall++;
        done = find(all, nall, "done") != NULL;
    }

    g_report = dime_value_new_list();
    {
        /* What test_c.m sends, with the bytes C expects (column-major). */
        static const double m33[] = {1, 4, 7, 2, 5, 8, 3, 6, 9};
        static const size_t d33[] = {3, 3};
        double m3d[24];
        static const size_t d3d[] = {2, 3, 4};
        static const int64_t i64[] = {INT64_MIN, INT64_MAX};
        static const size_t d12[] = {1, 2};
        static const uint64_t u64[] = {UINT64_MAX, 0, 1};
        static const size_t d31[] = {3, 1};
        static const uint8_t lg[] = {1, 0, 0, 1};
        static const size_t d22[] = {2, 2};
        static const double cx[] = {1, 2, 3, 0};
        static const float cs[] = {1, 0, 2, 0};
        static const size_t d21[] = {2, 1};
        float s4[8];
        static const size_t d4[] = {2, 1, 2, 2};
        static const size_t d03[] = {0, 3};
        double spec[4];
        static const size_t d14[] = {1, 4};
        static const int8_t i8[] = {-1, 4, 2, -5, 3, 6};
        static const size_t d23[] = {2, 3};
        const dime_value *v;
        double x = 0;
        for (i = 0; i < 24; i++)
            m3d[i] = (double)(i + 1);
        for (i = 0; i < 8; i++)
            s4[i] = (float)(i + 1) / 2;
        spec[0] = NAN;
        spec[1] = INFINITY;
        spec[2] = -INFINITY;
        spec[3] = -0.0;
#define CHECK(name, cls, rank, dims, data, nbytes)                                                 \
    do {                                                                                           \
        v = find(all, nall, name);                                                                 \
        if (!v)                                                                                    \
            report(0, name, "not received");                                                       \
        else                                                                                       \
            check_matrix(name, v, cls, rank, dims, data, nbytes);                                  \
    } while (0)
        CHECK("m33", DIME_CLASS_DOUBLE, 2, d33, m33, sizeof m33);
        CHECK("m3d", DIME_CLASS_DOUBLE, 3, d3d, m3d, sizeof m3d);
        CHECK("i64", DIME_CLASS_INT64, 2, d12, i64, sizeof i64);
        CHECK("u64", DIME_CLASS_UINT64, 2, d31, u64, sizeof u64);
        CHECK("lg", DIME_CLASS_LOGICAL, 2, d22, lg, sizeof lg);
        CHECK("cx", DIME_CLASS_COMPLEX_DOUBLE, 2, d12, cx, sizeof cx);
        CHECK("cs", DIME_CLASS_COMPLEX_SINGLE, 2, d21, cs, sizeof cs);
        CHECK("s4", DIME_CLASS_SINGLE, 4, d4, s4, sizeof s4);
        CHECK("e03", DIME_CLASS_DOUBLE, 2, d03, NULL, 0);
        CHECK("spec", DIME_CLASS_DOUBLE, 2, d14, spec, sizeof spec);
        CHECK("i8", DIME_CLASS_INT8, 2, d23, i8, sizeof i8);
#undef CHECK
        v = find(all, nall, "sc");
        report(v && dime_value_get_double(v, &x) == DIME_STATUS_OK && x == 2.5, "sc",
               "not the double scalar 2.5");
    }
    for (i = 0; i < nall; i++)
        dime_messages_free(all[i]);

    {
        /* What C sends; test_c.m holds what Octave expects. */
        static const double cm[] = {1, 2, 3, 4, 5, 6};
        static const size_t dcm[] = {2, 3};
        static const double cv[] = {1, 2, 3, 4};
        static const size_t dcv[] = {4};
        static const int32_t c3[] = {1, 2, 3, 4, 5, 6, 7, 8};
        static const size_t dc3[] = {2, 2, 2};
        static const double cr0[] = {7};
        static const uint8_t cl[] = {1, 0, 1, 1};
        static const size_t dcl[] = {2, 2};
        static const double cz[] = {1, 0, 2, 0};
        static const size_t dcz[] = {1, 2};
        static const uint64_t cu[] = {UINT64_MAX, 5};
        static const size_t dcu[] = {2};
        static const size_t dce[] = {0, 4};
        static const int16_t c4[] = {1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12};
        static const size_t dc4[] = {1, 2, 3, 2};
        const char *names[] = {"report", "cm", "cv", "c3", "cr0", "cl", "cz", "cu", "ce", "c4", "done"};
        dime_value *values[11];
        values[0] = g_report;
        values[1] = matrix(DIME_CLASS_DOUBLE, 2, dcm, cm);
        values[2] = matrix(DIME_CLASS_DOUBLE, 1, dcv, cv);
        values[3] = matrix(DIME_CLASS_INT32, 3, dc3, c3);
        values[4] = matrix(DIME_CLASS_DOUBLE, 0, NULL, cr0);
        values[5] = matrix(DIME_CLASS_LOGICAL, 2, dcl, cl);
        values[6] = matrix(DIME_CLASS_COMPLEX_DOUBLE, 2, dcz, cz);
        values[7] = matrix(DIME_CLASS_UINT64, 1, dcu, cu);
        values[8] = matrix(DIME_CLASS_SINGLE, 2, dce, NULL);
        values[9] = matrix(DIME_CLASS_INT16, 4, dc4, c4);
        values[10] = dime_value_new_bool(true);
        if (dime_send_many(c, "oct", names, (const dime_value *const *)values, 11) != DIME_STATUS_OK)
            die("dime_send_many");
        for (i = 0; i < 11; i++)
            dime_value_free(values[i]);
    }
    dime_client_free(c);
    return 0;
}
