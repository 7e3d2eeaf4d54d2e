/*
 * kms.h — the key-service core: a keystore of customer master keys (CMKs) in a directory, and the
 * single dispatch point through which every operation passes.
 *
 * The core speaks the AWS KMS JSON protocol at its boundary: `kms_core_call` takes an operation name
 * ("GenerateDataKey"), a JSON request body with PascalCase fields and base64 binaries, and the
 * calling principal, and returns a JSON response body or a typed error. The embedded client backend,
 * the HTTP server and the CLI all go through it, so validation, authorisation (key policies, grants),
 * the audit trail and throttling live in one place. Bodies are pure data; nothing else is shared.
 *
 * Threading: a kms_core is safe to use from many threads at once.
 * Secrets: key material never leaves the core; responses that carry plaintext (GenerateDataKey,
 * Decrypt, GenerateRandom) must be released with kms_response_free, which wipes them.
 */
#ifndef ENVELOPEFS_KMS_H
#define ENVELOPEFS_KMS_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "envelopefs/kms_types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kms_core kms_core;

/* Clock in seconds since the epoch; injectable so tests can move time instead of sleeping. */
typedef int64_t (*kms_clock_fn)(void *arg);

/* How to find and unlock a store. Strings are borrowed for the duration of the call. */
typedef struct kms_store_opts {
    const char *store_dir;        /* directory holding keystore.db; required */
    const char *root_key_file;    /* 0600 file with a 32-byte raw or 64-hex-char root key, or NULL */
    const char *passphrase_file;  /* file whose first line is the passphrase, or NULL */
    const char *passphrase;       /* passphrase given directly (e.g. read from a prompt), or NULL */
    const char *region;           /* for ARNs; init only; default "us-east-1" */
    const char *account;          /* for ARNs and the embedded principal; init only; default "111122223333" */
} kms_store_opts;

/*
 * Create a new, empty store in opts->store_dir (created 0700 if missing). Exactly one of
 * root_key_file / passphrase_file / passphrase must be set. Refuses (KMS_ERR_ALREADY_EXISTS) if a
 * store is already there. On error *errmsg (if non-NULL) receives a malloc'd message to free().
 */
kms_err kms_store_init(const kms_store_opts *opts, char **errmsg) KMS_WUR;

/*
 * Open an existing store and unlock it. Wrong passphrase/root key → KMS_ERR_BAD_PASSPHRASE;
 * damaged store → KMS_ERR_CORRUPT_STORE with a message naming what is wrong; nothing is modified
 * in either case. On success *out owns the store until kms_core_free. The core runs one thread of its
 * own (the store's WAL checkpoints), so a forked child must open its own core, not use its parent's.
 */
kms_err kms_core_open(const kms_store_opts *opts, kms_core **out, char **errmsg) KMS_WUR;

/* Close the store and wipe all key material. NULL is a no-op. */
void kms_core_free(kms_core *core);

/* Replace the clock (default: time(NULL)). Not thread-safe against concurrent calls. */
void kms_core_set_clock(kms_core *core, kms_clock_fn fn, void *arg);

/* The store's region and account (borrowed, valid until kms_core_free). */
const char *kms_core_region(const kms_core *core);
const char *kms_core_account(const kms_core *core);

/*
 * The single dispatch point. `operation` is the AWS operation name without the "TrentService."
 * prefix. `req`/`req_len` is the JSON body (may be "{}"). On KMS_OK, *resp / *resp_len receive the
 * JSON response body (NUL-terminated; free with kms_response_free). On error, *resp is NULL and
 * *message (if message non-NULL) receives a malloc'd message (may be NULL: AWS sends none for
 * InvalidCiphertextException) to free().
 * Unknown operation → KMS_ERR_UNKNOWN_OPERATION; malformed JSON → KMS_ERR_SERIALIZATION.
 */
kms_err kms_core_call(kms_core *core, const kms_principal *caller, const char *operation,
                      const char *req, size_t req_len, char **resp, size_t *resp_len,
                      char **message) KMS_WUR;

