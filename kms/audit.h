/*
 * audit.h — the audit trail as the key store keeps it: how long (retention and pruning) and how it is
 * read back (lookup). Records are appended by the core (trail.c), which also signs the checkpoint
 * digest pruning leaves.
 *
 * The retention policy lives in the store's meta table (rows audit_retention_days and audit_max_records, decimal
 * text; absent or 0 means no limit), so every process on the store applies the same one. Ages count back
 * from the trail's newest record, not from a clock: the trail's own time line decides what is old, so a
 * copied store, or a test with its own clock, prunes the same way. Deletion goes oldest first in batches
 * of KMS_PRUNE_BATCH rows, one short transaction each: a writer (the audit trail's commit, on its own
 * connection) never waits long for it. Functions here take a connection and nothing else: they run on the core's
 * connection (under the core lock) or on the maintenance thread's own (checkpoint.c).
 */
#ifndef ENVELOPEFS_KMS_AUDIT_H
#define ENVELOPEFS_KMS_AUDIT_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "envelopefs/kms.h"

#define KMS_PRUNE_BATCH 1000
#define KMS_PRUNE_INTERVAL_S 60 /* the maintenance thread prunes at its start and this often */

/* The store's policy into *r (zeros where unset). 0, or -1 if the meta table cannot be read. */
int kms_retention_get(sqlite3 *db, kms_audit_retention *r) __attribute__((warn_unused_result));

/* Whether r is a policy the store can keep: no negative value, days at most KMS_RETENTION_MAX_DAYS. */
bool kms_retention_valid(const kms_audit_retention *r);

/* Store the policy r (kms_retention_valid: -1 otherwise). 0 or -1. */
int kms_retention_set(sqlite3 *db, const kms_audit_retention *r) __attribute__((warn_unused_result));

/* Delete what the policy r no longer keeps, oldest first, KMS_PRUNE_BATCH rows per transaction, each
 * leaving a checkpoint digest signed with sk (trail.h) where the chain now starts;
 * stop(arg), when given, is asked between batches. Returns the number of rows deleted, or -1 on an
 * SQLite error (rows deleted before it stay deleted). */
int64_t kms_audit_prune(sqlite3 *db, const kms_audit_retention *r, const uint8_t *sk, bool (*stop)(void *),
                        void *arg);

/* The trail's size and time span into s (retention left as it is). 0 or -1. */
int kms_audit_stat(sqlite3 *db, kms_audit_status *s) __attribute__((warn_unused_result));

/* Records matching q, newest first (see kms_core_lookup_audit). 0, or -1 on an SQLite error or no
 * memory. */
int kms_audit_lookup(sqlite3 *db, const kms_audit_query *q, kms_audit_event **out, size_t *n, int64_t *next)
    __attribute__((warn_unused_result));

#endif
