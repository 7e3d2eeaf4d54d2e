/*
 * remote.h — the client side of the replication protocol between key-service servers (docs/DESIGN.md
 * "Replication between servers"): one SigV4-signed POST of an EnvelopefsReplication.<Operation> request to
 * another region's `envelopefs kms serve`, whose answer must carry the response MAC (remote.c) that only the
 * holder of the signing secret can compute. Private to the core.
 */
#ifndef ENVELOPEFS_KMS_REMOTE_H
#define ENVELOPEFS_KMS_REMOTE_H

#include <jansson.h>

#include "envelopefs/kms.h"


/* Another region's key service and the access key this one signs with there (secret sodium_malloc'd). */
typedef struct kms_endpoint {
    char region[32];
    char *url;
    char akid[32];
    char *secret;
} kms_endpoint;

void kms_endpoint_clear(kms_endpoint *ep);

/* POST operation with body req (not consumed) to ep, signed for ep->region and service kms. On KMS_OK *resp
 * is the answer (a JSON object, authenticated by its MAC). Errors: the remote service's own (its name
 * mapped back; authentication failures at the other end become KMS_ERR_ACCESS_DENIED, since the caller's
 * own credentials were fine), KMS_ERR_DEPENDENCY_TIMEOUT when the endpoint cannot be reached, or
 * KMS_ERR_INTERNAL for an answer without a valid MAC; *msg names the region and what happened. Call it
 * without the core lock held. */
kms_err kms_remote_call(const kms_endpoint *ep, const char *operation, json_t *req, long timeout_ms, json_t **resp,
                        char **msg);

#endif
