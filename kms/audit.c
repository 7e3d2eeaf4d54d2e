/*
 * audit.c — the audit trail in the key store: retention, pruning and lookup (see audit.h), and the amendment
 * of a record whose write failed (kms_audit_rec_refused, trail.h).
 */
#include "audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/jsondump.h"
#include "trail.h"

void kms_audit_rec_refused(struct audit_rec *r)
{
    json_t *ev;
    const char *src, *code;
    char *text = NULL;
    size_t n;
    if (strcmp(r->result, "OK") || !r->event)
        return; /* (failed already: its caller sees that error, not the trail's; or amended before) */
    if (!(ev = json_loads(r->event, 0, NULL)))
        return;
    src = json_string_value(json_object_get(ev, "eventSource"));
    code = src && !strcmp(src, "ec2.amazonaws.com")   ? "InternalError"
           : src && !strcmp(src, "ebs.amazonaws.com") ? "InternalServerException"
                                                      : "KMSInternalException";
    json_object_set_new(ev, "errorCode", json_string(code));
    json_object_set_new(ev, "errorMessage",
                        json_string("the audit trail could not be written when the call was made; the call was "
                                    "refused (it had taken effect)"));
    json_object_set_new(ev, "responseElements", json_null()); /* the caller got no answer */
    if (efs_json_dump_compact_sorted(ev, &text, &n))
        text = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(ev);
    if (!text)
        return;
    free(r->event);
    r->event = text;
    snprintf(r->result, sizeof r->result, "%s", code);
}

#define STR_(x) #x
#define STR(x) STR_(x)

static const char *const KEYS[2] = {"audit_retention_days", "audit_max_records"};

