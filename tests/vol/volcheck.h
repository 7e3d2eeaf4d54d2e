/*
 * volcheck.h — the volume layer's C tests' assertions: a failed CHECK prints the expression and its place
 * and counts a failure (the test goes on, main returns non-zero when `failures` is not 0), and hex().
 */
#ifndef ENVELOPEFS_TESTS_VOLCHECK_H
#define ENVELOPEFS_TESTS_VOLCHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

static int failures;
#define CHECK(c)                                                                                                 \
    do {                                                                                                         \
        if (!(c)) {                                                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);                                \
            failures++;                                                                                          \
        }                                                                                                        \
    } while (0)

/* n bytes as 2n lowercase hex digits and a NUL into out. */
static inline void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

#endif
