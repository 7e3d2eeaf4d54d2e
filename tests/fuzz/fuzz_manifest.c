/*
 * fuzz_manifest.c — the snapshot manifest (vol/manifest.c), read back from the catalog when a signature
 * is verified. Any input either fails to decode (-EBADMSG) or decodes to fields whose canonical
 * encoding is exactly the input (one encoding per manifest: what was signed is what is compared), and
 * the decoded manifest differs from itself in no field.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t enc[VOL_MANIFEST_MAX];
    vol_manifest m;
    size_t len = 0;
    int rc = vol_manifest_decode(data, size, &m);
    FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
    if (rc)
        return 0;
    FUZZ_CHECK(vol_manifest_encode(&m, enc, sizeof enc, &len) == 0);
    FUZZ_CHECK(len == size && !memcmp(enc, data, size));
    FUZZ_CHECK(vol_manifest_diff(&m, &m) == NULL);
    return 0;
}
