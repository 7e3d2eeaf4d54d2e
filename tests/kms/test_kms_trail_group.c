/*
 * test_kms_trail_group.c — the audit trail's group commit with its own writer connection: many threads
 * calling kms_core_call at once each get an answer only once its record is durable, and every record is
 * in a valid chain; records queued while a commit is pending all go into one commit (records per commit
 * > 1, counted by kms_core_trail_stats); a failed trail write refuses every call of its batch, whose
 * records a later commit still writes in order; and the writer's commits do not make the core reload its
 * tables, while another connection's key change still does.
 */
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>

#include "envelopefs/kms.h"
#include "internal.h"
#include "testutil.h"
#include "kmstest.h"

#define THREADS 8
#define CALLS 100

static char g_store[300], g_keyfile[320], g_key[64];

static kms_core *open_store(void)
{
    kms_core *c = kmstest_open(g_store, g_keyfile);
    return c;
}

static kms_err call(kms_core *c, const char *op, const char *body, json_t **out)
{
    kms_principal p = {.account = "111122223333", .user = "test", .source = "test"};
    char *resp = NULL, *msg = NULL;
    size_t len = 0;
    kms_err e = kms_core_call(c, &p, op, body, strlen(body), &resp, &len, &msg);
    if (out)
        *out = e ? NULL : json_loadb(resp, len, 0, NULL);
    kms_response_free(resp, len);
    free(msg);
    return e;
}

static kms_err gdk(kms_core *c)
{
    char body[160];
    snprintf(body, sizeof body, "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_256\"}", g_key);
    return call(c, "GenerateDataKey", body, NULL);
}

/* The number of records in the store's trail (another connection: what a reader after a crash sees). */
static int64_t trail_rows(void)
{
    return kmstest_sql_count(g_store, "SELECT count(*) FROM audit", NULL);
}

static void check_valid(kms_core *c)
{
    kms_audit_validation v;
    CHECK(kms_core_validate_audit(c, 0, NULL, &v) == KMS_OK);
    if (!v.valid)
        fprintf(stderr, "validate-audit: %s (seq %lld)\n", v.reason, (long long)v.bad_seq);
    CHECK(v.valid);
}

struct worker {
    kms_core *c;
    int calls, ok;
    kms_err last;
};

static void *run_calls(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->calls; i++) {
        w->last = gdk(w->c);
        w->ok += w->last == KMS_OK;
    }
    return NULL;
}

/* Many threads at once: every answered call's record is in the trail, the chain is valid. */
static void test_concurrent(kms_core *c)
{
    pthread_t t[THREADS];
    struct worker w[THREADS];
    int64_t before = trail_rows();
    int ok = 0;
    kms_trail_stats st;
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.c = c, .calls = CALLS};
        CHECK(pthread_create(&t[i], NULL, run_calls, &w[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        ok += w[i].ok;
    }
    CHECK_EQ_INT(ok, THREADS * CALLS);
    /* durable before the answer: all there, read through another connection before any flush */
    CHECK(trail_rows() >= before + THREADS * CALLS);
    kms_core_trail_stats(c, &st);
    CHECK(st.records >= (uint64_t)(THREADS * CALLS));
    CHECK(st.commits >= 1 && st.commits <= st.records);
    check_valid(c);
}

/* Hold trail_mu (the committers' door) until n calls have queued their records: the first committer
 * then takes the whole queue, so one commit carries all n. Returns the workers' threads running. */
static void queue_behind_door(kms_core *c, pthread_t *t, struct worker *w, int n)
{
    size_t queued = 0;
    pthread_mutex_lock(&c->trail_mu);
    for (int i = 0; i < n; i++) {
        w[i] = (struct worker){.c = c, .calls = 1};
        CHECK(pthread_create(&t[i], NULL, run_calls, &w[i]) == 0);
    }
    while (queued < (size_t)n) { /* each call appends under the core lock, then waits at trail_mu */
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
        if (pthread_mutex_trylock(&c->lock)) /* (try: the core takes trail_mu under its lock, never the reverse) */
            continue;
        queued = c->q_n;
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&c->trail_mu);
}

static void test_one_commit_for_all(kms_core *c)
{
    pthread_t t[THREADS];
    struct worker w[THREADS];
    kms_trail_stats before, after;
    kms_core_trail_stats(c, &before);
    queue_behind_door(c, t, w, THREADS);
    for (int i = 0; i < THREADS; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK(w[i].ok == 1);
    }
    kms_core_trail_stats(c, &after);
    CHECK(after.max_batch >= THREADS); /* records per commit > 1: all THREADS in one */
    CHECK_EQ_INT(after.records - before.records, THREADS);
    CHECK_EQ_INT(after.commits - before.commits, 1);
    check_valid(c);
}

/* A write that fails refuses every call whose record it carried; the records stay and a later commit
 * writes them first, so the chain stays in ticket order and valid. */
static void test_failed_write(kms_core *c)
{
    pthread_t t[4];
    struct worker w[4];
    kms_trail_stats before, after;
    int64_t rows = trail_rows();
    kms_core_trail_stats(c, &before);
    atomic_store(&c->trail_fail_next, 1);
    queue_behind_door(c, t, w, 4);
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK(w[i].ok == 0); /* never a success whose record was lost */
        CHECK(w[i].last == KMS_ERR_INTERNAL);
    }
    kms_core_trail_stats(c, &after);
    CHECK_EQ_INT(after.failures - before.failures, 1);
    CHECK_EQ_INT(trail_rows(), rows); /* nothing of the failed batch was written */
    CHECK(gdk(c) == KMS_OK);          /* the next commit: the 4 left over, then this one */
    CHECK_EQ_INT(trail_rows(), rows + 5);
    /* ... and the 4 say what their callers saw (refused, no answer), not success; the 5th succeeded */
    CHECK_EQ_INT(kmstest_sql_count(g_store,
                                   "SELECT count(*) FROM (SELECT * FROM audit ORDER BY seq DESC LIMIT 4 OFFSET 1)"
                                   " WHERE operation = ?1 AND result = 'KMSInternalException'"
                                   " AND json_extract(event, '$.errorCode') = 'KMSInternalException'"
                                   " AND json_extract(event, '$.errorMessage') LIKE '%audit trail%'"
                                   " AND json_type(event, '$.responseElements') = 'null'",
                                   "GenerateDataKey"),
                 4);
    CHECK_EQ_INT(kmstest_sql_count(g_store,
                                   "SELECT count(*) FROM (SELECT * FROM audit ORDER BY seq DESC LIMIT 1)"
                                   " WHERE result = ?1 AND json_extract(event, '$.errorCode') IS NULL",
                                   "OK"),
                 1);
    check_valid(c);
}

