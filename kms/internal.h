/*
 * internal.h — the key-service core's private state, shared by store.c (keystore on SQLite),
 * ops.c, asym.c, mac.c, datakeypair.c and import.c (the operations), authz.c (who may use a key), dispatch.c (the single entry point) and their
 * helpers. Private to kms/ (CMake: only envelopefs_kms and the tests linking envelopefs_kms_internal
 * see this folder).
 *
 * Concurrency: one mutex (core->lock) guards everything below, including the SQLite connection,
 * except the audit trail's writer (its own connection and mutex: trail.c) and durability state.
 * Each operation is short (one AES-GCM over ≤ 4 KiB, or one small SQL transaction), so one lock
 * keeps the reasoning simple; the HTTP server's parsing and SigV4 work and the audit commit happen
 * outside it. Changes made by other processes on the same store (e.g. the CLI disabling a key while a
 * mount is running) are noticed through SQLite's PRAGMA data_version and, when the store's change
 * counter moved too (changes.c), reload the in-memory tables. The
 * check costs a pair of fcntl locks, so it runs at most once per KMS_FRESHNESS_MS (monotonic clock):
 * a change committed by another process is seen by every call that starts more than
 * KMS_FRESHNESS_MS after its commit.
 */
#ifndef ENVELOPEFS_KMS_INTERNAL_H
#define ENVELOPEFS_KMS_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "aead.h"
#include "checkpoint.h"
#include "keyspec.h"
#include "trail.h"
#include "envelopefs/kms.h"
#include "policy.h"

#define KMS_KEY_ID_LEN 36  /* UUID text */
#define KMS_CKS_ID_LEN 21  /* custom key store id: "cks-" + 17 hex digits */
#define KMS_PCTX_SLOTS (4 * KMS_ALG__COUNT) /* sign, verify, encrypt, decrypt × algorithm */
#define KMS_MAX_VERSIONS_CACHED 64
#define KMS_FRESHNESS_MS 2  /* staleness bound for other processes' changes */

enum kms_key_state { KS_ENABLED, KS_DISABLED, KS_PENDING_DELETION, KS_PENDING_IMPORT };
/* keys.state on disk: the states above, and 4 for PendingReplicaDeletion (in memory KS_PENDING_DELETION
 * with deletion_date 0: kms_awaiting_replicas). A program that predates it refuses such a store. */
#define KMS_DB_STATE_PENDING_REPLICA_DELETION 4

typedef struct kms_version {
    uint32_t version;
    int64_t created;
    int automatic;             /* rotation type of this version (1 = AUTOMATIC, 0 = ON_DEMAND/initial) */
    uint8_t *material;         /* symmetric / HMAC key bytes, sodium_malloc'd; NULL until first use */
    size_t material_len;       /* 32 for SYMMETRIC_DEFAULT, the HMAC key length for HMAC specs */
    kms_gcm_key *gcm;          /* keyed with material; NULL until first use (used under the core lock) */
    EVP_PKEY *pkey;            /* asymmetric specs: the decoded key pair (OpenSSL heap); NULL until first use */
    EVP_PKEY_CTX **pctx;       /* asymmetric specs: prepared contexts per operation and algorithm (asym.c),
                                * KMS_PCTX_SLOTS of them, NULL until first use; used under the core lock */
} kms_version;

/* A grant (kms/store_access.c keeps them, kms/access.c evaluates them): who may do which operations on
 * one key, under which encryption-context constraint. */
enum kms_grant_constraint { KMS_GC_NONE, KMS_GC_EQUALS, KMS_GC_SUBSET };

#define KMS_GRANT_ID_BUF 72 /* a grant id and its NUL, with room */

typedef struct kms_grant {
    char id[65];               /* 64 hex digits */
    char *token;               /* the GrantToken CreateGrant returned */
    char *name;                /* or NULL */
    char *grantee, *retiring;  /* principal ARNs; retiring may be NULL */
    uint32_t ops;              /* bit i: KMS_GRANT_OPS[i] */
    enum kms_grant_constraint constraint;
    kms_ectx_pair *pairs;      /* the constraint's context (strings owned) */
    size_t n_pairs;
    char issuing_account[16];
    int64_t created;
} kms_grant;

