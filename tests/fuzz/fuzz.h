/*
 * fuzz.h — shared by the fuzz targets: the libFuzzer entry point's prototype and FUZZ_CHECK, which
 * prints the broken invariant and aborts (libFuzzer and the replay driver both report an abort as a
 * crash, with the input that caused it).
 */
#ifndef ENVELOPEFS_FUZZ_H
#define ENVELOPEFS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);                               \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#endif
