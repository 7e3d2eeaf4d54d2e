/*
 * mrk_remote.h — multi-Region keys replicated to a region that is another server (mrk_remote.c): the
 * source's side of ReplicateKey, UpdatePrimaryRegion, version pushes and the replica check of
 * ScheduleKeyDeletion, spoken over the replication protocol (remote.h), each with the core lock released
 * during its calls and one at a time per key (kms_mrk_busy_enter). Private to the core; called from
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
/* Whether ep's region still holds key id (a short status call). Call it without the core lock (c is
 * only this side's identity for the call). */
kms_err kms_mrk_remote_exists(kms_core *c, const char *id, const char *owner, const kms_endpoint *ep, bool *exists,
                              char **msg);

/* One multi-Region operation that calls other servers per key at a time, since each releases the core lock
 * for those calls (ReplicateKey, UpdatePrimaryRegion, a push, ScheduleKeyDeletion's replica check):
 * kms_mrk_busy_enter (lock held) waits, with the lock released, while another thread has key id (or every
 * slot is taken), then has it; kms_mrk_busy_leave (lock held) lets the next one in. Any kms_key pointer is
 * stale after kms_mrk_busy_enter. */
void kms_mrk_busy_enter(kms_core *c, const char *id);
void kms_mrk_busy_leave(kms_core *c, const char *id);

/* A primary's new version for its endpoint replicas: queued (lock held) by kms_mrk_push and sent by
 * kms_mrk_flush_pushes, which kms_core_call runs after the call, with the core lock released. */
void kms_mrk_queue_push(kms_core *c, const char *key_id);
void kms_mrk_flush_pushes(kms_core *c);

#endif
