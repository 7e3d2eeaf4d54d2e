/*
 * trail.h — the audit trail's records as the core writes them: CloudTrail-shaped events, hash-chained
 * and sealed by signed digests, durable before the call they record is answered (group commit).
 *
 * Each record carries SHA-256 over the previous record's hash, its own sequence number and every
 * column (docs/FORMAT.md "Audit trail"), so editing, removing, inserting or reordering a record breaks
 * the chain from there on. Digests (table audit_digests) sign, with an Ed25519 key only the service
 * holds (its secret half sealed under the root key in meta; the public half exported), the chain's
 * head (seq, hash): one at most every KMS_DIGEST_INTERVAL_MS or KMS_DIGEST_RECORDS records, in the
 * same transaction as the records, and one when a core closes. Removing the newest records is
 * detected while a digest covers them; a "start" digest marks where the chain begins (a store that
 * had records before the chain existed) and a "checkpoint" digest where retention pruning cut it.
 *
 * Durability: kms_trail_append (core lock held) queues a record and returns its ticket;
 * kms_trail_commit (core lock NOT held) returns once that ticket is committed. One caller at a time
 * is the committer: it takes the whole queue (swapped out under the core lock, briefly) and writes it in
 * one transaction on the trail's own connection, holding the writer's mutex and not the core lock, so
 * calls keep queueing records while it syncs; the others wait on a condition variable for their
 * ticket, and the next committer takes everything queued meanwhile: concurrent calls share a commit
 * (and, with synchronous=FULL, its fsync). The chain is computed by the writer, in ticket order.
 * A caller that must not wait (the server: kms_core_call_async) is promised its ticket's outcome instead
 * (kms_core_when_durable): the trail's committer thread writes rounds while promises are pending and
 * delivers each outcome once, outside the trail's locks. A record's text is written by record.c.
 */
#ifndef ENVELOPEFS_KMS_TRAIL_H
#define ENVELOPEFS_KMS_TRAIL_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "envelopefs/kms.h"

#define KMS_DIGEST_INTERVAL_MS 1000
#define KMS_DIGEST_RECORDS 1000
#define KMS_TRAIL_MAX_PENDING 65536 /* queued records at most: past it calls fail (KMSInternalException) */

struct kms_core;

/* One record before it is written. Strings are owned (event malloc'd). */
struct audit_rec {
    int64_t time;
    uint64_t ticket;
    char account[16], user[64], source[64], op[48], key_id[40], result[48], event_id[40], access_key[24];
    int read_only;
    char *event; /* the CloudTrail JSON */
};

/* Schema additions (idempotent: columns and tables added when missing, meta row feature_audit_chain)
 * and the signing key (made on first use, secret half sealed under the root key). Core lock not
 * needed (open). */
kms_err kms_trail_open(struct kms_core *c, const char *path, char **msg) __attribute__((warn_unused_result));
/* Write what is queued, seal the head if any record is unsealed (kind "close"), close the writer's
 * connection, free queued records (core lock held). */
void kms_trail_close(struct kms_core *c);
/* Stop the committer thread of kms_core_when_durable once every promised outcome is delivered (core lock
 * NOT held: the thread takes it to write). */
void kms_trail_async_stop(struct kms_core *c);
/* After the maintenance thread stopped: wipe the signing key, destroy the trail's mutexes. */
void kms_trail_free(struct kms_core *c);

/* Whether an operation only reads (CloudTrail's readOnly), from the one list of operations
 * (KMS_OP_READ_ONLY; dispatch.c). A name that is no operation: true. */
bool kms_trail_read_only(const char *op);

/* Queue the record of one call (core lock held). req/resp: the request and response trees (may be
 * NULL); only fields known to carry no secret are copied. Returns the ticket for kms_trail_commit, or 0
 * if the queue is full or memory ran out (the call must then fail). */
uint64_t kms_trail_append(struct kms_core *c, const kms_principal *p, const char *op, json_t *req, json_t *resp,
                          const char *key_id, kms_err e, const char *msg);
/* The same, for a call a grant allowed (grant_id: additionalEventData.grantId, as CloudTrail records it;
 * NULL or "": none). */
uint64_t kms_trail_append_grant(struct kms_core *c, const kms_principal *p, const char *op, json_t *req,
                                json_t *resp, const char *key_id, kms_err e, const char *msg, const char *grant_id);
/* Wait until ticket is durable (core lock NOT held). KMS_OK, or KMS_ERR_IO if its write failed (the
 * records stay queued and are written by a later commit). */
kms_err kms_trail_commit(struct kms_core *c, uint64_t ticket) __attribute__((warn_unused_result));
/* Whether a ticket in [lo, hi] was in a failed write (its caller was or is told KMS_ERR_IO by kms_trail_commit,
 * and its record, stored by a later write, carries that error: kms_audit_rec_refused). Remembers the latest
 * 8 runs of failed writes. */
bool kms_trail_refused_in(struct kms_core *c, uint64_t lo, uint64_t hi);
/* audit.c: a record in a write that failed. Its caller is told the call failed (KMS_ERR_IO from
 * kms_trail_commit, reported as the service's internal error), so a record that said success now says
 * that: errorCode (kms.amazonaws.com: KMSInternalException; ec2: InternalError; ebs:
 * InternalServerException), errorMessage, no responseElements, and the result column. */
void kms_audit_rec_refused(struct audit_rec *r);
/* Seal the head if records have waited KMS_DIGEST_INTERVAL_MS for a digest (the maintenance thread,
 * every second; takes the core lock). */
void kms_trail_tick(void *core);
/* Write what is queued now (core lock held); used by the retention, lookup and validation paths: on
 * return nothing of this process writes the trail until the core lock is released. */
void kms_trail_flush_locked(struct kms_core *c);

/* Sign a digest row into db (inside the caller's transaction): kind, first/last seq, last hash. 0/-1. */
int kms_trail_put_digest(sqlite3 *db, const uint8_t *sk, const char *kind, int64_t first_seq, int64_t last_seq,
                         const uint8_t last_hash[32], int64_t time);

/* The hash of record seq (32 bytes) into out; 0, or -1 if absent. */
int kms_trail_hash_of(sqlite3 *db, int64_t seq, uint8_t out[32]);

#endif
