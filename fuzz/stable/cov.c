/* Edge counters for the stable fuzzer. rustc's SanitizerCoverage pass
 * (-C passes=sancov-module, trace-pc-guard) calls these two functions;
 * they live in C, which is compiled without that pass, so counting an edge
 * is not itself an edge. Each guard gets an index into `counters`. */
#include <stddef.h>
#include <stdint.h>

#define MAX_GUARDS (1u << 21)

static uint32_t next_guard = 1; /* 0: past the map, not counted */
static uint8_t counters[MAX_GUARDS];

void __sanitizer_cov_trace_pc_guard_init(uint32_t *start, uint32_t *stop)
{
    if (start == stop || *start)
        return;
    for (uint32_t *g = start; g < stop; g++)
        *g = next_guard < MAX_GUARDS ? next_guard++ : 0;
}

void __sanitizer_cov_trace_pc_guard(uint32_t *guard)
{
    uint8_t *c = &counters[*guard];
    if (*c != 255)
        (*c)++;
}

uint8_t *dime_cov_counters(void) { return counters; }

size_t dime_cov_len(void) { return next_guard; }
