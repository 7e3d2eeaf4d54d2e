/*
 * trail_check.c — validating the audit trail (kms_core_validate_audit), the exported public key, and
 * the rate-limited records of failed authentication. The chain and digest formats are trail.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/monotime.h"
#include "internal.h"
#include "trail.h"

void kms_trail_hash(const uint8_t prev[32], int64_t seq, int64_t time, const char *const cols[9], int read_only,
                    uint8_t out[32]);
size_t kms_trail_digest_msg(uint8_t *m, const char *kind, int64_t first_seq, int64_t last_seq,
                            const uint8_t last_hash[32], int64_t time);

struct digest {
    int64_t id, first, last, time;
    char kind[16];
    uint8_t hash[32];
};

static void bad(kms_audit_validation *v, int64_t seq, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void bad(kms_audit_validation *v, int64_t seq, const char *fmt, ...)
{
    va_list ap;
    if (!v->valid)
        return; /* the first problem is the one named */
    v->valid = false;
    v->bad_seq = seq;
    va_start(ap, fmt);
    vsnprintf(v->reason, sizeof v->reason, fmt, ap);
    va_end(ap);
}

static int64_t one_int(sqlite3 *db, const char *sql, int64_t a, int64_t b, int64_t dflt)
{
    sqlite3_stmt *st;
    int64_t r = dflt;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return dflt;
    sqlite3_bind_int64(st, 1, a);
    sqlite3_bind_int64(st, 2, b);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        r = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return r;
}

