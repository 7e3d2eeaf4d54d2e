/*
 * fuzz_jsonparse.c — efs_json_parse (common/jsonparse.c), the parser of every key-service request body,
 * against jansson's json_loadb(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY), whose behaviour it promises:
 * whatever ours accepts, jansson accepts as the same tree; whatever jansson accepts, ours accepts too,
 * except a text with a raw NUL byte outside strings (jansson ends its input there; RFC 8259 does not)
 * or nested deeper than our limit of 64.
 */
#include <string.h>

#include <jansson.h>

#include "common/jsonparse.h"
#include "fuzz.h"

static int depth_of(const json_t *j)
{
    int d = 0;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            int c = depth_of(v);
            d = c > d ? c : d;
        }
        return d + 1;
    }
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            int c = depth_of(v);
            d = c > d ? c : d;
        }
        return d + 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t je;
    char why[128];
    json_t *want = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    json_t *got = efs_json_parse((const char *)data, size, why, sizeof why);
    if (got)
        FUZZ_CHECK(want && json_equal(want, got));
    else if (want)
        FUZZ_CHECK(memchr(data, 0, size) || depth_of(want) > 64);
    json_decref(want);
    json_decref(got);
    return 0;
}
