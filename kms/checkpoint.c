/*
 * checkpoint.c — the key store's maintenance thread: WAL checkpoints and audit pruning (see checkpoint.h).
 */
#include "checkpoint.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "audit.h"

/* WAL pages after a commit that ask for a checkpoint: SQLite's own default threshold. */
#define CKPT_PAGES 1000

struct kms_checkpointer {
    sqlite3 *db;          /* the core's connection (borrowed) */
    sqlite3 *own;         /* this thread's connection */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_mutex_t ckpt_mu; /* held across each checkpoint of this thread's (see wal_hook) */
    bool due, stop;
    const uint8_t *sk;    /* audit signing key (the core's, borrowed) */
    void (*tick)(void *);
    void *tick_arg;
};

/* Past this many WAL pages the thread has fallen behind (a writer faster than its PASSIVE checkpoints,
 * which then never copy everything, so the WAL never restarts): the committing call checkpoints itself,
 * as SQLite's automatic checkpoint does, which bounds the WAL. */
#define CKPT_BEHIND_PAGES (2 * CKPT_PAGES)

/* Runs inside a commit of the core's connection (under the core lock) or of the audit trail's writer
 * (under its mutex): a flag and a signal, or the bound above. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    kms_checkpointer *k = arg;
    if (pages >= CKPT_BEHIND_PAGES) {
        /* Wait for a checkpoint the thread is running (it holds ckpt_mu for one PASSIVE pass: a few ms):
         * while it runs, a checkpoint here would only get SQLITE_BUSY, and with a writer committing per
         * call the thread's passes never copy everything, so the WAL never restarts — it grew past 64 MB
         * under ASan that way. Ours runs right after a commit, inside the committer's lock (the core lock, or
         * the audit writer's mutex): it copies every frame no reader still needs (the core's reads are
         * single statements), and the next write restarts the WAL. */
        pthread_mutex_lock(&k->ckpt_mu);
        (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_unlock(&k->ckpt_mu);
        return SQLITE_OK;
    }
    if (pages >= CKPT_PAGES) {
        pthread_mutex_lock(&k->lock);
        if (!k->due) {
            k->due = true;
            pthread_cond_signal(&k->cond);
        }
        pthread_mutex_unlock(&k->lock);
    }
    return SQLITE_OK;
}

static bool stopping(void *arg)
{
    kms_checkpointer *k = arg;
    bool stop;
    pthread_mutex_lock(&k->lock);
    stop = k->stop;
    pthread_mutex_unlock(&k->lock);
    return stop;
}

/* Apply the store's audit retention (read afresh: another process may have changed it). */
static void prune(kms_checkpointer *k)
{
    kms_audit_retention r;
    if (!kms_retention_get(k->own, &r))
        (void)kms_audit_prune(k->own, &r, k->sk, stopping, k); /* a failure is retried at the next round */
}

static void *run(void *arg)
{
    kms_checkpointer *k = arg;
    struct timespec next, tick;
    prune(k);
    clock_gettime(CLOCK_MONOTONIC, &next);
    tick = next;
    next.tv_sec += KMS_PRUNE_INTERVAL_S;
    tick.tv_sec += 1;
    pthread_mutex_lock(&k->lock);
    for (;;) {
        bool prune_due = false, tick_due = false;
        while (!k->due && !k->stop && !tick_due)
            tick_due = pthread_cond_timedwait(&k->cond, &k->lock, k->tick ? &tick : &next) != 0;
        if (k->stop)
            break;
        if (tick_due) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            prune_due = now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec >= next.tv_nsec);
            tick = now;
            tick.tv_sec += 1;
            if (k->tick) {
                pthread_mutex_unlock(&k->lock);
                k->tick(k->tick_arg);
                pthread_mutex_lock(&k->lock);
            }
        }
        if (k->due) {
            k->due = false;
            pthread_mutex_unlock(&k->lock);
            /* PASSIVE copies what no reader still needs and never waits; the core's next write
             * transaction restarts the WAL from its beginning once everything is copied. */
            pthread_mutex_lock(&k->ckpt_mu);
            (void)sqlite3_wal_checkpoint_v2(k->own, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
            pthread_mutex_unlock(&k->ckpt_mu);
            pthread_mutex_lock(&k->lock);
        }
        if (prune_due) {
            pthread_mutex_unlock(&k->lock);
            prune(k);
            clock_gettime(CLOCK_MONOTONIC, &next);
            next.tv_sec += KMS_PRUNE_INTERVAL_S;
            pthread_mutex_lock(&k->lock);
        }
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

kms_checkpointer *kms_checkpointer_start(sqlite3 *db, const char *path, const uint8_t *sk, void (*tick)(void *),
                                         void *arg)
{
    kms_checkpointer *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->db = db;
    k->sk = sk;
    k->tick = tick;
    k->tick_arg = arg;
    if (sqlite3_open_v2(path, &k->own, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        goto fail_open;
    sqlite3_busy_timeout(k->own, 1000);
    /* A connection learns that the file is in WAL mode when it first reads it; until then a
     * checkpoint through it does nothing and reports success. */
    if (sqlite3_exec(k->own, "SELECT 1 FROM sqlite_master LIMIT 1", NULL, NULL, NULL) != SQLITE_OK)
        goto fail_open;
    if (pthread_mutex_init(&k->ckpt_mu, NULL))
        goto fail_open;
    if (pthread_mutex_init(&k->lock, NULL))
        goto fail_lock;
    {
        pthread_condattr_t ca;
        int rc;
        if (pthread_condattr_init(&ca))
            goto fail_cond;
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the prune deadline is monotonic */
        rc = pthread_cond_init(&k->cond, &ca);
        pthread_condattr_destroy(&ca);
        if (rc)
            goto fail_cond;
    }
    if (pthread_create(&k->thread, NULL, run, k))
        goto fail_thread;
    (void)sqlite3_wal_hook(db, wal_hook, k); /* replaces the automatic checkpoint */
    return k;
fail_thread:
    pthread_cond_destroy(&k->cond);
fail_cond:
    pthread_mutex_destroy(&k->lock);
fail_lock:
    pthread_mutex_destroy(&k->ckpt_mu);
fail_open:
    sqlite3_close(k->own);
    free(k);
    return NULL;
}

void kms_checkpointer_watch(kms_checkpointer *k, sqlite3 *db)
{
    if (k && db)
        (void)sqlite3_wal_hook(db, wal_hook, k);
}

void kms_checkpointer_stop(kms_checkpointer *k)
{
    if (!k)
        return;
    (void)sqlite3_wal_autocheckpoint(k->db, CKPT_PAGES); /* the hook goes; commits checkpoint again */
    pthread_mutex_lock(&k->lock);
    k->stop = true;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    pthread_cond_destroy(&k->cond);
    pthread_mutex_destroy(&k->lock);
    pthread_mutex_destroy(&k->ckpt_mu);
    sqlite3_close(k->own);
    free(k);
}
