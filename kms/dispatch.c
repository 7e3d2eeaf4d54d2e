/*
 * dispatch.c — kms_core_call, the single entry point of the key service. Every operation, from the
 * embedded client, the HTTP server or the CLI, passes here: parse the JSON body, take the lock,
 * notice other processes' changes, apply due deletions, run the operation (which authorises the
 * caller through authz.c once it knows the key), queue an audit record and, after the lock, wait
 * until it is durable (trail.h: group commit) before answering (kms_core_call_async: the answer at once,
 * its ticket for kms_core_when_durable, for the server); new key material of a multi-Region key
 * is pushed to its replicas on other servers after the lock is released (mrk_remote.c). Operations themselves live in ops.c;
 * the table below is generated from the one list of operations in envelopefs/kms.h.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "common/jsondump.h"
#include "common/jsonparse.h"
#include "internal.h"
#include "model.h"
#include "mrk_remote.h"
#include "ops.h"

/* The dispatch table, generated from the one list of operations (KMS_OPERATIONS, envelopefs/kms.h). */
static const struct op_entry {
    const char *name;
    kms_op_fn fn;
    unsigned flags;
} OPS[] = {
#define X(name, fn, verb, flags) {#name, fn, flags},
    KMS_OPERATIONS(X)
#undef X
};

bool kms_trail_read_only(const char *op)
{
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
        if (!strcmp(OPS[i].name, op))
            return (OPS[i].flags & KMS_OP_READ_ONLY) != 0;
    return true; /* not an operation: nothing was changed */
}

/* A call refused before it reached an operation (unknown name, malformed body): recorded too. */
static kms_err refuse(kms_core *c, const kms_principal *caller, const char *name, kms_err e, char *msg,
                      char **message)
{
    uint64_t ticket;
    pthread_mutex_lock(&c->lock);
    ticket = kms_trail_append(c, caller, name, NULL, NULL, NULL, e, msg);
    pthread_mutex_unlock(&c->lock);
    if (ticket) {
        kms_err written = kms_trail_commit(c, ticket); /* the call is refused either way */
        (void)written;
    }
    if (message)
        *message = msg;
    else
        free(msg);
    return e;
}

/* Wipe every string in a JSON tree that may hold plaintext (Plaintext, PrivateKeyPlaintext fields). */
static void wipe_json_secrets(json_t *j)
{
    static const char *const fields[] = {"Plaintext", "PrivateKeyPlaintext", "KeyStorePassword"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        json_t *v = json_object_get(j, fields[i]);
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            sodium_memzero((char *)s, strlen(s));
        }
    }
}

/* Serialise a response (NUL-terminated): efs_json_dump_compact writes what json_dumps(JSON_COMPACT)
 * would, at a fraction of the cost (jansson formats a "%p" key into a hashtable per container for
 * loop detection); for trees it does not take (reals), json_dumpb into one buffer, dumped again into a
 * buffer of the exact size when the reply is larger. */
static kms_err dump(json_t *out, char **resp, size_t *resp_len)
{
    size_t cap = 1024, n;
    char *buf;
    if (efs_json_dump_compact(out, resp, resp_len) == 0)
        return KMS_OK;
    buf = malloc(cap);
    if (!buf)
        return KMS_ERR_NOMEM;
    n = json_dumpb(out, buf, cap - 1, JSON_COMPACT);
    if (n == 0) {
        free(buf);
        return KMS_ERR_NOMEM;
    }
    if (n > cap - 1) {
        char *big = malloc(n + 1);
        sodium_memzero(buf, cap);
        free(buf);
        if (!big)
            return KMS_ERR_NOMEM;
        buf = big;
        cap = n + 1;
        if (json_dumpb(out, buf, n, JSON_COMPACT) != n) {
            sodium_memzero(buf, cap);
            free(buf);
            return KMS_ERR_NOMEM;
        }
    }
    buf[n] = 0;
    *resp = buf;
    *resp_len = n;
    return KMS_OK;
}

/* This thread's deferred-commit scope (kms_core_defer_begin): the core it is on and the newest ticket. */
static _Thread_local struct {
    kms_core *core;
    uint64_t ticket, first; /* the newest and the first ticket of the scope */
} deferred;

void kms_core_defer_begin(kms_core *c)
{
    deferred.core = c;
    deferred.ticket = deferred.first = 0;
}

kms_err kms_core_defer_end(kms_core *c)
{
    uint64_t t = deferred.core == c ? deferred.ticket : 0, first = deferred.first;
    kms_err e;
    deferred.core = NULL;
    deferred.ticket = deferred.first = 0;
    if (!t)
        return KMS_OK;
    e = kms_trail_commit(c, t);
    /* an earlier call of the scope whose record's write failed: its record says the call was refused */
    if (!e && kms_trail_refused_in(c, first, t))
        e = KMS_ERR_IO;
    return e;
}

