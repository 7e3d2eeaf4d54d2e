/*
 * jsonb64.h — binary values in the AWS JSON protocol: base64 (standard alphabet, padded) as a JSON
 * string. Shared by the core, the client library and the CLI.
 */
#ifndef ENVELOPEFS_JSONB64_H
#define ENVELOPEFS_JSONB64_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* New JSON string holding base64(data); the temporary text is wiped. NULL on OOM. */
json_t *efs_json_base64(const uint8_t *data, size_t n);

/*
 * sodium_base642bin (same arguments and result: 0, or -1 with nothing promised about out), refusing
 * any byte outside the variant's alphabet (and '=' for padded variants) and `ignore`. libsodium 1.0.18
 * decodes every byte >= 0x80 as the alphabet's last character, so without this check a non-ASCII
 * string decodes as if it were another, valid one.
 */
int efs_base64_decode(uint8_t *out, size_t cap, const char *b64, size_t len, const char *ignore, size_t *out_len,
                      int variant) __attribute__((warn_unused_result));

#endif