/*
 * Deferred audit commits for the calling thread (group commit for a caller that makes many calls at once,
 * e.g. a filesystem preparing a batch of new files' data keys). Between kms_core_defer_begin and
 * kms_core_defer_end, each kms_core_call made by this thread on `core` queues its audit record and returns
 * without waiting for it to be committed; kms_core_defer_end then commits every record queued so far in
 * one transaction. Contract: nothing a call inside the scope returned may be used or shown to anyone (a
 * data key written where another party reads it, a response sent) until kms_core_defer_end returned
 * KMS_OK; on an error the caller must discard all of it (the records may be lost). Scopes do not nest;
 * kms_core_defer_end without a begin is KMS_OK. Calls that fail are committed at once as outside a scope.
 */
void kms_core_defer_begin(kms_core *core);
kms_err kms_core_defer_end(kms_core *core) KMS_WUR;

/*
 * Answers that wait for their record without holding a thread (the server: a libmicrohttpd worker that
 * waited for each commit could not take the next connection's call, so a commit carried the records of
 * one or two calls). kms_core_call_async is kms_core_call, except that a call that succeeded returns at
 * once with its answer and *ticket != 0: the answer must not be used or shown to anyone until
 * kms_core_when_durable(core, ticket, ...) reported KMS_OK for it; on KMS_ERR_IO its record could not be
 * written and the answer must be discarded (wiped) and the call refused. *ticket == 0: the answer (or the
 * error) is final, its record durable, as from kms_core_call (errors are always committed before the
 * call returns). kms_core_when_durable calls done(arg, outcome) exactly once, from the core's committer
 * thread (started at the first use, stopped by kms_core_free after the last outcome was delivered), or
 * from the calling thread before it returns if the outcome is already known. done must not call into
 * the core. kms_core_wait_durable blocks instead (the same outcome).
 */
kms_err kms_core_call_async(kms_core *core, const kms_principal *caller, const char *operation, const char *req,
                            size_t req_len, char **resp, size_t *resp_len, char **message, uint64_t *ticket) KMS_WUR;
typedef void (*kms_durable_fn)(void *arg, kms_err outcome);
void kms_core_when_durable(kms_core *core, uint64_t ticket, kms_durable_fn done, void *arg);
kms_err kms_core_wait_durable(kms_core *core, uint64_t ticket) KMS_WUR;

/*
 * The operations kms_core_call implements: the one list from which the core's dispatch table, the
 * CLI's verbs (`envelopefs kms VERB`, `kms help`) and the tests' views of the set are generated.
 * X(Name, function, "cli-verb", flags): Name is the AWS operation name, function the core's
 * implementation (kms/ops.c; meaningful inside the core only), cli-verb the AWS CLI's kebab-case
 * name, flags a bitwise or of KMS_OP_* below (0: none). Adding an operation is adding a line here,
 * its function, and its CLI flags (src/cmd_kms.c's CLI_FLAGS_Name: the build fails without them).
 */
#define KMS_OP_READ_ONLY 1u /* changes no key, alias or tag (CloudTrail's readOnly; crypto operations
                             * count as read-only, as in AWS) */
