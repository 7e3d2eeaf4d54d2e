/*
 * checkpoint.c — the key store's WAL checkpoints on a thread of their own (see checkpoint.h).
 */
#include "checkpoint.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

/* WAL pages after a commit that ask for a checkpoint: SQLite's own default threshold. */
#define CKPT_PAGES 1000

struct kms_checkpointer {
    sqlite3 *db;          /* the core's connection (borrowed) */
    sqlite3 *own;         /* this thread's connection */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool due, stop;
};

/* Past this many WAL pages the thread has fallen behind (a writer faster than its PASSIVE checkpoints,
 * which then never copy everything, so the WAL never restarts): the committing call checkpoints itself,
 * as SQLite's automatic checkpoint does, which bounds the WAL. */
#define CKPT_BEHIND_PAGES (2 * CKPT_PAGES)

/* Runs inside the core's commit (under the core lock): a flag and a signal, or the bound above. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    kms_checkpointer *k = arg;
    if (pages >= CKPT_BEHIND_PAGES) {
        (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
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

static void *run(void *arg)
{
    kms_checkpointer *k = arg;
    pthread_mutex_lock(&k->lock);
    for (;;) {
        while (!k->due && !k->stop)
            pthread_cond_wait(&k->cond, &k->lock);
        if (k->stop)
            break;
        k->due = false;
        pthread_mutex_unlock(&k->lock);
        /* PASSIVE copies what no reader still needs and never waits; the core's next write
         * transaction restarts the WAL from its beginning once everything is copied. */
        (void)sqlite3_wal_checkpoint_v2(k->own, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&k->lock);
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

kms_checkpointer *kms_checkpointer_start(sqlite3 *db, const char *path)
{
    kms_checkpointer *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->db = db;
    if (sqlite3_open_v2(path, &k->own, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        goto fail_open;
    sqlite3_busy_timeout(k->own, 1000);
    /* A connection learns that the file is in WAL mode when it first reads it; until then a
     * checkpoint through it does nothing and reports success. */
    if (sqlite3_exec(k->own, "SELECT 1 FROM sqlite_master LIMIT 1", NULL, NULL, NULL) != SQLITE_OK)
        goto fail_open;
    if (pthread_mutex_init(&k->lock, NULL))
        goto fail_open;
    if (pthread_cond_init(&k->cond, NULL))
        goto fail_cond;
    if (pthread_create(&k->thread, NULL, run, k))
        goto fail_thread;
    (void)sqlite3_wal_hook(db, wal_hook, k); /* replaces the automatic checkpoint */
    return k;
fail_thread:
    pthread_cond_destroy(&k->cond);
fail_cond:
    pthread_mutex_destroy(&k->lock);
fail_open:
    sqlite3_close(k->own);
    free(k);
    return NULL;
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
    sqlite3_close(k->own);
    free(k);
}