typedef struct kms_key {
    char id[KMS_KEY_ID_LEN + 1];
    char owner[16];            /* the account the key belongs to (its ARN's account) */
    char *policy_text;         /* the key policy; NULL: the default policy of the owner's account */
    kms_policy *policy;        /* policy_text (or the default) compiled, at first use; NULL until then */
    kms_grant *grants;         /* this key's grants, oldest first */
    size_t n_grants;
    uint8_t raw_id[16];
    enum kms_key_spec spec;    /* fixed at creation (keyspec.h) */
    enum kms_key_usage usage;
    bool hsm;                  /* Origin AWS_CLOUDHSM: in custom key store cks_id, its material a token object (cks.c) */
    char cks_id[KMS_CKS_ID_LEN + 1]; /* "" unless hsm */
    bool external;             /* Origin EXTERNAL: imported key material (import.c); no versions while PendingImport */
    bool expires;              /* imported material expires (ExpirationModel KEY_MATERIAL_EXPIRES) at valid_to */
    int64_t valid_to;
    bool has_digest;           /* material_digest: a keyed hash of the first material imported (reimports must match) */
    uint8_t material_digest[32];
    int64_t created;
    char *description;
    enum kms_key_state state;
    int64_t deletion_date;     /* when PendingDeletion; 0 with state KS_PENDING_DELETION: PendingReplicaDeletion
                                * (a multi-Region primary scheduled while replicas exist: its waiting period of
                                * pending_days starts when the last is gone; kms_awaiting_replicas) */
    int pending_days;
    int64_t replica_check_at;  /* PendingReplicaDeletion: core clock time of the next look at its replicas
                                * (kms_mrk_check_replicas); 0: at the next call. Not stored */
    bool rotation_enabled;
    int rotation_period;       /* days */
    int64_t next_rotation;
    kms_version *versions;     /* sorted by version, 1..n */
    size_t n_versions;
} kms_key;

typedef struct kms_alias {
    char *name;                /* "alias/..." */
    char key_id[KMS_KEY_ID_LEN + 1];
    int64_t created, updated;
} kms_alias;


#define KMS_MRK_BUSY_MAX 16 /* multi-Region keys with a remote operation in flight at once (per core) */
#define KMS_REPLICA_RECHECK_S 3600 /* PendingReplicaDeletion: its replicas looked at again at most this often */
#define KMS_REPLICA_DUE_MAX 16  /* such keys looked at per call (more: at the next calls) */