#define KMS_OPERATIONS(X)                                                                                  \
    X(CreateKey, kms_op_create_key, "create-key", 0)                                                       \
    X(DescribeKey, kms_op_describe_key, "describe-key", KMS_OP_READ_ONLY)                                  \
    X(ListKeys, kms_op_list_keys, "list-keys", KMS_OP_READ_ONLY)                                           \
    X(UpdateKeyDescription, kms_op_update_key_description, "update-key-description", 0)                    \
    X(EnableKey, kms_op_enable_key, "enable-key", 0)                                                       \
    X(DisableKey, kms_op_disable_key, "disable-key", 0)                                                    \
    X(ScheduleKeyDeletion, kms_op_schedule_key_deletion, "schedule-key-deletion", 0)                       \
    X(CancelKeyDeletion, kms_op_cancel_key_deletion, "cancel-key-deletion", 0)                             \
    X(EnableKeyRotation, kms_op_enable_key_rotation, "enable-key-rotation", 0)                             \
    X(DisableKeyRotation, kms_op_disable_key_rotation, "disable-key-rotation", 0)                          \
    X(GetKeyRotationStatus, kms_op_get_key_rotation_status, "get-key-rotation-status", KMS_OP_READ_ONLY)   \
    X(RotateKeyOnDemand, kms_op_rotate_key_on_demand, "rotate-key-on-demand", 0)                           \
    X(ListKeyRotations, kms_op_list_key_rotations, "list-key-rotations", KMS_OP_READ_ONLY)                 \
    X(CreateAlias, kms_op_create_alias, "create-alias", 0)                                                 \
    X(UpdateAlias, kms_op_update_alias, "update-alias", 0)                                                 \
    X(DeleteAlias, kms_op_delete_alias, "delete-alias", 0)                                                 \
    X(ListAliases, kms_op_list_aliases, "list-aliases", KMS_OP_READ_ONLY)                                  \
    X(TagResource, kms_op_tag_resource, "tag-resource", 0)                                                 \
    X(UntagResource, kms_op_untag_resource, "untag-resource", 0)                                           \
    X(ListResourceTags, kms_op_list_resource_tags, "list-resource-tags", KMS_OP_READ_ONLY)                 \
    X(GenerateDataKey, kms_op_generate_data_key, "generate-data-key", KMS_OP_READ_ONLY)                    \
    X(GenerateDataKeyWithoutPlaintext, kms_op_generate_data_key_without_plaintext,                         \
      "generate-data-key-without-plaintext", KMS_OP_READ_ONLY)                                             \
    X(Encrypt, kms_op_encrypt, "encrypt", KMS_OP_READ_ONLY)                                                \
    X(Decrypt, kms_op_decrypt, "decrypt", KMS_OP_READ_ONLY)                                                \
    X(ReEncrypt, kms_op_re_encrypt, "re-encrypt", KMS_OP_READ_ONLY)                                        \
    X(GenerateRandom, kms_op_generate_random, "generate-random", KMS_OP_READ_ONLY)                        \
    X(GetPublicKey, kms_op_get_public_key, "get-public-key", KMS_OP_READ_ONLY)                             \
    X(Sign, kms_op_sign, "sign", KMS_OP_READ_ONLY)                                                         \
    X(Verify, kms_op_verify, "verify", KMS_OP_READ_ONLY)                                                   \
    X(GenerateMac, kms_op_generate_mac, "generate-mac", KMS_OP_READ_ONLY)                                  \
    X(VerifyMac, kms_op_verify_mac, "verify-mac", KMS_OP_READ_ONLY)                                        \
    X(GenerateDataKeyPair, kms_op_generate_data_key_pair, "generate-data-key-pair", KMS_OP_READ_ONLY)      \
    X(GenerateDataKeyPairWithoutPlaintext, kms_op_generate_data_key_pair_without_plaintext,                \
      "generate-data-key-pair-without-plaintext", KMS_OP_READ_ONLY)                                        \
    X(GetParametersForImport, kms_op_get_parameters_for_import, "get-parameters-for-import",               \
      KMS_OP_READ_ONLY)                                                                                    \
    X(ImportKeyMaterial, kms_op_import_key_material, "import-key-material", 0)                             \
    X(DeleteImportedKeyMaterial, kms_op_delete_imported_key_material, "delete-imported-key-material", 0)    \
    X(PutKeyPolicy, kms_op_put_key_policy, "put-key-policy", 0)                                            \
    X(GetKeyPolicy, kms_op_get_key_policy, "get-key-policy", KMS_OP_READ_ONLY)                             \
    X(ListKeyPolicies, kms_op_list_key_policies, "list-key-policies", KMS_OP_READ_ONLY)                    \
    X(CreateGrant, kms_op_create_grant, "create-grant", 0)                                                 \
    X(ListGrants, kms_op_list_grants, "list-grants", KMS_OP_READ_ONLY)                                     \
    X(ListRetirableGrants, kms_op_list_retirable_grants, "list-retirable-grants", KMS_OP_READ_ONLY)        \
    X(RetireGrant, kms_op_retire_grant, "retire-grant", 0)                                                 \
    X(RevokeGrant, kms_op_revoke_grant, "revoke-grant", 0)                                                 \
    X(ReplicateKey, kms_op_replicate_key, "replicate-key", 0)                                              \
    X(UpdatePrimaryRegion, kms_op_update_primary_region, "update-primary-region", 0)                      \
    X(CreateCustomKeyStore, kms_op_create_custom_key_store, "create-custom-key-store", 0)                 \
    X(ConnectCustomKeyStore, kms_op_connect_custom_key_store, "connect-custom-key-store", 0)              \
    X(DisconnectCustomKeyStore, kms_op_disconnect_custom_key_store, "disconnect-custom-key-store", 0)     \
    X(DescribeCustomKeyStores, kms_op_describe_custom_key_stores, "describe-custom-key-stores",           \
      KMS_OP_READ_ONLY)                                                                                    \
    X(UpdateCustomKeyStore, kms_op_update_custom_key_store, "update-custom-key-store", 0)                 \
    X(DeleteCustomKeyStore, kms_op_delete_custom_key_store, "delete-custom-key-store", 0)

