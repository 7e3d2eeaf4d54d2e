/*
 * checkpoint.h — the key store's maintenance thread, on its own database connection: WAL checkpoints,
 * the audit trail's retention (audit.h: at the thread's start and every KMS_PRUNE_INTERVAL_S), and a
 * tick every second (the core seals its audit trail's head with it when calls stop: trail.h).
 *
 * SQLite's automatic checkpoint runs inside the commit that crosses the threshold: it copies the WAL
 * into the database and fsyncs both, under the core lock of the call whose commit crossed it:
 * milliseconds during which every other call waits. Here the core's connection only signals; a thread
 * checkpoints (PASSIVE: never blocks a writer) on a second connection. A checkpoint is not a commit,
 * so the core's PRAGMA data_version (its test for other processes' changes) does not move.
 * Should a writer outpace the thread, the committing call checkpoints itself past twice the threshold.
 * Pruning is a commit that moves data_version but not the store's change counter (changes.c), so the
 * core reloads nothing for it.
 */
#ifndef ENVELOPEFS_KMS_CHECKPOINT_H
#define ENVELOPEFS_KMS_CHECKPOINT_H

#include <sqlite3.h>
#include <stdint.h>

typedef struct kms_checkpointer kms_checkpointer;

/* Take over checkpointing of db (the database file at path): installs db's WAL hook and starts the
 * thread. NULL on failure, with db's automatic checkpoints left as they were. db must outlive the
 * checkpointer. */
/* sk: the audit signing key (borrowed; pruning leaves a signed checkpoint). tick(arg), when given, is
 * called about once a second (the core seals its audit trail's head with it). */
kms_checkpointer *kms_checkpointer_start(sqlite3 *db, const char *path, const uint8_t *sk, void (*tick)(void *),
                                         void *arg) __attribute__((warn_unused_result));

/* Also signal (and bound) checkpoints from the commits of db, another connection of the same store (the
 * audit trail's writer): installs the same WAL hook. db must be closed before kms_checkpointer_stop. */
void kms_checkpointer_watch(kms_checkpointer *k, sqlite3 *db);

/* Stop the thread, close its connection, and give db its automatic checkpoints back. NULL: no-op. */
void kms_checkpointer_stop(kms_checkpointer *k);

#endif