struct kms_core {
    pthread_mutex_t lock;
    sqlite3 *db;
    char *dir;
    char region[32];
    char account[16];
    uint8_t *root_key;         /* 32 bytes, sodium_malloc'd */
    kms_clock_fn clock;
    void *clock_arg;
    int64_t data_version;      /* last PRAGMA data_version seen */
    int64_t change_count;      /* store_changes.n when the tables were current (-1: unknown): the trail's
                                * commits and pruning move data_version but not this (changes.c) */
    bool own_changes;          /* the core's connection wrote a counted row since change_count was set */
    sqlite3_stmt *cc_read, *cc_begin, *cc_commit; /* changes.c's statements, prepared once */
    sqlite3_stmt *dv_stmt;     /* prepared PRAGMA data_version */
    _Atomic int64_t dv_checked_ns; /* CLOCK_MONOTONIC of the last data_version check (0: never); written
                                    * under the lock, read without it by kms_core_generation */
    _Atomic uint64_t generation;   /* moves at every reload and access-key deletion (kms_core_generation) */
    kms_key *keys;             /* in-memory copy of the keys table, sorted by creation order */
    size_t n_keys, cap_keys;
    uint32_t *key_index;       /* keys[] by id (kms_find_key): open addressing, a slot holds index + 1, 0 is
                                * empty; NULL (no memory for it): kms_find_key scans */
    size_t key_index_cap;      /* its slots: a power of two, at least twice n_keys */
    int64_t sweep_at;          /* kms_sweep_deletions: no key has a deadline (deletion date, material's
                                * ValidTo) before this time; 0: not known, look at every key */
    kms_alias *aliases;
    size_t n_aliases, cap_aliases;
    /* The audit trail (trail.c). The queue (q, q_n, q_cap, q_ticket) under the core lock; the writer (its
     * connection w_db, the batch it writes, the digest state) under trail_wmu, taken with the core lock
     * held only to swap the queue out, so a commit and its sync run without the core lock; durability
     * (trail_durable, trail_failed, trail_writing) under trail_mu. Lock order: lock, trail_wmu, trail_mu. */
    struct audit_rec *q;       /* records appended, not yet taken by a writer */
    size_t q_n, q_cap;
    uint64_t q_ticket;         /* tickets handed out */
    pthread_mutex_t trail_wmu; /* the writer */
    sqlite3 *w_db;             /* the writer's connection; NULL: closed (written under lock and trail_wmu) */
    struct audit_rec *w_batch; /* being written, or left by a failed write (written first the next time) */
    size_t w_n, w_cap;
    _Atomic size_t w_backlog;  /* w_n, for the queue's bound in append (read under the core lock only) */
    sqlite3_stmt *audit_ins;
    sqlite3_stmt *audit_head, *audit_begin, *audit_commit; /* the writer's other statements, prepared once */
    int64_t digest_ms;         /* CLOCK_MONOTONIC ms of this core's last digest */
    int64_t since_digest;      /* records this core wrote since then */
    uint8_t *audit_sk;         /* Ed25519 secret key (sodium_malloc'd), signs digests */
    uint8_t audit_pk[32];
    bool trail_init;           /* trail_mu, trail_cv, trail_wmu exist (kms_trail_free destroys them) */
    pthread_mutex_t trail_mu;
    pthread_cond_t trail_cv;
    uint64_t trail_durable, trail_failed; /* newest ticket durable / newest in a failed write */
    /* The tickets of the latest failed writes (trail_mu): [lo, hi] each, newest at refused_next - 1. Their
     * callers are told the call failed, and their records say so (kms_audit_rec_refused), even once a later
     * write stores them. */
    struct { uint64_t lo, hi; } trail_refused[8];
    unsigned trail_refused_next;
    bool trail_writing;        /* a committer (kms_trail_commit, the tick) holds the role */
    _Atomic uint64_t trail_commits, trail_records, trail_max_batch, trail_write_failures; /* kms_core_trail_stats */
    _Atomic int trail_fail_next; /* tests: fail this many of the next trail writes (fault injection) */
    /* Outcomes promised by kms_core_when_durable (under trail_mu): the committer thread writes until each
     * pending ticket is durable or failed, then calls its function outside the lock. */
    struct kms_trail_waiter *waiters;
    size_t n_waiters, cap_waiters;
    pthread_cond_t async_cv;   /* a waiter was added, or async_stop set */
    pthread_t async_thread;
    bool async_started, async_stop;
    double af_tokens;          /* authentication-failure records: token bucket (kms_core_audit_auth_failure) */
    int64_t af_last_ms;
    uint64_t af_suppressed;
    struct kms_cks_conn *cks_conns; /* this process's logins to custom key stores' tokens (cks.c) */
    size_t n_cks_conns;
    kms_checkpointer *ckpt;    /* WAL checkpoints off the request path; NULL: SQLite's automatic ones */
    /* Multi-Region keys with an operation in flight that calls another server with the core lock released
     * (mrk_remote.c: kms_mrk_busy_enter): one such operation per key at a time; mrk_cv (with the core
     * lock) wakes the next. An empty string is a free slot. */
    pthread_cond_t mrk_cv;
    char mrk_busy[KMS_MRK_BUSY_MAX][KMS_KEY_ID_LEN + 1];
    /* PendingReplicaDeletion primaries whose replicas are due a look (kms_sweep_deletions fills it,
     * kms_mrk_check_replicas empties it before the call's operation runs). */
    char replica_due[KMS_REPLICA_DUE_MAX][KMS_KEY_ID_LEN + 1];
    int n_replica_due;
};

static inline int64_t kms_now(kms_core *c) { return c->clock(c->clock_arg); }

/* changes.c: the store's change counter (table store_changes, its triggers; docs/FORMAT.md). Migrate:
 * additive and idempotent, at every open after the other features' tables exist. Watch: note the
 * core's own writes (update hook on c->db). Read: n into *n (-1 when absent); 0 or -1. Settle (core
 * lock held, c->dv_stmt prepared): after data_version moved to dv or own writes, whether a reload is
 * needed. */
kms_err kms_changes_migrate(sqlite3 *db, char **msg);
void kms_changes_watch(kms_core *c);
int kms_changes_read(sqlite3 *db, int64_t *n);
typedef enum { KMS_CHANGES_NONE, KMS_CHANGES_RELOAD } kms_changes_verdict;
kms_changes_verdict kms_changes_settle(kms_core *c, int64_t dv); /* dv: data_version just read */

/* store.c */
kms_err kms_store_reload_if_changed(kms_core *c, char **msg);
/* After a call's operation (core lock held): adopt the change counter's value the core's own writes
 * made, so the next audit commit does not look like another process's change. */
