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

#endif
