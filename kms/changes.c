/*
 * changes.c — the key store's change counter: how the core tells another process's change of what it
 * holds in memory (keys, versions, aliases, tags, access keys, policies, grants, multi-Region rows,
 * custom key stores, meta) from a commit that only touched the audit trail.
 *
 * The core notices other connections' commits by PRAGMA data_version on its own connection. Since the
 * audit trail has its own writer connection (trail.c), every audit commit of this very process moves
 * that number too, as do retention pruning and other processes' audit records; reloading the whole key
 * table after each would cost more than the commit. So a one-row table store_changes(n) counts the
 * store's changes: SQLite triggers on every table but the trail's own (audit, audit_digests) add one to
 * n in the transaction of each row written, whichever process or build writes it (triggers live in the
 * schema, so an older build's writes count too). A reload is needed when data_version moved AND n moved.
 *
 * The core's own writes bump n as well, without moving its data_version; the update hook notes them
 * (own_changes), and kms_changes_settle adopts the new n when one read snapshot shows data_version
 * unchanged since the tables were current, i.e. every bump in it is the core's own. When that cannot
 * be shown (another connection committed in between), the next check reloads once.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Tables whose writes need no reload: the trail's, and the counter itself. */
static bool counted(const char *t)
{
    return strcmp(t, "audit") && strcmp(t, "audit_digests") && strcmp(t, "store_changes") &&
           strncmp(t, "sqlite_", 7);
}

/* Tables lacking one of their three triggers, or the counter table missing: whether to migrate. */
static int missing(sqlite3 *db, bool *any)
{
    sqlite3_stmt *st;
    *any = false;
    if (sqlite3_prepare_v2(db,
                           "SELECT t.name, (SELECT count(*) FROM sqlite_master g WHERE g.type='trigger' AND"
                           " g.tbl_name=t.name AND g.name LIKE 'store_changes_%') FROM sqlite_master t"
                           " WHERE t.type='table' UNION ALL SELECT 'store_changes', -1 WHERE NOT EXISTS"
                           " (SELECT 1 FROM sqlite_master WHERE type='table' AND name='store_changes')",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        int n = sqlite3_column_int(st, 1);
        if (n < 0 || (t && counted(t) && n < 3))
            *any = true;
    }
    sqlite3_finalize(st);
    return 0;
}

kms_err kms_changes_migrate(sqlite3 *db, char **msg)
{
    static const char *const ev[][2] = {{"ins", "INSERT"}, {"upd", "UPDATE"}, {"del", "DELETE"}};
    sqlite3_stmt *st = NULL;
    bool any, ok;
    char *names[64];
    size_t n = 0;
    if (missing(db, &any))
        goto fail;
    if (!any)
        return KMS_OK; /* the common open: nothing written */
    if (sqlite3_exec(db,
                     "BEGIN IMMEDIATE;"
                     " CREATE TABLE IF NOT EXISTS store_changes(id INTEGER PRIMARY KEY CHECK (id = 1),"
                     " n INTEGER NOT NULL);"
                     " INSERT OR IGNORE INTO store_changes(id, n) VALUES(1, 0);",
                     NULL, NULL, NULL) != SQLITE_OK)
        goto fail_tx;
    if (sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type='table'", -1, &st, NULL) != SQLITE_OK)
        goto fail_tx;
    ok = true;
    while (ok && sqlite3_step(st) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (!t || !counted(t))
            continue;
        ok = n < sizeof names / sizeof names[0] && (names[n] = sqlite3_mprintf("%s", t));
        n += ok;
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; ok && j < 3; j++) {
            char *sql = sqlite3_mprintf("CREATE TRIGGER IF NOT EXISTS \"store_changes_%w_%s\" AFTER %s ON \"%w\""
                                        " BEGIN UPDATE store_changes SET n = n + 1 WHERE id = 1; END",
                                        names[i], ev[j][0], ev[j][1], names[i]);
            ok = sql && sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK;
            sqlite3_free(sql);
        }
        sqlite3_free(names[i]);
    }
    if (ok && !kms_meta_put(db, "feature.store_changes", "1", 1, false) &&
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return KMS_OK;
fail_tx:
    kms_set_msg(msg, "key store error (change counter): %s", sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return KMS_ERR_IO;
fail:
    kms_set_msg(msg, "key store error (change counter): %s", sqlite3_errmsg(db));
    return KMS_ERR_IO;
}

/* SQLite calls this for every row the core's connection writes, a trigger's too (under the core lock). */
static void own_change(void *arg, int op, const char *dbname, const char *table, sqlite3_int64 rowid)
{
    kms_core *c = arg;
    (void)op;
    (void)dbname;
    (void)rowid;
    if (!strcmp(table, "store_changes"))
        c->own_changes = true;
}

void kms_changes_watch(kms_core *c)
{
    (void)sqlite3_update_hook(c->db, own_change, c);
}

int kms_changes_read(sqlite3 *db, int64_t *n)
{
    sqlite3_stmt *st;
    int rc;
    *n = -1;
    if (sqlite3_prepare_v2(db, "SELECT n FROM store_changes WHERE id = 1", -1, &st, NULL) != SQLITE_OK)
        return -1;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* The core's statements for the checks below, prepared once (a check runs at most every
 * KMS_FRESHNESS_MS, but preparing them each time was most of its cost). */
static bool prepare(kms_core *c)
{
    return (c->cc_read || sqlite3_prepare_v3(c->db, "SELECT n FROM store_changes WHERE id = 1", -1,
                                             SQLITE_PREPARE_PERSISTENT, &c->cc_read, NULL) == SQLITE_OK) &&
           (c->cc_begin ||
            sqlite3_prepare_v3(c->db, "BEGIN", -1, SQLITE_PREPARE_PERSISTENT, &c->cc_begin, NULL) == SQLITE_OK) &&
           (c->cc_commit ||
            sqlite3_prepare_v3(c->db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &c->cc_commit, NULL) == SQLITE_OK);
}

static int step_int(sqlite3_stmt *st, int64_t *v)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

static bool run(sqlite3_stmt *st)
{
    bool ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_reset(st);
    return ok;
}

/* data_version and n from one read snapshot. 0 or -1. */
static int snapshot(kms_core *c, int64_t *dv, int64_t *n)
{
    int rc;
    if (!run(c->cc_begin))
        return -1;
    rc = step_int(c->cc_read, n) || step_int(c->dv_stmt, dv) ? -1 : 0;
    if (!run(c->cc_commit))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

kms_changes_verdict kms_changes_settle(kms_core *c, int64_t dv)
{
    int64_t n;
    if (!c->dv_stmt || !prepare(c))
        return KMS_CHANGES_RELOAD;
    if (!c->own_changes) {
        /* dv was read before n: a commit between them shows in n (a reload, needed or not); one after
         * both moves data_version again, so the next check looks again */
        if (step_int(c->cc_read, &n) || n < 0 || n != c->change_count)
            return KMS_CHANGES_RELOAD;
        c->data_version = dv; /* the trail's commits, pruning: nothing the core holds */
        return KMS_CHANGES_NONE;
    }
    /* The core wrote: adopt n only if one snapshot shows no other connection committed since the
     * tables were current, so that every bump in it is the core's own. */
    if (snapshot(c, &dv, &n) || n < 0 || dv != c->data_version)
        return KMS_CHANGES_RELOAD;
    c->change_count = n;
    c->own_changes = false;
    return KMS_CHANGES_NONE;
}
