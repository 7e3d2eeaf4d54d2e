/*
 * testutil.h — minimal assertion helpers for the C tests: a failed CHECK prints the expression and
 * location and exits 1, so ctest reports the test as failed.
 */
#ifndef ENVELOPEFS_TESTUTIL_H
#define ENVELOPEFS_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>

static int testutil_checks;

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        testutil_checks++;                                                                                             \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                   \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                                             \
    do {                                                                                                               \
        long long a_ = (long long)(a), b_ = (long long)(b);                                                            \
        testutil_checks++;                                                                                             \
        if (a_ != b_) {                                                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, a_, b_);     \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

#define TEST_DONE()                                                                                                    \
    do {                                                                                                               \
        printf("ok: %d checks passed\n", testutil_checks);                                                             \
        return 0;                                                                                                      \
    } while (0)

#endif
