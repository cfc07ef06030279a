/* Impossible matrix shapes and string lengths are refused with
 * DIME_STATUS_INVALID_ARGUMENT and a readable message before a single byte
 * of the caller's buffer is read (issue 21).
 *
 * usage: shapes
 *
 * Needs no server: only constructors are called. The buffers are 16-byte
 * heap blocks, so a constructor that read past them before checking the
 * shape would crash here or be flagged by valgrind (tests/c_api.rs runs
 * this program under valgrind too). Assumes a 64-bit size_t, like the
 * library's supported targets. */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"

#if SIZE_MAX <= 0xFFFFFFFFu
#error "these shapes need a 64-bit size_t"
#endif

#define U32_MAX ((size_t)0xFFFFFFFFu)

typedef dime_status (*matrix_ctor)(dime_class, size_t, const size_t *, const void *,
                                   dime_value **);

static const struct {
    const char *name;
    matrix_ctor ctor;
} ctors[] = {
    {"copied", dime_value_new_matrix},
    {"borrowed", dime_value_new_matrix_borrowed},
    {"borrowed row-major", dime_value_new_matrix_borrowed_row_major},
};

#define N_CTORS (sizeof ctors / sizeof ctors[0])

/* Every DIME_CLASS_* constant. */
static const dime_class classes[] = {
    DIME_CLASS_INT8,   DIME_CLASS_INT16,  DIME_CLASS_INT32,          DIME_CLASS_INT64,
    DIME_CLASS_UINT8,  DIME_CLASS_UINT16, DIME_CLASS_UINT32,         DIME_CLASS_UINT64,
    DIME_CLASS_SINGLE, DIME_CLASS_DOUBLE, DIME_CLASS_COMPLEX_SINGLE, DIME_CLASS_COMPLEX_DOUBLE,
    DIME_CLASS_LOGICAL,
};

#define N_CLASSES (sizeof classes / sizeof classes[0])