int kms_retention_get(sqlite3 *db, kms_audit_retention *r)
{
    sqlite3_stmt *st;
    int rc;
    memset(r, 0, sizeof *r);
    if (sqlite3_prepare_v2(db, "SELECT k, v FROM meta WHERE k IN (?1, ?2)", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, KEYS[0], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, KEYS[1], -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        int64_t v = sqlite3_column_int64(st, 1); /* decimal text; anything else reads as 0: no limit */
        if (v < 0)
            v = 0;
        if (k && !strcmp(k, KEYS[0]))
            r->days = v > KMS_RETENTION_MAX_DAYS ? KMS_RETENTION_MAX_DAYS : v;
        else
            r->max_records = v;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

bool kms_retention_valid(const kms_audit_retention *r)
{
    return r->days >= 0 && r->days <= KMS_RETENTION_MAX_DAYS && r->max_records >= 0;
}

int kms_retention_set(sqlite3 *db, const kms_audit_retention *r)
{
    const int64_t vals[2] = {r->days, r->max_records};
    sqlite3_stmt *st;
    int ok = 1;
    if (!kms_retention_valid(r))
        return -1;
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta(k, v) VALUES(?, ?)", -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return -1;
    }
    for (int i = 0; i < 2 && ok; i++) {
        char buf[24];
        snprintf(buf, sizeof buf, "%lld", (long long)vals[i]);
        sqlite3_bind_text(st, 1, KEYS[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, buf, -1, SQLITE_TRANSIENT);
        ok = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (ok && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return 0;
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* One transaction: delete the oldest rows the policy lets go, up to KMS_PRUNE_BATCH, as one contiguous
 * range from the start (the chain must stay whole: a row the clock placed out of order stops the
 * cut), and sign a checkpoint digest saying where the chain now begins and the hash it continues from.
 * Digests of the removed range go too. Returns the rows deleted, or -1. */
static int prune_batch(sqlite3 *db, const uint8_t *sk, int64_t cutoff, int64_t last_seq, int64_t lo)
{
    sqlite3_stmt *st = NULL;
    int64_t upto = -1;
    uint8_t hash[32];
    bool chained = false;
    int n = -1;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT seq FROM audit WHERE seq >= ?3 AND (seq >= ?3 + " STR(KMS_PRUNE_BATCH)
                           " OR NOT (time < ?1 OR seq <= ?2)) ORDER BY seq LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, cutoff);
    sqlite3_bind_int64(st, 2, last_seq);
    sqlite3_bind_int64(st, 3, lo);
    if (sqlite3_step(st) == SQLITE_ROW)
        upto = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (upto <= lo) { /* nothing to cut (or every row would go: the newest always stays) */
        n = 0;
        goto out;
    }
    chained = !kms_trail_hash_of(db, upto - 1, hash);
    if (sqlite3_prepare_v2(db, "DELETE FROM audit WHERE seq < ?", -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, upto);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto out;
    n = sqlite3_changes(db);
    sqlite3_finalize(st);
    st = NULL;
    if (chained) {
        if (sqlite3_prepare_v2(db,
                               "DELETE FROM audit_digests WHERE (kind IN ('periodic','close') AND last_seq < ?1)"
                               " OR kind IN ('start','checkpoint')",
                               -1, &st, NULL) != SQLITE_OK)
            goto fail;
        sqlite3_bind_int64(st, 1, upto);
        if (sqlite3_step(st) != SQLITE_DONE ||
            kms_trail_put_digest(db, sk, "checkpoint", upto, upto - 1, hash, (int64_t)time(NULL)))
            goto fail;
    }
    sqlite3_finalize(st);
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return n;
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
fail:
    n = -1;
out:
    sqlite3_finalize(st);
    sqlite3_exec(db, n >= 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
    return n;
}

int64_t kms_audit_prune(sqlite3 *db, const kms_audit_retention *r, const uint8_t *sk, bool (*stop)(void *), void *arg)
{
    sqlite3_stmt *span;
    int64_t total = 0;
    if (!r->days && !r->max_records)
        return 0;
    /* Each batch: the oldest KMS_PRUNE_BATCH rows (a range of the primary key: no scan) that are older
     * than the cutoff or at or below the last seq the cap lets go. seq is the rowid, so min, max and the
     * newest row are lookups, not scans (min and max in one SELECT would scan the table: SQLite's
     * min/max shortcut takes one aggregate per query). */
    if (sqlite3_prepare_v2(db,
                           "SELECT (SELECT min(seq) FROM audit), (SELECT max(seq) FROM audit),"
                           " (SELECT time FROM audit ORDER BY seq DESC LIMIT 1)",
                           -1, &span, NULL) != SQLITE_OK)
        return -1;
    for (;;) {
        int64_t lo, hi, newest, cutoff, last_seq;
        int n;
        if (stop && stop(arg))
            break;
        if (sqlite3_step(span) != SQLITE_ROW || sqlite3_column_type(span, 0) == SQLITE_NULL) {
            sqlite3_reset(span);
            break; /* empty trail, or unreadable: nothing more to do now */
        }
        lo = sqlite3_column_int64(span, 0);
        hi = sqlite3_column_int64(span, 1);
        newest = sqlite3_column_int64(span, 2);
        sqlite3_reset(span);
        cutoff = r->days ? newest - r->days * 86400 : INT64_MIN;
        last_seq = r->max_records && hi - lo + 1 > r->max_records ? hi - r->max_records : INT64_MIN;
        n = prune_batch(db, sk, cutoff, last_seq, lo);
        if (n < 0) {
            total = -1;
            break;
        }
        total += n;
        if (n == 0)
            break;
    }
    sqlite3_finalize(span);
    return total;
}

int kms_audit_stat(sqlite3 *db, kms_audit_status *s)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*), (SELECT time FROM audit ORDER BY seq LIMIT 1),"
                           " (SELECT time FROM audit ORDER BY seq DESC LIMIT 1) FROM audit",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        s->records = sqlite3_column_int64(st, 0);
        s->oldest = sqlite3_column_int64(st, 1); /* NULL (empty) reads as 0 */
        s->newest = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

static void copy_col(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static bool col_is(sqlite3_stmt *st, int col, const char *want)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return !want || (t && !strcmp((const char *)t, want));
}

/* ResourceName: a key id, or a key ARN (whose last part is the id). */
static bool resource_is(sqlite3_stmt *st, const char *want)
{
    const char *slash;
    if (!want)
        return true;
    slash = strncmp(want, "arn:", 4) ? NULL : strrchr(want, '/');
    return col_is(st, 6, slash ? slash + 1 : want);
}

/* EventSource: the record's top-level "eventSource" (compact JSON with sorted keys, as trail.c writes
 * it: a string value cannot hold an unescaped quote, so the pattern matches only that member). Records
 * from before the chain have no JSON: the key service's. */
static bool source_is(sqlite3_stmt *st, int col, const char *want)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    char pat[96];
    if (!want)
        return true;
    if (!t)
        return !strcmp(want, "kms.amazonaws.com");
    snprintf(pat, sizeof pat, "\"eventSource\":\"%s\"", want);
    return strstr((const char *)t, pat) != NULL;
}

void kms_audit_events_free(kms_audit_event *ev, size_t n)
{
    if (!ev)
        return;
    for (size_t i = 0; i < n; i++)
        free(ev[i].event);
    free(ev);
}

int kms_audit_lookup(sqlite3 *db, const kms_audit_query *q, kms_audit_event **out, size_t *n, int64_t *next)
{
    sqlite3_stmt *st;
    kms_audit_event *v = NULL;
    size_t len = 0;
    int rc, ret = 0;

    *out = NULL;
    *n = 0;
    *next = 0;
    /* Backwards along the rowid; the filters are applied here so that the walk can stop at start_time. */
    if (sqlite3_prepare_v2(db,
                           "SELECT seq, time, account, user, source, operation, key_id, result, event_id,"
                           " access_key, read_only, event FROM audit"
                           " WHERE seq < ?1 ORDER BY seq DESC",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, q->before > 0 ? q->before : INT64_MAX);
    v = malloc(q->max_results * sizeof *v);
    if (!v) {
        sqlite3_finalize(st);
        return -1;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t t = sqlite3_column_int64(st, 1);
        kms_audit_event *e;
        if (q->start_time && t < q->start_time)
            break;
        if ((q->end_time && t > q->end_time) || !col_is(st, 3, q->user) || !col_is(st, 6, q->key_id) ||
            !col_is(st, 5, q->operation) || !col_is(st, 8, q->event_id) || !col_is(st, 9, q->access_key) ||
            (q->read_only && sqlite3_column_int(st, 10) != (q->read_only == 1)) || !resource_is(st, q->resource) ||
            !source_is(st, 11, q->event_source))
            continue;
        if (len == q->max_results) { /* one more match: there is a next page, after the last one kept */
            *next = v[len - 1].id;
            break;
        }
        e = &v[len++];
        e->id = sqlite3_column_int64(st, 0);
        e->time = t;
        copy_col(e->account, sizeof e->account, st, 2);
        copy_col(e->user, sizeof e->user, st, 3);
        copy_col(e->source, sizeof e->source, st, 4);
        copy_col(e->operation, sizeof e->operation, st, 5);
        copy_col(e->key_id, sizeof e->key_id, st, 6);
        copy_col(e->result, sizeof e->result, st, 7);
        copy_col(e->event_id, sizeof e->event_id, st, 8);
        copy_col(e->access_key, sizeof e->access_key, st, 9);
        e->read_only = sqlite3_column_int(st, 10);
        e->event = sqlite3_column_text(st, 11) ? strdup((const char *)sqlite3_column_text(st, 11)) : NULL;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = -1;
    sqlite3_finalize(st);
    if (ret || !len) {
        kms_audit_events_free(v, len);
        *next = 0;
        return ret;
    }
    *out = v;
    *n = len;
    return 0;
}