void kms_store_note_own_writes(kms_core *c);
kms_err kms_store_load(kms_core *c, char **msg);
kms_err kms_store_insert_key(kms_core *c, const kms_key *k, const uint8_t *material, size_t len, char **msg);
kms_err kms_store_add_version(kms_core *c, kms_key *k, int automatic, char **msg);
kms_err kms_store_update_key(kms_core *c, const kms_key *k, char **msg);
/* Multi-Region replication (mrk.c): version `version`'s material in the clear (sodium_malloc'd: the caller
 * sodium_frees it), and appending a version with given material (the next number) in one transaction. */
kms_err kms_store_version_plain(kms_core *c, const kms_key *k, uint32_t version, uint8_t **out, size_t *len,
                                char **msg);
kms_err kms_store_put_version(kms_core *c, kms_key *k, int64_t created, int automatic, const uint8_t *material,
                              size_t len, char **msg);

/* mrk.c: multi-Region keys (table multi_region; docs/FORMAT.md). A key is multi-Region when its id
 * starts with "mrk-". */
#define KMS_MRK_PREFIX "mrk-"
/* The store's meta table (k TEXT → v BLOB). kms_meta_get: 0 with the value in buf[0, *len); -1 when absent
 * or longer than cap; -2 on a database error. kms_meta_put: 0 or -1; replace false keeps an existing row
 * (INSERT OR IGNORE: a racing process's value wins, re-read it). */
int kms_meta_get(sqlite3 *db, const char *k, void *buf, size_t cap, size_t *len);
int kms_meta_put(sqlite3 *db, const char *k, const void *v, size_t n, bool replace);

/* Run an additive, idempotent schema (CREATE TABLE IF NOT EXISTS ..., its feature row); KMS_ERR_IO with
 * "key store error (what): ..." in *msg when SQLite refuses. */
kms_err kms_schema_add(sqlite3 *db, const char *sql, const char *what, char **msg);

kms_err kms_mrk_migrate(sqlite3 *db, char **msg); /* additive and idempotent; at every open */
void kms_mrk_id(const uint8_t raw[16], char out[KMS_KEY_ID_LEN + 1]);
static inline bool kms_is_mrk(const kms_key *k) { return !strncmp(k->id, KMS_MRK_PREFIX, 4); }
/* PendingReplicaDeletion: scheduled for deletion (every check of KS_PENDING_DELETION applies), waiting for its
 * replicas to be deleted before its waiting period starts (no deletion date yet). Stored as state 4. */
static inline bool kms_awaiting_replicas(const kms_key *k) { return k->state == KS_PENDING_DELETION && !k->deletion_date; }
/* The key's multi_region row: primary region into primary (cap 32), the region list (new reference) into
 * *regions; false when there is none. Writing it (INSERT OR REPLACE), and whether a list names region r. */
bool kms_mrk_row_get(sqlite3 *db, const char *id, char primary[32], json_t **regions);
kms_err kms_mrk_row_put(kms_core *c, const char *id, const char *primary, json_t *regions, char **msg);
bool kms_mrk_in_list(json_t *regions, const char *r);
/* Whether k is a multi-Region replica (not the primary) in this core's region. */
bool kms_mrk_is_replica(kms_core *c, const kms_key *k);
/* A new multi-Region primary key k in this region (CreateKey). */
kms_err kms_mrk_created(kms_core *c, const kms_key *k, char **msg);
/* DescribeKey's MultiRegion and MultiRegionConfiguration into m. */
void kms_mrk_describe(kms_core *c, const kms_key *k, json_t *m);
/* After k (a primary) got a new version: copy it to every replica it can reach (best effort: a replica
 * missed here catches up by kms_mrk_pull at its next use of the version). */
void kms_mrk_push(kms_core *c, const kms_principal *caller, kms_key *k);
/* k is a replica: copy the versions its primary has and it lacks. */
kms_err kms_mrk_pull(kms_core *c, kms_key *k, char **msg);
/* ScheduleKeyDeletion of key id (and kms_mrk_check_replicas): how many replicas of it still exist, into *left
 * (0 for a single-Region key or a replica), dropping from its list those found deleted. Lock held on entry
 * and return; released while replicas on other servers are asked (a dead peer stalls only this call and
 * other multi-Region operations on this key), so any kms_key pointer is stale on return: find the key again. */
kms_err kms_mrk_may_delete(kms_core *c, const char *id, size_t *left, char **msg);
/* The PendingReplicaDeletion keys kms_sweep_deletions found due (c->replica_due): look at their replicas
 * (kms_mrk_may_delete) and start the waiting period (PendingDeletion, a deletion date) of each whose last
 * replica is gone. Lock held on entry and return, released meanwhile when a replica is on another server. */