/* Every digest, signatures checked; *anchor = index of the newest start/checkpoint (-1: none). */
static struct digest *load_digests(sqlite3 *db, const uint8_t pk[32], kms_audit_validation *v, size_t *n,
                                   ssize_t *anchor)
{
    sqlite3_stmt *st;
    struct digest *d = NULL;
    size_t len = 0, cap = 0;
    *anchor = -1;
    if (sqlite3_prepare_v2(db, "SELECT id, kind, first_seq, last_seq, last_hash, time, sig FROM audit_digests ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint8_t m[128];
        size_t ml;
        struct digest *x;
        const char *kind = (const char *)sqlite3_column_text(st, 1);
        if (len == cap) {
            struct digest *nd = realloc(d, (cap = cap ? cap * 2 : 64) * sizeof *d);
            if (!nd)
                break;
            d = nd;
        }
        x = &d[len];
        memset(x, 0, sizeof *x);
        x->id = sqlite3_column_int64(st, 0);
        snprintf(x->kind, sizeof x->kind, "%s", kind ? kind : "");
        x->first = sqlite3_column_int64(st, 2);
        x->last = sqlite3_column_int64(st, 3);
        x->time = sqlite3_column_int64(st, 5);
        if (sqlite3_column_bytes(st, 4) != 32 || sqlite3_column_bytes(st, 6) != crypto_sign_BYTES) {
            bad(v, -x->id, "digest %lld is malformed", (long long)x->id);
            continue;
        }
        memcpy(x->hash, sqlite3_column_blob(st, 4), 32);
        ml = kms_trail_digest_msg(m, x->kind, x->first, x->last, x->hash, x->time);
        if (strlen(x->kind) > 12 || crypto_sign_verify_detached(sqlite3_column_blob(st, 6), m, ml, pk)) {
            bad(v, -x->id, "digest %lld: its signature does not verify (edited, or signed by another key)",
                (long long)x->id);
            continue;
        }
        if (!strcmp(x->kind, "start") || !strcmp(x->kind, "checkpoint"))
            *anchor = (ssize_t)len;
        len++;
    }
    sqlite3_finalize(st);
    *n = len;
    return d;
}

static int by_last(const void *a, const void *b)
{
    const struct digest *x = a, *y = b;
    return x->last < y->last ? -1 : x->last > y->last;
}

kms_err kms_core_validate_audit(kms_core *c, int64_t start_time, const char *public_key_hex,
                                kms_audit_validation *v)
{
    uint8_t pk[32], run[32];
    struct digest *d = NULL, *seals = NULL;
    size_t nd = 0, ns = 0, si = 0;
    ssize_t anchor;
    int64_t chain_from, start, expected, sealed_upto = 0;
    sqlite3_stmt *st = NULL;
    kms_err e = KMS_OK;

    memset(v, 0, sizeof *v);
    v->valid = true;
    if (public_key_hex) {
        size_t bl = 0;
        if (strlen(public_key_hex) != 64 || sodium_hex2bin(pk, 32, public_key_hex, 64, NULL, &bl, NULL) || bl != 32)
            return KMS_ERR_VALIDATION;
    }
    pthread_mutex_lock(&c->lock);
    kms_trail_flush_locked(c);
    if (!public_key_hex)
        memcpy(pk, c->audit_pk, 32);
    sodium_bin2hex(v->public_key, sizeof v->public_key, pk, 32);
    d = load_digests(c->db, pk, v, &nd, &anchor);
    if (anchor < 0) {
        bad(v, 0, "no start or checkpoint digest: the chain's beginning is not vouched for");
        goto out;
    }
    v->digests = (int64_t)nd;
    chain_from = d[anchor].first;
    memcpy(run, d[anchor].hash, 32);
    seals = malloc((nd ? nd : 1) * sizeof *seals);
    if (!seals) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < nd; i++)
        if ((!strcmp(d[i].kind, "periodic") || !strcmp(d[i].kind, "close")) && d[i].last >= chain_from) {
            seals[ns++] = d[i];
            if (d[i].last > sealed_upto)
                sealed_upto = d[i].last;
        }
    qsort(seals, ns, sizeof *seals, by_last);
    v->legacy = one_int(c->db, "SELECT count(*) FROM audit WHERE seq < ?1", chain_from, 0, 0);
    start = chain_from;
    if (start_time) {
        int64_t s0 = one_int(c->db, "SELECT seq FROM audit WHERE seq >= ?1 AND time >= ?2 ORDER BY seq LIMIT 1",
                             chain_from, start_time, INT64_MAX);
        for (size_t i = 0; i < ns; i++) /* the newest seal before s0 vouches for where we start */
            if (seals[i].last < s0) {
                start = seals[i].last + 1;
                memcpy(run, seals[i].hash, 32);
            }
    }
    while (si < ns && seals[si].last < start)
        si++;
    v->first_seq = start;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT seq, time, account, user, source, operation, key_id, result, event_id, access_key,"
                           " read_only, event, prev, hash FROM audit WHERE seq >= ? ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK) {
        e = KMS_ERR_INTERNAL;
        goto out;
    }
    sqlite3_bind_int64(st, 1, start);
    expected = start;
    while (v->valid && sqlite3_step(st) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        const char *cols[9];
        uint8_t h[32], self[32];
        const void *sp = sqlite3_column_blob(st, 12), *sh = sqlite3_column_blob(st, 13);
        bool shape = sqlite3_column_bytes(st, 12) == 32 && sqlite3_column_bytes(st, 13) == 32;
        for (int i = 0; i < 9; i++)
            cols[i] = (const char *)sqlite3_column_text(st, i == 8 ? 11 : 2 + i);
        if (seq != expected) {
            bad(v, expected, "record %lld is missing (the trail goes on at %lld)", (long long)expected, (long long)seq);
            break;
        }
        kms_trail_hash(run, seq, sqlite3_column_int64(st, 1), cols, sqlite3_column_int(st, 10), h);
        if (!shape) {
            bad(v, seq, "record %lld has no hash (inserted, or its chain columns were cleared)", (long long)seq);
        } else if (memcmp(sp, run, 32)) {
            /* It does not follow its predecessor. If it is consistent with the link it names, that
             * predecessor is what changed (rewritten with a new hash); otherwise this record is. */
            kms_trail_hash(sp, seq, sqlite3_column_int64(st, 1), cols, sqlite3_column_int(st, 10), self);
            if (!memcmp(self, sh, 32) && seq > start)
                bad(v, seq - 1, "record %lld was changed: record %lld follows a different version of it",
                    (long long)(seq - 1), (long long)seq);
            else
                bad(v, seq, "record %lld does not follow its predecessor (inserted, reordered or edited)",
                    (long long)seq);
        } else if (memcmp(h, sh, 32)) {
            bad(v, seq, "record %lld does not match its hash (edited)", (long long)seq);
        }
        memcpy(run, h, 32);
        for (; v->valid && si < ns && seals[si].last == seq; si++)
            if (memcmp(seals[si].hash, run, 32))
                bad(v, seq, "records up to %lld do not match digest %lld (rewritten)", (long long)seq,
                    (long long)seals[si].id);
        if (v->valid)
            v->records++;
        expected = seq + 1;
    }
    v->last_seq = expected - 1;
    if (v->valid && sealed_upto > v->last_seq)
        bad(v, v->last_seq + 1, "records %lld to %lld are missing: a digest covers them (the trail was truncated)",
            (long long)(v->last_seq + 1), (long long)sealed_upto);
    if (v->valid && v->last_seq > sealed_upto)
        v->unsealed = v->last_seq - (sealed_upto >= start ? sealed_upto : start - 1);