/* For copies between regions (copy-snapshot --source-region): 1 if key_id is a multi-Region key this store
 * holds (primary or replica) that also has a copy in region `region` — ciphertext under it opens there with
 * no call across regions, so nothing needs re-wrapping; 0 otherwise (not multi-Region, unknown, or no
 * replica there). Reads this store's multi_region table only. Thread-safe. */
int kms_core_mrk_replica_in(kms_core *core, const char *key_id, const char *region);

/*
 * The replication protocol between key-service servers (docs/DESIGN.md "Replication between servers"): how a
 * multi-Region key's primary creates, updates and moves the primary role to a replica in a region that is
 * another `envelopefs kms serve`. Its operations are no AWS operations: they are not in KMS_OPERATIONS (not in
 * `kms help`, refused by kms_core_call as unknown) and travel under their own X-Amz-Target namespace,
 * KMS_REPLICATION_TARGET + name: GetReplicationParameters (a one-time RSA wrapping key and token, and what the
 * region holds of the key) and PutReplica (create a replica, add versions, set the primary region). Same
 * contract as kms_core_call; the caller must be a signed principal of the key's account, authorized on this
 * store as CreateKey (a new replica) or by the replica's key policy (kms:ReplicateKey, kms:UpdatePrimaryRegion).
 * Each call leaves a record in this store's trail (ReplicateKey, SynchronizeMultiRegionKey,
 * UpdatePrimaryRegion; never key material).
 */
#define KMS_REPLICATION_TARGET "EnvelopefsReplication."
#define KMS_REPLICATION_MAC_HEADER "X-Envelopefs-Response-Mac"
#define KMS_REPLICATION_MAC_LABEL "envelopefs-replication-response-v1"
kms_err kms_core_replication_call(kms_core *core, const kms_principal *caller, const char *operation,
                                  const char *req, size_t req_len, char **resp, size_t *resp_len,
                                  char **message) KMS_WUR;
/* The answer's MAC a server adds to every successful replication call (header KMS_REPLICATION_MAC_HEADER),
 * 64 hex digits + NUL into out: HMAC-SHA256 under the request's SigV4 signing key over
 * KMS_REPLICATION_MAC_LABEL ‖ "\n" ‖ the request's signature (hex) ‖ "\n" ‖ the response body. */
void kms_replication_mac(const uint8_t key[32], const char *signature, const char *body, size_t len, char out[65]);

/* Wipe and free a response body from kms_core_call. NULL is a no-op. */
void kms_response_free(char *resp, size_t resp_len);

/*
 * Access keys for the HTTP server's SigV4 verification, kept in the store (secret encrypted under
 * the root key). create: returns malloc'd access key id and secret (wipe/free the secret with
 * kms_secret_str_free). lookup: copies the secret into secret_out (locked memory by the caller).
 */
kms_err kms_core_create_access_key(kms_core *core, const char *account, const char *user,
                                   char **access_key_id, char **secret) KMS_WUR;
kms_err kms_core_lookup_access_key(kms_core *core, const char *access_key_id,
                                   char *secret_out, size_t secret_cap,
                                   char *account_out, size_t account_cap,
                                   char *user_out, size_t user_cap) KMS_WUR;
void kms_secret_str_free(char *s);

/* An access key as listed: never its secret. */
typedef struct kms_access_key_info {
    char id[21];        /* "AKIA..." */
    char account[16];
    char user[64];
    int64_t created;    /* seconds since the epoch */
} kms_access_key_info;

/* The store's access keys, all of them (user NULL) or one user's, oldest first. On success *out is a
 * malloc'd array of *n entries (free() it; NULL when there are none). */
kms_err kms_core_list_access_keys(kms_core *core, const char *user, kms_access_key_info **out, size_t *n) KMS_WUR;

/* Delete an access key (KMS_ERR_NOT_FOUND if the store has none by that id). A server on the same store,
 * in this process or another, refuses it for every request that starts more than KMS_FRESHNESS_MS
 * after the deletion commits (kms_core_generation). */
kms_err kms_core_delete_access_key(kms_core *core, const char *access_key_id) KMS_WUR;

