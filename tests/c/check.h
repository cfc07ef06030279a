/* Tiny TAP-like check helpers shared by the C tests: each check prints
 * "ok"/"not ok" with its line, and check_done() gives the exit status. */
#ifndef DIME_TEST_CHECK_H
#define DIME_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dime.h"

static int check_failures = 0;
static int check_count = 0;

static void check_report(int ok, const char *what, const char *file, int line)
{
    check_count++;
    if (ok) {
        printf("ok %d - %s\n", check_count, what);
    } else {
        check_failures++;
        printf("not ok %d - %s (%s:%d; last error: %s)\n", check_count, what, file, line,
               dime_last_error());
    }
}

/* CHECK(cond): a boolean check. */
#define CHECK(cond) check_report((cond) ? 1 : 0, #cond, __FILE__, __LINE__)

/* CHECK_OK(call): the call returned DIME_STATUS_OK. */
#define CHECK_OK(call) check_report((call) == DIME_STATUS_OK, #call, __FILE__, __LINE__)

/* CHECK_STATUS(call, status): the call failed with exactly this status. */
#define CHECK_STATUS(call, status) \
    check_report((call) == (status), #call " == " #status, __FILE__, __LINE__)

/* CHECK_ERROR_HAS(text): dime_last_error() contains text. */
#define CHECK_ERROR_HAS(text) \
    check_report(strstr(dime_last_error(), (text)) != NULL, \
                 "last error contains \"" text "\"", __FILE__, __LINE__)

static int check_done(void);

/* REQUIRE_OK(call): like CHECK_OK, but ends the program on failure. */
#define REQUIRE_OK(call) \
    do { \
        int require_ok_ = (call) == DIME_STATUS_OK; \
        check_report(require_ok_, #call, __FILE__, __LINE__); \
        if (!require_ok_) exit(check_done()); \
    } while (0)

/* REQUIRE(cond): like CHECK, but ends the program on failure. */
#define REQUIRE(cond) \
    do { \
        int require_ = (cond) ? 1 : 0; \
        check_report(require_, #cond, __FILE__, __LINE__); \
        if (!require_) exit(check_done()); \
    } while (0)

static int check_done(void)
{
    printf("%d checks, %d failed\n", check_count, check_failures);
    return check_failures == 0 && check_count > 0 ? 0 : 1;
}

#endif
