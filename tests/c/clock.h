/* Monotonic milliseconds and sleeping, for the C tests that time blocking
 * calls. Include after defining _POSIX_C_SOURCE. */
#ifndef DIME_TEST_CLOCK_H
#define DIME_TEST_CLOCK_H

#include <time.h>

static inline double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static inline void sleep_ms(long ms)
{
    struct timespec t;
    t.tv_sec = ms / 1000;
    t.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&t, NULL);
}

#endif