/* A counter that moves whenever what this core read from the store may be stale: at every reload after
 * another process's commit, and when an access key is deleted through this core. It first checks the
 * store for such commits, as every call does (at most once per KMS_FRESHNESS_MS; cheap otherwise: no
 * lock). A cache of anything read from the store (the server's access keys) is valid while it is the
 * same. Thread-safe. */
uint64_t kms_core_generation(kms_core *core);

/* What this core's audit writer has done since it opened: commits (transactions that wrote records),
 * records written, the largest number of records one commit carried, and writes that failed (their
 * calls were refused). records / commits is how well commits group (tests, the server's debug log,
 * docs/PERFORMANCE.md). Thread-safe. */
typedef struct kms_trail_stats {
    uint64_t commits, records, max_batch, failures;
} kms_trail_stats;
void kms_core_trail_stats(kms_core *core, kms_trail_stats *out);

/*
 * The audit trail's retention, a policy of the store (every process on it applies the same one). Ages
 * count back from the trail's newest record. A new store keeps everything: deleting audit history is
 * the operator's decision (`envelopefs kms configure-audit`).
 */
#define KMS_RETENTION_MAX_DAYS 100000
typedef struct kms_audit_retention {
    int64_t days;        /* records more than this many days older than the newest go; 0: any age stays */
    int64_t max_records; /* at most this many records stay, the newest; 0: no limit */
} kms_audit_retention;

typedef struct kms_audit_status {
    kms_audit_retention retention;
    int64_t records;         /* records in the trail (after pruning) */
    int64_t oldest, newest;  /* times (seconds since the epoch) of its first and last record; 0 if empty */
} kms_audit_status;

/* With set non-NULL, store that policy (KMS_ERR_VALIDATION for negative values or days over
 * KMS_RETENTION_MAX_DAYS). Then write this core's queued records, prune what the policy no longer keeps
 * (a long-lived core also does that on its maintenance thread, at start and every minute), and fill
 * status (non-NULL) with the policy and what the trail holds. */
kms_err kms_core_audit_retention(kms_core *core, const kms_audit_retention *set, kms_audit_status *status) KMS_WUR;

/* Reading the audit trail back: one record per call, as the core wrote it. */
#define KMS_AUDIT_MAX_RESULTS 1000
typedef struct kms_audit_query {
    int64_t start_time, end_time;          /* inclusive bounds, seconds since the epoch; 0: unbounded */
    const char *user, *key_id, *operation; /* exact matches; NULL: any (CloudTrail's Username, EventName) */
    const char *resource;                  /* ResourceName: a key id or key ARN the record names; NULL: any */
    const char *event_id, *access_key;     /* EventId, AccessKeyId; NULL: any */
    int read_only;                         /* ReadOnly: 0 any, 1 true, 2 false */
    const char *event_source;              /* EventSource ("kms.amazonaws.com", "ec2.amazonaws.com"); NULL: any */
    int64_t before;                        /* only records older than this event id (a page's `next`); 0: none */
    size_t max_results;                    /* 1 .. KMS_AUDIT_MAX_RESULTS */
} kms_audit_query;

typedef struct kms_audit_event {
    int64_t id;   /* increases with every record the store appends */
    int64_t time; /* seconds since the epoch */
    char account[16], user[64], source[64], operation[48], key_id[64], result[48];
    char event_id[40], access_key[24];
    int read_only;
    char *event;  /* the CloudTrail JSON record (malloc'd; kms_audit_events_free) */
} kms_audit_event;

/* Free what kms_core_lookup_audit returned. */
void kms_audit_events_free(kms_audit_event *ev, size_t n);

/* Verify the audit trail: every record's hash chain link and contents from the chain's start (or, with
 * start_time, from the newest digest before the first record at or after it), every digest's Ed25519
 * signature, and that no record a digest covers is missing (truncation). public_key_hex (64 hex
 * digits) pins the key to check against; NULL uses the store's (itself checked against its sealed
 * secret half). */
typedef struct kms_audit_validation {
    bool valid;
    int64_t records, digests;    /* records and digests checked */
    int64_t legacy;              /* records from before the chain existed (not verifiable) */
    int64_t unsealed;            /* records after the newest digest (the residual window) */
    int64_t first_seq, last_seq; /* the checked range */
    int64_t bad_seq;             /* the first bad record's seq (0 if none; a digest's problem: -id) */
    char bad_event_id[40];       /* its eventID if it could be read */
    char reason[200];
    char public_key[65];         /* hex of the key used */
} kms_audit_validation;
kms_err kms_core_validate_audit(kms_core *core, int64_t start_time, const char *public_key_hex,
                                kms_audit_validation *out) KMS_WUR;