kms_err kms_core_call(kms_core *c, const kms_principal *caller, const char *operation, const char *req,
                      size_t req_len, char **resp, size_t *resp_len, char **message)
{
    const struct op_entry *op = NULL;
    json_t *in = NULL, *out = NULL;
    char jerr[128];
    char *msg = NULL;
    char key_id[KMS_KEY_ID_LEN + 1] = "", grant_used[KMS_GRANT_ID_BUF] = "";
    uint64_t ticket;
    bool dry_run = false;
    kms_err e;

    *resp = NULL;
    *resp_len = 0;
    if (message)
        *message = NULL;
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
        if (operation && !strcmp(OPS[i].name, operation)) {
            op = &OPS[i];
            break;
        }
    if (!op) {
        char name[48];
        snprintf(name, sizeof name, "%s", operation ? operation : "(none)");
        kms_set_msg(&msg, "unknown operation %s", name);
        return refuse(c, caller, name, KMS_ERR_UNKNOWN_OPERATION, msg, message);
    }
    in = efs_json_parse(req && req_len ? req : "{}", req && req_len ? req_len : 2, jerr, sizeof jerr);
    if (!in || !json_is_object(in)) {
        kms_set_msg(&msg, "request body is not a JSON object: %s", in ? "not an object" : jerr);
        json_decref(in);
        return refuse(c, caller, op->name, KMS_ERR_SERIALIZATION, msg, message);
    }
    e = kms_model_check(op->name, in, &dry_run, &msg); /* before any key is looked at, as AWS's model */
    pthread_mutex_lock(&c->lock);
    if (!e)
        e = kms_store_reload_if_changed(c, &msg);
    if (!e) {
        kms_sweep_deletions(c);
        if (c->n_replica_due)
            kms_mrk_check_replicas(c); /* PendingReplicaDeletion primaries: are their replicas gone? */
        struct op_ctx ctx = {.core = c, .caller = caller, .operation = op->name, .key_id = key_id, .msg = &msg,
                             .dry_run = dry_run, .in = in, .grant_used = grant_used};
        e = kms_check_grant_tokens(&ctx, in);
        if (!e)
            e = op->fn(&ctx, in, &out);
        kms_store_note_own_writes(c);
    }
    ticket = kms_trail_append_grant(c, caller, op->name, in, out, key_id, e, msg, grant_used);
    pthread_mutex_unlock(&c->lock);
    kms_mrk_flush_pushes(c); /* new versions of multi-Region keys to replicas on other servers, unlocked */
    wipe_json_secrets(in);
    json_decref(in);
    /* Durable before the answer: a caller that sees success can rely on its record surviving a crash.
     * In a deferred scope the caller waits for it in kms_core_defer_end, before it uses the answer. */
    if (ticket && !e && deferred.core == c) {
        if (ticket > deferred.ticket)
            deferred.ticket = ticket;
        if (!deferred.first)
            deferred.first = ticket;
    } else if (!ticket || kms_trail_commit(c, ticket)) {
        if (out) {
            wipe_json_secrets(out);
            json_decref(out);
            out = NULL;
        }
        if (!e) {
            e = KMS_ERR_INTERNAL;
            kms_set_msg(&msg, "the audit trail cannot be written; the call is refused");
        }
    }
    if (e) {
        if (out) {
            wipe_json_secrets(out);
            json_decref(out);
        }
        if (message)
            *message = msg;
        else
            free(msg);
        return e;
    }
    free(msg);
    e = dump(out, resp, resp_len);
    wipe_json_secrets(out);
    json_decref(out);
    return e;
}

void kms_response_free(char *resp, size_t resp_len)
{
    if (!resp)
        return;
    sodium_memzero(resp, resp_len);
    free(resp);
}

/* kms_core_call with the commit left to kms_core_when_durable: the call runs in a deferred scope of its own
 * (errors are committed inside the call, as always) and hands its ticket out instead of waiting. */
kms_err kms_core_call_async(kms_core *c, const kms_principal *caller, const char *operation, const char *req,
                            size_t req_len, char **resp, size_t *resp_len, char **message, uint64_t *ticket)
{
    kms_err e;
    *ticket = 0;
    if (deferred.core) /* inside the caller's own scope: its kms_core_defer_end commits this call too */
        return kms_core_call(c, caller, operation, req, req_len, resp, resp_len, message);
    kms_core_defer_begin(c);
    e = kms_core_call(c, caller, operation, req, req_len, resp, resp_len, message);
    *ticket = e ? 0 : deferred.ticket;
    deferred.core = NULL;
    deferred.ticket = 0;
    return e;
}