out:
    sqlite3_finalize(st);
    if (!v->valid && v->bad_seq > 0) {
        sqlite3_stmt *q;
        if (sqlite3_prepare_v2(c->db, "SELECT event_id FROM audit WHERE seq=?", -1, &q, NULL) == SQLITE_OK) {
            sqlite3_bind_int64(q, 1, v->bad_seq);
            if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_text(q, 0))
                snprintf(v->bad_event_id, sizeof v->bad_event_id, "%s", (const char *)sqlite3_column_text(q, 0));
            sqlite3_finalize(q);
        }
    }
    pthread_mutex_unlock(&c->lock);
    free(seals);
    free(d);
    return e;
}

void kms_core_audit_public_key(kms_core *c, char out[65])
{
    sodium_bin2hex(out, 65, c->audit_pk, 32);
}

void kms_core_audit_auth_failure(kms_core *c, const kms_principal *claimed, const char *operation, kms_err e,
                                 const char *message)
{
    int64_t now = efs_mono_ns() / 1000000;
    uint64_t ticket = 0;
    char name[48], msg[320];
    snprintf(name, sizeof name, "%s", operation && *operation ? operation : "(none)");
    pthread_mutex_lock(&c->lock);
    if (!c->af_last_ms)
        c->af_tokens = KMS_AUTH_FAILURE_BURST;
    else
        c->af_tokens += (double)(now - c->af_last_ms) * KMS_AUTH_FAILURE_RATE / 1000.0;
    if (c->af_tokens > KMS_AUTH_FAILURE_BURST)
        c->af_tokens = KMS_AUTH_FAILURE_BURST;
    c->af_last_ms = now;
    if (c->af_tokens >= 1) {
        c->af_tokens -= 1;
        if (c->af_suppressed)
            snprintf(msg, sizeof msg, "%s (%llu earlier authentication failures not recorded: rate limit)",
                     message ? message : kms_err_name(e), (unsigned long long)c->af_suppressed);
        else
            snprintf(msg, sizeof msg, "%s", message ? message : kms_err_name(e));
        c->af_suppressed = 0;
        ticket = kms_trail_append(c, claimed, name, NULL, NULL, NULL, e, msg);
    } else {
        c->af_suppressed++;
    }
    pthread_mutex_unlock(&c->lock);
    if (ticket) {
        kms_err written = kms_trail_commit(c, ticket); /* the request is refused either way */
        (void)written;
    }
}