void kms_mrk_check_replicas(kms_core *c);
/* cks.c: custom key stores (tables custom_key_stores, custom_key_store_keys; docs/FORMAT.md). */
struct hsm_key_info;
kms_err kms_cks_migrate(sqlite3 *db, char **msg); /* additive and idempotent; at every open */
void kms_cks_free(kms_core *c);                    /* logs out of every token this core logged in to */
kms_err kms_cks_load_keys(kms_core *c, char **msg); /* after the keys: which are in a custom key store */
kms_err kms_cks_write_key(kms_core *c, const kms_key *k, char **msg); /* k's custom_key_store_keys row */
void kms_cks_describe(kms_core *c, const kms_key *k, json_t *m); /* DescribeKey's Origin, store, cluster, Unavailable */
void kms_cks_key_destroyed(kms_core *c, const kms_key *k); /* best effort: destroy its token object */
/* What the token says of k's key object (tests): logs in as a cryptographic operation would. */
kms_err kms_cks_token_key_info(kms_core *c, const kms_key *k, struct hsm_key_info *info, char **msg);
/* Imported material (import.c): make material[32] the key's only version (and write the key row), or delete
 * the key's material (versions) and write the key row; both in one transaction. */
kms_err kms_store_import_material(kms_core *c, kms_key *k, const uint8_t material[32], char **msg);
kms_err kms_store_delete_material(kms_core *c, kms_key *k, char **msg);
/* Seal / unseal arbitrary bytes under the root key (XChaCha20-Poly1305, out = 24-byte nonce ‖ ct ‖ tag). */
#define KMS_SEAL_OVERHEAD 40
void kms_store_seal(kms_core *c, const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t n, uint8_t *out);
int kms_store_unseal(kms_core *c, const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t n, uint8_t *out);
/* A keyed hash of key material under the root key (32 bytes): tells the same imported material again. */
void kms_store_material_digest(kms_core *c, const uint8_t *material, size_t n, uint8_t out[32]);
kms_err kms_store_destroy_key(kms_core *c, const char *key_id, char **msg);
kms_err kms_store_cipher(kms_core *c, kms_key *k, kms_version *v, kms_gcm_key **out, char **msg);
/* An asymmetric key's key pair (borrowed, valid while the key exists; used under the core lock). */
kms_err kms_store_pkey(kms_core *c, kms_key *k, kms_version *v, EVP_PKEY **out, char **msg);
/* An HMAC key's bytes (borrowed, locked memory, read-only). */
kms_err kms_store_material(kms_core *c, kms_key *k, kms_version *v, const uint8_t **out, size_t *len, char **msg);
kms_err kms_store_put_alias(kms_core *c, const kms_alias *a, bool insert, char **msg);
kms_err kms_store_delete_alias(kms_core *c, const char *name, char **msg);
kms_err kms_store_set_tag(kms_core *c, const char *key_id, const char *k, const char *v, char **msg);
kms_err kms_store_delete_tag(kms_core *c, const char *key_id, const char *k, char **msg);

/* store_access.c: key owners, key policies and grants in the keystore (tables key_policies, grants) */
kms_err kms_store_access_migrate(sqlite3 *db, char **msg); /* additive and idempotent; at every open */
kms_err kms_store_access_load(kms_core *c, char **msg);    /* after the keys: owners, policies, grants */
kms_err kms_store_write_policy(kms_core *c, const kms_key *k, char **msg); /* k's owner and policy_text */
/* Append g to k (the key takes g's strings on success; on failure they stay the caller's). */
kms_err kms_store_insert_grant(kms_core *c, kms_key *k, kms_grant *g, char **msg);
kms_err kms_store_delete_grant(kms_core *c, kms_key *k, size_t idx, char **msg);
void kms_grant_clear(kms_grant *g);  /* frees g's strings */
void kms_key_access_free(kms_key *k); /* frees k's policy and grants */
/* The key with this id, or NULL: a hash lookup (every call makes one), not a scan of the keys. */
kms_key *kms_find_key(kms_core *c, const char *id);
kms_alias *kms_find_alias(kms_core *c, const char *name);
void kms_free_tables(kms_core *c);

/* scratch.c: this thread's locked scratch buffer (KMS_SCRATCH_MAX bytes) for short-lived plaintext;
 * the caller wipes what it used. NULL if n is too large or on OOM. */
#define KMS_SCRATCH_MAX 8192
uint8_t *kms_scratch(size_t n);

/* errors.c: the core's one formatted-message helper. *msg becomes a malloc'd printf of fmt (fmt NULL:
 * no message; NULL also on OOM), after what it held is freed; msg NULL is a no-op. */
void kms_set_msg(char **msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