/* The public half of the store's audit signing key, 64 hex digits + NUL. */
void kms_core_audit_public_key(kms_core *core, char out[65]);

/* Record a request that failed authentication (the server: bad signature, unknown access key, expired
 * request) with the access key id it claimed and its source address. Rate-limited (a token bucket of
 * KMS_AUTH_FAILURE_RATE records a second, burst KMS_AUTH_FAILURE_BURST): failures beyond it are counted
 * and the next record says how many were suppressed, so a flood cannot fill the disk. Waits until
 * the record is durable. */
#define KMS_AUTH_FAILURE_RATE 10
#define KMS_AUTH_FAILURE_BURST 100
void kms_core_audit_auth_failure(kms_core *core, const kms_principal *claimed, const char *operation, kms_err e,
                                 const char *message);

/* A call of another service of the account (EC2's volume and snapshot calls and EBS's direct API: the
 * volume store), recorded in this trail as CloudTrail keeps every service's events in one trail per
 * account: the same record shape, hash chain, digests, lookup (EventSource filters) and validation. p
 * gives the columns lookups filter on (account, user, access key) and sourceIPAddress/userAgent;
 * recipientAccountId is p's account.
 * Strings are borrowed; the JSON texts must already be free of secrets. Durable before it returns.
 * KMS_ERR_VALIDATION for an event source that is not NAME.amazonaws.com (or is kms's) or JSON that is
 * not an object. */
typedef struct kms_service_event {
    const char *event_source;       /* "ec2.amazonaws.com" */
    const char *event_name;         /* "CreateVolume", "AttachVolume", ... (< 48 characters) */
    bool read_only;
    const char *request_parameters; /* a JSON object's text, or NULL (null) */
    const char *response_elements;  /* a JSON object's text, or NULL (null) */
    const char *resource_type;      /* "AWS::EC2::Volume", "AWS::EC2::Snapshot", or NULL */
    const char *resource_name;      /* "vol-...", "snap-..." (the key_id column: ResourceName), or NULL */
    const char *resource_arn;       /* or NULL */
    const char *error_code;         /* NULL on success */
    const char *error_message;
    /* a JSON object's text: the userIdentity as the service saw its caller (a caller of a remote key
     * service, known by its access key), in place of the one built from p; NULL: built from p */
    const char *user_identity;
    const char *user_agent; /* the caller's client as the service saw it; NULL: p's */
    /* a data-plane call (EBS's PutSnapshotBlock, GetSnapshotBlock, List*Blocks): managementEvent false,
     * eventCategory "Data", as CloudTrail records data events; false: a management event */
    bool data_event;
} kms_service_event;
kms_err kms_core_audit_service_event(kms_core *core, const kms_principal *p, const kms_service_event *ev) KMS_WUR;

/* The records matching q, newest first (every answered call's record is already written). On success *out is a
 * malloc'd array of *n events (free() it; NULL when none) and *next is the `before` of the next page, 0
 * when there is none. The search walks back from the newest record and stops at the first one older
 * than start_time (records are in time order unless the clock was set back). KMS_ERR_VALIDATION for
 * max_results out of range or start_time after end_time. */
kms_err kms_core_lookup_audit(kms_core *core, const kms_audit_query *q, kms_audit_event **out, size_t *n,
                              int64_t *next) KMS_WUR;

/* n fresh random bytes from the kernel's CSPRNG through a per-thread pool (kms/random.c): what the
 * core uses for data keys and nonces, and the server for request ids. 0, or -1 on failure. */
int kms_random(uint8_t *buf, size_t n) KMS_WUR;

/* A principal ARN as a kms_principal names it: "arn:aws:iam::ACCOUNT:root" → (ACCOUNT, "root"),
 * "arn:aws:iam::ACCOUNT:user/NAME" → (ACCOUNT, NAME), NAME of IAM's user-name characters and shorter than
 * user_cap. 0, or -1 (nothing written) if arn is not one of those. */
int kms_principal_split(const char *arn, char account[13], char *user, size_t user_cap) KMS_WUR;

#ifdef __cplusplus
}
#endif
#endif
