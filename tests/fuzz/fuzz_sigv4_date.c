/*
 * fuzz_sigv4_date.c — sigv4_parse_date (common/sigv4.c), the X-Amz-Date header ("YYYYMMDDTHHMMSSZ")
 * that the server checks for clock skew. The input is the header value (up to its first NUL). Whatever
 * is not of that shape must give -1, and so must a date with a field out of range (month 13, 30 February,
 * hour 24, second 60) or before 1970; a valid date must round-trip through sigv4_format_date.
 */
#include <stdbool.h>
#include <string.h>

#include "envelopefs/sigv4.h"
#include "fuzz.h"

static int num(const char *d, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (d[i] - '0');
    return v;
}

static bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    char *d = malloc(size + 1), back[17];
    bool shaped, in_range;
    int64_t t;

    if (!d)
        return 0;
    memcpy(d, data, size);
    d[size] = 0;
    t = sigv4_parse_date(d);
    shaped = strlen(d) == 16 && d[8] == 'T' && d[15] == 'Z' && strspn(d, "0123456789") == 8 &&
             strspn(d + 9, "0123456789") == 6;
    if (!shaped) {
        FUZZ_CHECK(t == -1);
        free(d);
        return 0;
    }
    {
        int y = num(d, 4), mo = num(d + 4, 2), day = num(d + 6, 2), h = num(d + 9, 2), mi = num(d + 11, 2),
            s = num(d + 13, 2);
        in_range = y >= 1000 && mo >= 1 && mo <= 12 && day >= 1 &&
                   day <= mdays[mo - 1] + (mo == 2 && leap(y)) && h < 24 && mi < 60 && s < 60;
    }
    if (!in_range || strncmp(d, "1970", 4) < 0) {
        FUZZ_CHECK(t == -1);
    } else {
        FUZZ_CHECK(t >= 0);
        sigv4_format_date(t, back);
        FUZZ_CHECK(!strcmp(back, d));
    }
    free(d);
    return 0;
}
