/*
 * fuzz_names.c — the encrypted-name decoders of fs/names.c: efs_name_kind (what a backing directory
 * entry is) and efs_name_decrypt (unpadded base64url, then AES-256-SIV under a fixed name key and
 * directory id, set up once). The input is a backing entry name or a sidecar's content (up to its first
 * NUL); one that starts with '/' (never in a backing name) instead gives, after the '/', a plaintext
 * name to encrypt with efs_name_encrypt and decrypt again. Invariants: a name decrypts only to 1-255
 * bytes without '/', re-encrypts to the very encoding it came from, and is bound to its directory;
 * long names get a backing "L.<hash>" that efs_longname_check accepts; the kinds are as names.h says.
 */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "fuzz.h"
#include "names.h"

static efs_names *names;
static const uint8_t dirid[EFS_DIRID_LEN] = "fuzz-directory!"; /* 15 chars + NUL */
static const uint8_t other_dirid[EFS_DIRID_LEN] = "other-directory";

static void setup(void)
{
    uint8_t key[64];
    if (names)
        return;
    FUZZ_CHECK(sodium_init() >= 0);
    for (int i = 0; i < 64; i++)
        key[i] = (uint8_t)(0xa0 + i); /* fixed: corpus/names/{short,utf8,long}-name* and name-with-underscore
                                         are efs_name_encrypt's output under this key and dirid */
    FUZZ_CHECK(efs_names_new(key, &names) == 0);
}

static enum efs_entry_kind expected_kind(const char *b)
{
    size_t l = strlen(b);
    if (!strncmp(b, "L.", 2))
        return l > 5 && !strcmp(b + l - 5, ".name") ? EFS_ENTRY_INTERNAL : EFS_ENTRY_LONG;
    return strchr(b, '.') ? EFS_ENTRY_INTERNAL : EFS_ENTRY_NAME;
}

/* name decrypted from (or encrypted to) enc: check everything that ties the two together. */
static void check_pair(const char *name, const char *enc)
{
    char backing[EFS_BACKING_MAX], full[EFS_ENC_MAX], out[256];
    bool is_long = false;
    size_t len = strlen(name);

    FUZZ_CHECK(len >= 1 && len <= 255 && !strchr(name, '/'));
    FUZZ_CHECK(efs_name_encrypt(names, dirid, name, backing, &is_long, full) == 0);
    FUZZ_CHECK(!strcmp(full, enc));
    FUZZ_CHECK(strspn(full, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == strlen(full));
    if (is_long) {
        FUZZ_CHECK(strlen(full) > 255 && strlen(backing) <= 255);
        FUZZ_CHECK(efs_name_kind(backing) == EFS_ENTRY_LONG && efs_longname_check(backing, full) == 0);
    } else {
        FUZZ_CHECK(!strcmp(backing, full) && efs_name_kind(backing) == EFS_ENTRY_NAME);
    }
    FUZZ_CHECK(efs_name_decrypt(names, dirid, full, out) == 0 && !strcmp(out, name));
    FUZZ_CHECK(efs_name_decrypt(names, other_dirid, full, out) == -EBADMSG);
    full[0] = full[0] == 'A' ? 'B' : 'A'; /* any change to the encoding fails */
    FUZZ_CHECK(efs_name_decrypt(names, dirid, full, out) == -EBADMSG);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1), out[256], side[EFS_BACKING_MAX], backing[EFS_BACKING_MAX], full[EFS_ENC_MAX];
    enum efs_entry_kind kind;
    bool is_long;
    int rc;

    if (!s)
        return 0;
    setup();
    memcpy(s, data, size);
    s[size] = 0;
    if (s[0] == '/') {
        const char *name = s + 1;
        size_t len = strlen(name);
        rc = efs_name_encrypt(names, dirid, name, backing, &is_long, full);
        if (len > 255)
            FUZZ_CHECK(rc == -ENAMETOOLONG);
        else if (len == 0 || strchr(name, '/'))
            FUZZ_CHECK(rc == -EINVAL);
        else
            FUZZ_CHECK(rc == 0);
        if (rc == 0)
            check_pair(name, full);
        free(s);
        return 0;
    }

    kind = efs_name_kind(s);
    FUZZ_CHECK(kind == expected_kind(s));
    if (kind == EFS_ENTRY_LONG && strlen(s) + 5 < EFS_BACKING_MAX) {
        efs_longname_sidecar(s, side);
        FUZZ_CHECK(!strncmp(side, s, strlen(s)) && !strcmp(side + strlen(s), ".name"));
        FUZZ_CHECK(efs_name_kind(side) == EFS_ENTRY_INTERNAL);
    }
    memset(out, 0x55, sizeof out);
    rc = efs_name_decrypt(names, dirid, s, out);
    FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
    if (rc == 0) {
        FUZZ_CHECK(memchr(out, 0, sizeof out) != NULL);
        check_pair(out, s);
    }
    free(s);
    return 0;
}