/* A 16-byte heap block: reading beyond it is a valgrind error. */
static unsigned char *small_buffer(void)
{
    unsigned char *buf = malloc(16);
    if (buf == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    memset(buf, 1, 16);
    return buf;
}

/* Every class through every constructor: the shape is refused with
 * DIME_STATUS_INVALID_ARGUMENT, the message contains `text`, and `*out`
 * is left alone. */
static void refused(const char *what, size_t rank, const size_t *dims, const char *text)
{
    unsigned char *buf = small_buffer();
    for (size_t c = 0; c < N_CLASSES; c++) {
        for (size_t k = 0; k < N_CTORS; k++) {
            dime_value *out = NULL;
            dime_status st = ctors[k].ctor(classes[c], rank, dims, buf, &out);
            int ok = st == DIME_STATUS_INVALID_ARGUMENT && out == NULL &&
                     strstr(dime_last_error(), text) != NULL;
            char label[160];
            snprintf(label, sizeof label, "%s, class %u, %s: status %d, error has \"%s\"", what,
                     (unsigned)classes[c], ctors[k].name, (int)st, text);
            check_report(ok, label, __FILE__, __LINE__);
            if (!ok) {
                printf("#   last error: %s\n", dime_last_error());
            }
            dime_value_free(out);
        }
    }
    free(buf);
}

/* Shapes with a zero dimension hold no elements, however large the other
 * dimensions are (as long as each fits the wire's u32), so they are valid
 * and need no data at all. */
static void empty_is_valid(const char *what, size_t rank, const size_t *dims)
{
    for (size_t c = 0; c < N_CLASSES; c++) {
        for (size_t k = 0; k < N_CTORS; k++) {
            dime_value *out = NULL;
            size_t numel = 99;
            char label[160];
            snprintf(label, sizeof label, "%s, class %u, %s: valid and empty", what,
                     (unsigned)classes[c], ctors[k].name);
            int ok = ctors[k].ctor(classes[c], rank, dims, NULL, &out) == DIME_STATUS_OK &&
                     dime_matrix_numel(out, &numel) == DIME_STATUS_OK && numel == 0;
            check_report(ok, label, __FILE__, __LINE__);
            dime_value_free(out);
        }
    }
}

static void matrices(void)
{
    const size_t d33[] = {(size_t)1 << 33};
    const size_t d40[] = {(size_t)1 << 40};
    const size_t square[] = {U32_MAX, U32_MAX};
    const size_t cube[] = {U32_MAX, U32_MAX, U32_MAX};
    const size_t just_over[] = {U32_MAX, 2};
    const size_t zero_and_huge[] = {0, (size_t)1 << 33};
    const size_t huge_then_zero[] = {U32_MAX, U32_MAX, U32_MAX, 0};
    const size_t zero_then_max[] = {0, U32_MAX};
    size_t many[256];

    refused("{2^33}", 1, d33, "too large");
    CHECK_ERROR_HAS("4294967295");
    refused("{2^40}", 1, d40, "too large");
    refused("{SIZE_MAX}", 1, (const size_t[]){SIZE_MAX}, "too large");
    /* Each dimension fits, but the byte count is beyond what a frame (and,
     * for uint8, isize::MAX) allows: borrowed used to return OK here. */
    refused("{2^32-1, 2^32-1}", 2, square, "too large");
    /* The element count overflows size_t. */
    refused("{2^32-1, 2^32-1, 2^32-1}", 3, cube, "too large");
    /* 8 GiB for uint8 already, one element over for nothing: still no frame. */
    refused("{2^32-1, 2}", 2, just_over, "too large");
    CHECK_ERROR_HAS("frame");
    /* A zero dimension does not excuse one the wire cannot carry. */
    refused("{0, 2^33}", 2, zero_and_huge, "too large");

    empty_is_valid("{0, 2^32-1}", 2, zero_then_max);
    empty_is_valid("{2^32-1, 2^32-1, 2^32-1, 0}", 4, huge_then_zero);

    /* Rank above the wire's u8: refused before `dims` is read, so a
     * garbage rank with a short (or NULL) array is safe. */
    for (size_t i = 0; i < 256; i++) {
        many[i] = 1;
    }
    refused("rank 256", 256, many, "rank");
    refused("rank SIZE_MAX, NULL dims", SIZE_MAX, NULL, "rank");

    /* Unknown classes, whatever the shape. */
    {
        unsigned char *buf = small_buffer();
        const dime_class bad[] = {0, 1, 2, 16, 99, 0xFFFFFFFFu};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            for (size_t k = 0; k < N_CTORS; k++) {
                dime_value *out = NULL;
                CHECK_STATUS(ctors[k].ctor(bad[i], 1, d33, buf, &out),
                             DIME_STATUS_INVALID_ARGUMENT);
                CHECK_ERROR_HAS("class");
                CHECK(out == NULL);
            }
        }
        free(buf);
    }

    /* Rank 0 with NULL dims is a valid one-element shape; a positive rank
     * with NULL dims is a NULL argument. */
    for (size_t c = 0; c < N_CLASSES; c++) {
        for (size_t k = 0; k < N_CTORS; k++) {
            unsigned char *buf = small_buffer();
            dime_value *out = NULL;
            size_t numel = 0;
            memset(buf, 0, 16);
            CHECK_OK(ctors[k].ctor(classes[c], 0, NULL, buf, &out));
            CHECK_OK(dime_matrix_numel(out, &numel));
            CHECK(numel == 1);
            dime_value_free(out);
            out = NULL;
            CHECK_STATUS(ctors[k].ctor(classes[c], 0, NULL, NULL, &out),
                         DIME_STATUS_NULL_ARGUMENT);
            CHECK_ERROR_HAS("data");
            CHECK_STATUS(ctors[k].ctor(classes[c], 2, NULL, buf, &out),
                         DIME_STATUS_NULL_ARGUMENT);
            CHECK_ERROR_HAS("dims");
            CHECK(out == NULL);
            free(buf);
        }
    }
}

/* String lengths the wire cannot carry are refused before the bytes are
 * read (validating UTF-8 would read all of them). */
static void strings(void)
{
    unsigned char *buf = small_buffer();
    const size_t lens[] = {U32_MAX + 1, (size_t)1 << 40, SIZE_MAX / 2 + 1, SIZE_MAX};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        dime_value *out = NULL;
        CHECK_STATUS(dime_value_new_string((const char *)buf, lens[i], &out),
                     DIME_STATUS_INVALID_ARGUMENT);
        CHECK_ERROR_HAS("too large");
        CHECK(out == NULL);
    }
    free(buf);
}

int main(void)
{
    matrices();
    strings();
    return check_done();
}
