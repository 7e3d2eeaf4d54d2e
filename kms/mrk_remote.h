/*
 * mrk_remote.h — multi-Region keys replicated to a region that is another server (mrk_remote.c): the
 * source's side of ReplicateKey, UpdatePrimaryRegion, version pushes and the replica check of
 * ScheduleKeyDeletion, spoken over the replication protocol (remote.h). Private to the core; called from
 * mrk.c and dispatch.c.
 */
#ifndef ENVELOPEFS_KMS_MRK_REMOTE_H
#define ENVELOPEFS_KMS_MRK_REMOTE_H

#include "ops.h"
#include "remote.h"

/* Region `name` of the regions file: its store opened (*out, a core of its own) or, for a "kms" region when
 * ep is non-NULL, its endpoint and credentials (*ep filled, *out NULL). Without ep an endpoint region is
 * UnsupportedOperationException. mrk.c. */
kms_err kms_mrk_open_region(kms_core *c, const char *name, kms_core **out, kms_endpoint *ep, char **msg);

/* ReplicateKey of primary k (checked, enabled) into ep's region. regions: k's list (not consumed). The core
 * lock is released during the calls to ep: k is stale on return. */
kms_err kms_mrk_remote_replicate(struct op_ctx *x, kms_key *k, const kms_endpoint *ep, json_t *in, const char *desc,
                                 json_t *tags, json_t **out);
/* UpdatePrimaryRegion of primary k (checked) to ep's region, which holds a replica. k is stale on return. */
kms_err kms_mrk_remote_update_primary(struct op_ctx *x, kms_key *k, const kms_endpoint *ep);
/* Whether ep's region still holds key id (lock held throughout; a short status call). */
kms_err kms_mrk_remote_exists(kms_core *c, const char *id, const char *owner, const kms_endpoint *ep, bool *exists,
                              char **msg);

/* A primary's new version for its endpoint replicas: queued (lock held) by kms_mrk_push and sent by
 * kms_mrk_flush_pushes, which kms_core_call runs after the call, with the core lock released. */
void kms_mrk_queue_push(kms_core *c, const char *key_id);
void kms_mrk_flush_pushes(kms_core *c);

#endif