/* A deferred scope (kms_core_defer_begin) one of whose calls was in a failed write, made by another thread's
 * commit, while the scope's own newest call is written later: the scope ends refused (that call's record says
 * it was refused), not OK. */
static void test_failed_deferred(kms_core *c)
{
    pthread_t t;
    struct worker w = {.c = c, .calls = 1};
    int64_t rows = trail_rows();
    kms_core_defer_begin(c);
    CHECK(gdk(c) == KMS_OK); /* answered, its record queued */
    atomic_store(&c->trail_fail_next, 1);
    CHECK(pthread_create(&t, NULL, run_calls, &w) == 0); /* its commit takes both records and fails */
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(w.ok == 0 && w.last == KMS_ERR_INTERNAL);
    CHECK(gdk(c) == KMS_OK);
    CHECK_EQ_INT(kms_core_defer_end(c), KMS_ERR_IO); /* the three written now, the first two as refused */
    CHECK_EQ_INT(trail_rows(), rows + 3);
    CHECK_EQ_INT(kmstest_sql_count(g_store,
                                   "SELECT count(*) FROM (SELECT * FROM audit ORDER BY seq DESC LIMIT 3)"
                                   " WHERE result = ?1",
                                   "KMSInternalException"),
                 2);
    check_valid(c);
}

/* The writer's commits move the core connection's data_version; they must not reload the tables
 * (kms_core_generation moves at every reload). Another connection's key change must. */
static void test_no_reload(kms_core *c)
{
    uint64_t g0;
    kms_core *other;
    char body[160];
    struct timespec wait = {0, (KMS_FRESHNESS_MS + 1) * 1000000L};
    CHECK(gdk(c) == KMS_OK);
    nanosleep(&wait, NULL);
    g0 = kms_core_generation(c);
    for (int i = 0; i < 20; i++) {
        CHECK(gdk(c) == KMS_OK);
        nanosleep(&wait, NULL); /* past the freshness window: every call checks data_version */
    }
    CHECK_EQ_INT(kms_core_generation(c), g0);
    /* an own key change (a tag: a counted table) is adopted, not taken for another process's */
    snprintf(body, sizeof body, "{\"KeyId\":\"%s\",\"Tags\":[{\"TagKey\":\"a\",\"TagValue\":\"b\"}]}", g_key);
    CHECK(call(c, "TagResource", body, NULL) == KMS_OK);
    for (int i = 0; i < 5; i++) {
        CHECK(gdk(c) == KMS_OK);
        nanosleep(&wait, NULL);
    }
    CHECK_EQ_INT(kms_core_generation(c), g0);
    /* another connection (as another process would) disables the key: seen at the next call */
    other = open_store();
    snprintf(body, sizeof body, "{\"KeyId\":\"%s\"}", g_key);
    CHECK(call(other, "DisableKey", body, NULL) == KMS_OK);
    nanosleep(&wait, NULL);
    CHECK(gdk(c) == KMS_ERR_DISABLED);
    CHECK(kms_core_generation(c) != g0);
    CHECK(call(other, "EnableKey", body, NULL) == KMS_OK);
    kms_core_free(other);
    nanosleep(&wait, NULL);
    CHECK(gdk(c) == KMS_OK);
    check_valid(c);
}

int main(void)
{
    char tmpl[] = "/tmp/efs-kms-group-XXXXXX";
    kms_core *c;
    json_t *r;
    CHECK(sodium_init() >= 0);
    setenv("ENVELOPEFS_KMS_SYNC", "full", 1); /* every commit syncs: what the server's bench runs */
    CHECK(mkdtemp(tmpl) != NULL);
    kmstest_init_store(tmpl, g_store, sizeof g_store, g_keyfile, sizeof g_keyfile, NULL);
    c = open_store();
    CHECK(call(c, "CreateKey", "{\"Description\":\"group\"}", &r) == KMS_OK);
    snprintf(g_key, sizeof g_key, "%s", json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "KeyId")));
    json_decref(r);
    test_concurrent(c);
    test_one_commit_for_all(c);
    test_failed_write(c);
    test_failed_deferred(c);
    test_no_reload(c);
    kms_core_free(c);
    c = open_store(); /* the close digest sealed everything */
    check_valid(c);
    kms_core_free(c);
    kmstest_rmdir(tmpl);
    TEST_DONE();
}
