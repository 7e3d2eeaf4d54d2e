/*
 * catalog_sqlite.c — the volume catalog in one SQLite database (WAL, synchronous=FULL, foreign keys
 * off: reference counts are kept by the calls themselves, inside the caller's transaction). Schema in
 * docs/FORMAT.md "Volume catalog"; `meta.format` guards against a catalog from a newer envelopefs.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "catalog.h"
#include "common/log.h"

struct sqc {
    vol_catalog base;
    sqlite3 *db;
    bool no_sources; /* read only, from before lazy rekey: no owner_lineages table, so no owner has sources */
    bool no_progress; /* read only, from before resumable copies: no copy_progress table, so none runs */
};
#define DB(c) (((struct sqc *)(c))->db)

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS lineages (id TEXT PRIMARY KEY, key_arn TEXT NOT NULL, ctx_id TEXT NOT NULL,"
    "  wrapped BLOB NOT NULL, created INTEGER NOT NULL, binding TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS volumes (id TEXT PRIMARY KEY, size_gib INTEGER NOT NULL, lineage TEXT NOT NULL,"
    "  snapshot_id TEXT NOT NULL, created INTEGER NOT NULL, tags TEXT);"
    "CREATE TABLE IF NOT EXISTS snapshots (id TEXT PRIMARY KEY, volume_id TEXT NOT NULL, volume_size INTEGER NOT NULL,"
    "  lineage TEXT NOT NULL, state TEXT NOT NULL, description TEXT, started INTEGER NOT NULL,"
    "  completed INTEGER NOT NULL, tags TEXT);"
    "CREATE TABLE IF NOT EXISTS chunks (gen INTEGER PRIMARY KEY, lineage TEXT NOT NULL, block INTEGER NOT NULL,"
    "  refs INTEGER NOT NULL, seals INTEGER NOT NULL, ctrs BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS maps (owner TEXT NOT NULL, block INTEGER NOT NULL, gen INTEGER NOT NULL,"
    "  PRIMARY KEY (owner, block)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS maps_gen ON maps (gen);"
    "CREATE TABLE IF NOT EXISTS puts (snapshot TEXT NOT NULL, block INTEGER NOT NULL, sha256 BLOB NOT NULL,"
    "  PRIMARY KEY (snapshot, block)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS owner_lineages (owner TEXT NOT NULL, lineage TEXT NOT NULL,"
    "  PRIMARY KEY (owner, lineage)) WITHOUT ROWID;"
    /* Added after format 1 shipped, additively: a catalog without them gets them on open, and a row with
       no owner is owned by its lineage key's account (what OwnerId showed before). */
    "CREATE TABLE IF NOT EXISTS owners (id TEXT PRIMARY KEY, account TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS create_volume_permissions (snapshot TEXT NOT NULL, account TEXT NOT NULL,"
    "  PRIMARY KEY (snapshot, account)) WITHOUT ROWID;";

/* Added after format 1 shipped; created on open of an older catalog (additive: older programs ignore it). */
static const char SCHEMA_COPIES[] =
    "CREATE TABLE IF NOT EXISTS copies (snapshot TEXT PRIMARY KEY, source_region TEXT NOT NULL,"
    "  source_snapshot TEXT NOT NULL, source_volume TEXT NOT NULL, base TEXT NOT NULL, blocks_copied INTEGER NOT NULL,"
    "  blocks_shared INTEGER NOT NULL, created INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS copies_source ON copies (source_region, source_volume);";

/* Signed snapshots; added after format 1 shipped, created on open of an older catalog (additive: older
 * programs ignore them). */
static const char SCHEMA_SIGNATURES[] =
    "CREATE TABLE IF NOT EXISTS snapshot_signatures (snapshot TEXT PRIMARY KEY, manifest BLOB NOT NULL,"
    "  key_arn TEXT NOT NULL, algorithm TEXT NOT NULL, signature BLOB NOT NULL, signed INTEGER NOT NULL,"
    "  source_snapshot TEXT, source_manifest BLOB, source_key_arn TEXT, source_algorithm TEXT, source_signature BLOB);"
    "CREATE TABLE IF NOT EXISTS snapshot_block_digests (snapshot TEXT NOT NULL, block INTEGER NOT NULL,"
    "  sha256 BLOB NOT NULL, PRIMARY KEY (snapshot, block)) WITHOUT ROWID;";

/* Copies in progress (resumable copy-snapshot); added after format 1 shipped, created on open of an older
 * catalog (additive: older programs ignore it and see such a copy as a pending snapshot). */
static const char SCHEMA_PROGRESS[] =
    "CREATE TABLE IF NOT EXISTS copy_progress (snapshot TEXT PRIMARY KEY, source_region TEXT NOT NULL,"
    "  source_snapshot TEXT NOT NULL, source_volume TEXT NOT NULL, base TEXT NOT NULL, key_arn TEXT NOT NULL,"
    "  local INTEGER NOT NULL, blocks_total INTEGER NOT NULL, blocks_done INTEGER NOT NULL,"
    "  blocks_copied INTEGER NOT NULL, blocks_shared INTEGER NOT NULL, next_block INTEGER NOT NULL,"
    "  runs INTEGER NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS copy_progress_source ON copy_progress (source_snapshot);";

static int db_err(vol_catalog *c, int rc, const char *what)
{
    if (rc == SQLITE_CONSTRAINT)
        return -EEXIST;
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return -EBUSY;
    EFS_ERROR("volume catalog: %s: %s", what, sqlite3_errmsg(DB(c)));
    return -EIO;
}

static int prep(vol_catalog *c, const char *sql, sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v2(DB(c), sql, -1, st, NULL);
    return rc == SQLITE_OK ? 0 : db_err(c, rc, sql);
}

/* Run a statement without results; binds text args ("s"), int64 ("i") from a format. */
static int exec1(vol_catalog *c, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(DB(c), sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        EFS_ERROR("volume catalog: %s: %s", sql, msg ? msg : "");
        sqlite3_free(msg);
        return rc == SQLITE_BUSY ? -EBUSY : -EIO;
    }
    return 0;
}

static int step_done(vol_catalog *c, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int r = rc == SQLITE_DONE ? 0 : db_err(c, rc, what);
    sqlite3_finalize(st);
    return r;
}

/* Run a statement without results that takes one text parameter. */
static int exec_text(vol_catalog *c, const char *sql, const char *text, const char *what)
{
    sqlite3_stmt *st;
    int rc = prep(c, sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    return step_done(c, st, what);
}

static void s_close(vol_catalog *c)
{
    sqlite3_close(DB(c));
    free(c);
}
static int s_begin(vol_catalog *c) { return exec1(c, "BEGIN IMMEDIATE"); }
static int s_commit(vol_catalog *c) { return exec1(c, "COMMIT"); }
static void s_rollback(vol_catalog *c)
{
    if (!sqlite3_get_autocommit(DB(c)))
        (void)exec1(c, "ROLLBACK");
}

static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}
static void col_cpy(sqlite3_stmt *st, int i, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

static int s_setting_get(vol_catalog *c, const char *key, char **value)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT v FROM meta WHERE k = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *value = col_dup(st, 0);
        rc = *value ? 0 : -ENOMEM;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : db_err(c, rc, "setting");
    }
    sqlite3_finalize(st);
    return rc;
}

static int s_setting_set(vol_catalog *c, const char *key, const char *value)
{
    sqlite3_stmt *st;
    int rc = prep(c, "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    return step_done(c, st, "setting");
}

static int s_setting_delete(vol_catalog *c, const char *key)
{
    return exec_text(c, "DELETE FROM meta WHERE k = ?", key, "setting");
}

static int s_lineage_put(vol_catalog *c, const vol_lineage *l)
{
    sqlite3_stmt *st;
    int rc = prep(c, "INSERT INTO lineages (id, key_arn, ctx_id, wrapped, created, binding) VALUES (?, ?, ?, ?, ?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, l->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, l->key_arn, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, l->ctx_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, l->wrapped, (int)l->wrapped_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, l->created);
    sqlite3_bind_text(st, 6, l->binding[0] ? l->binding : l->id, -1, SQLITE_STATIC);
    return step_done(c, st, "lineage");
}

static int s_lineage_get(vol_catalog *c, const char *id, vol_lineage *out)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT id, key_arn, ctx_id, wrapped, created, binding FROM lineages WHERE id = ?", &st);
    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int n = sqlite3_column_bytes(st, 3);
        col_cpy(st, 0, out->id, sizeof out->id);
        col_cpy(st, 1, out->key_arn, sizeof out->key_arn);
        col_cpy(st, 2, out->ctx_id, sizeof out->ctx_id);
        out->created = sqlite3_column_int64(st, 4);
        col_cpy(st, 5, out->binding, sizeof out->binding);
        out->wrapped = malloc(n > 0 ? (size_t)n : 1);
        if (out->wrapped) {
            memcpy(out->wrapped, sqlite3_column_blob(st, 3), (size_t)n);
            out->wrapped_len = (size_t)n;
            rc = 0;
        } else {
            rc = -ENOMEM;
        }
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : db_err(c, rc, "lineage");
    }
    sqlite3_finalize(st);
    return rc;
}

static void volume_row(sqlite3_stmt *st, vol_volume *v)
{
    memset(v, 0, sizeof *v);
    col_cpy(st, 0, v->id, sizeof v->id);
    v->size_gib = (uint64_t)sqlite3_column_int64(st, 1);
    col_cpy(st, 2, v->lineage, sizeof v->lineage);
    col_cpy(st, 3, v->snapshot_id, sizeof v->snapshot_id);
    v->created = sqlite3_column_int64(st, 4);
    v->tags = col_dup(st, 5);
    col_cpy(st, 6, v->owner, sizeof v->owner);
}
#define VOLUME_COLS "id, size_gib, lineage, snapshot_id, created, tags"
/* the owner column of a volume or snapshot row, after its own columns */
#define OWNER_OF(t) ", (SELECT account FROM owners o WHERE o.id = " t ".id)"

/* Record the owner of a volume or snapshot (nothing when unknown). */
static int owner_put(vol_catalog *c, const char *id, const char *owner)
{
    sqlite3_stmt *st;
    int rc;
    if (!owner || !*owner)
        return 0;
    if ((rc = prep(c, "INSERT OR REPLACE INTO owners (id, account) VALUES (?, ?)", &st)))
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
    return step_done(c, st, "owner");
}

static int s_volume_put(vol_catalog *c, const vol_volume *v)
{
    sqlite3_stmt *st;
    int rc = prep(c, "INSERT INTO volumes (" VOLUME_COLS ") VALUES (?, ?, ?, ?, ?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, v->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)v->size_gib);
    sqlite3_bind_text(st, 3, v->lineage, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, v->snapshot_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, v->created);
    if (v->tags)
        sqlite3_bind_text(st, 6, v->tags, -1, SQLITE_STATIC);
    return (rc = step_done(c, st, "volume")) ? rc : owner_put(c, v->id, v->owner);
}

static int s_volume_get(vol_catalog *c, const char *id, vol_volume *out)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT " VOLUME_COLS OWNER_OF("volumes") " FROM volumes WHERE id = ?", &st);
    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        volume_row(st, out);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : db_err(c, rc, "volume");
    }
    sqlite3_finalize(st);
    return rc;
}

static int delete_by_id(vol_catalog *c, const char *sql, const char *id)
{
    sqlite3_stmt *st;
    int rc = prep(c, sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = step_done(c, st, sql);
    if (!rc && sqlite3_changes(DB(c)) == 0)
        rc = -ENOENT;
    return rc;
}

/* The owner row of a deleted volume or snapshot (and a snapshot's permissions) go with it. */
static int delete_owned(vol_catalog *c, const char *sql, const char *id)
{
    int rc = delete_by_id(c, sql, id);
    if (rc)
        return rc;
    /* an owner or permission row may not exist */
    if ((rc = delete_by_id(c, "DELETE FROM owners WHERE id = ?", id)) && rc != -ENOENT)
        return rc;
    if (!strncmp(id, "snap-", 5) && (rc = delete_by_id(c, "DELETE FROM create_volume_permissions WHERE snapshot = ?", id)) &&
        rc != -ENOENT)
        return rc;
    return 0;
}

static int s_volume_delete(vol_catalog *c, const char *id) { return delete_owned(c, "DELETE FROM volumes WHERE id = ?", id); }

static int s_volume_list(vol_catalog *c, vol_volume_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT " VOLUME_COLS OWNER_OF("volumes") " FROM volumes ORDER BY created, id", &st);
    if (rc)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        vol_volume v;
        int r;
        volume_row(st, &v);
        r = fn(arg, &v);
        vol_volume_clear(&v);
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(c, rc, "volumes");
    sqlite3_finalize(st);
    return rc;
}

#define SNAP_COLS "id, volume_id, volume_size, lineage, state, description, started, completed, tags"
static void snapshot_row(sqlite3_stmt *st, vol_snapshot *s)
{
    memset(s, 0, sizeof *s);
    col_cpy(st, 0, s->id, sizeof s->id);
    col_cpy(st, 1, s->volume_id, sizeof s->volume_id);
    s->volume_size = (uint64_t)sqlite3_column_int64(st, 2);
    col_cpy(st, 3, s->lineage, sizeof s->lineage);
    col_cpy(st, 4, s->state, sizeof s->state);
    s->description = col_dup(st, 5);
    s->started = sqlite3_column_int64(st, 6);
    s->completed = sqlite3_column_int64(st, 7);
    s->tags = col_dup(st, 8);
    col_cpy(st, 9, s->owner, sizeof s->owner);
}

static int s_snapshot_put(vol_catalog *c, const vol_snapshot *s)
{
    sqlite3_stmt *st;
    int rc = prep(c, "INSERT OR REPLACE INTO snapshots (" SNAP_COLS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, s->volume_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (int64_t)s->volume_size);
    sqlite3_bind_text(st, 4, s->lineage, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, s->state, -1, SQLITE_STATIC);
    if (s->description)
        sqlite3_bind_text(st, 6, s->description, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, s->started);
    sqlite3_bind_int64(st, 8, s->completed);
    if (s->tags)
        sqlite3_bind_text(st, 9, s->tags, -1, SQLITE_STATIC);
    return (rc = step_done(c, st, "snapshot")) ? rc : owner_put(c, s->id, s->owner);
}

static int s_snapshot_get(vol_catalog *c, const char *id, vol_snapshot *out)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT " SNAP_COLS OWNER_OF("snapshots") " FROM snapshots WHERE id = ?", &st);
    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        snapshot_row(st, out);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : db_err(c, rc, "snapshot");
    }
    sqlite3_finalize(st);
    return rc;
}

static int s_snapshot_delete(vol_catalog *c, const char *id)
{
    sqlite3_stmt *st;
    int rc = delete_owned(c, "DELETE FROM snapshots WHERE id = ?", id);
    if (rc || (rc = prep(c, "DELETE FROM copies WHERE snapshot = ?", &st)))
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if ((rc = step_done(c, st, "copy")))
        return rc;
    /* its signature goes with it (no rows: nothing to do) */
    if ((rc = delete_by_id(c, "DELETE FROM snapshot_signatures WHERE snapshot = ?", id)) && rc != -ENOENT)
        return rc;
    if ((rc = delete_by_id(c, "DELETE FROM snapshot_block_digests WHERE snapshot = ?", id)) && rc != -ENOENT)
        return rc;
    /* a copy deleted while pending: its progress goes with it */
    if ((rc = delete_by_id(c, "DELETE FROM copy_progress WHERE snapshot = ?", id)) && rc != -ENOENT)
        return rc;
    return 0;
}

static int s_snapshot_list(vol_catalog *c, vol_snapshot_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT " SNAP_COLS OWNER_OF("snapshots") " FROM snapshots ORDER BY started, rowid", &st);
    if (rc)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        vol_snapshot s;
        int r;
        snapshot_row(st, &s);
        r = fn(arg, &s);
        vol_snapshot_clear(&s);
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(c, rc, "snapshots");
    sqlite3_finalize(st);
    return rc;
}

static int s_snapshot_pending(vol_catalog *c, const char *volume_id, int *count)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT count(*) FROM snapshots WHERE volume_id = ? AND state = 'pending'", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, volume_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    *count = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    rc = rc == SQLITE_ROW ? 0 : db_err(c, rc, "pending");
    sqlite3_finalize(st);
    return rc;
}

static int s_map_get(vol_catalog *c, const char *owner, uint64_t block, uint64_t *gen)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT gen FROM maps WHERE owner = ? AND block = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)block);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *gen = (uint64_t)sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : db_err(c, rc, "map");
    }
    sqlite3_finalize(st);
    return rc;
}

static int s_map_set(vol_catalog *c, const char *owner, uint64_t block, uint64_t gen)
{
    sqlite3_stmt *st;
    int rc = prep(c, "INSERT OR REPLACE INTO maps (owner, block, gen) VALUES (?, ?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)block);
    sqlite3_bind_int64(st, 3, (int64_t)gen);
    return step_done(c, st, "map");
}

static int s_map_del(vol_catalog *c, const char *owner, uint64_t block)
{
    sqlite3_stmt *st;
    int rc = prep(c, "DELETE FROM maps WHERE owner = ? AND block = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)block);
    return step_done(c, st, "map");
}

static int s_map_list(vol_catalog *c, const char *owner, vol_map_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT block, gen FROM maps WHERE owner = ? ORDER BY block", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r = fn(arg, (uint64_t)sqlite3_column_int64(st, 0), (uint64_t)sqlite3_column_int64(st, 1));
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(c, rc, "maps");
    sqlite3_finalize(st);
    return rc;
}

static int s_map_copy(vol_catalog *c, const char *from, const char *to)
{
    sqlite3_stmt *st;
    int rc = prep(c, "UPDATE chunks SET refs = refs + 1 WHERE gen IN (SELECT gen FROM maps WHERE owner = ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, from, -1, SQLITE_STATIC);
    if ((rc = step_done(c, st, "map copy")))
        return rc;
    if ((rc = prep(c, "INSERT INTO maps (owner, block, gen) SELECT ?, block, gen FROM maps WHERE owner = ?", &st)))
        return rc;
    sqlite3_bind_text(st, 1, to, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, from, -1, SQLITE_STATIC);
    if ((rc = step_done(c, st, "map copy")))
        return rc;
    /* the keys that open the copied chunks go with them */
    if ((rc = prep(c, "INSERT OR IGNORE INTO owner_lineages (owner, lineage) SELECT ?, lineage FROM owner_lineages "
                      "WHERE owner = ?", &st)))
        return rc;
    sqlite3_bind_text(st, 1, to, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, from, -1, SQLITE_STATIC);
    return step_done(c, st, "map copy");
}

static int s_source_add(vol_catalog *c, const char *owner, const char *lineage)
{
    sqlite3_stmt *st;
    int rc = prep(c, "INSERT OR IGNORE INTO owner_lineages (owner, lineage) VALUES (?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, lineage, -1, SQLITE_STATIC);
    if ((rc = step_done(c, st, "source")))
        return rc;
    /* a program that predates owner_lineages would read (and write) such blocks with the wrong key: from
     * the first source on, the catalog is format 2, which it refuses */
    return exec1(c, "UPDATE meta SET v = '2' WHERE k = 'format' AND CAST(v AS INTEGER) < 2");
}

static int s_source_list(vol_catalog *c, const char *owner, vol_text_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc;
    if (((struct sqc *)c)->no_sources)
        return 0;
    rc = prep(c, "SELECT lineage FROM owner_lineages WHERE owner = ? ORDER BY lineage", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r = fn(arg, (const char *)sqlite3_column_text(st, 0));
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(c, rc, "sources");
    sqlite3_finalize(st);
    return rc;
}

static int s_source_drop(vol_catalog *c, const char *owner)
{
    return exec_text(c, "DELETE FROM owner_lineages WHERE owner = ?", owner, "sources");
}

static int s_map_bindings(vol_catalog *c, const char *owner, vol_binding_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT k.lineage, count(*) FROM maps m JOIN chunks k ON k.gen = m.gen WHERE m.owner = ? "
                     "GROUP BY k.lineage ORDER BY k.lineage", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r = fn(arg, (const char *)sqlite3_column_text(st, 0), (uint64_t)sqlite3_column_int64(st, 1));
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(c, rc, "bindings");
    sqlite3_finalize(st);
    return rc;
}

static int s_map_foreign(vol_catalog *c, const char *owner, const char *binding, uint64_t from, uint64_t limit,
                         vol_map_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT m.block, m.gen FROM maps m JOIN chunks k ON k.gen = m.gen WHERE m.owner = ? AND "
                     "m.block >= ? AND k.lineage <> ? ORDER BY m.block LIMIT ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)from);
    sqlite3_bind_text(st, 3, binding, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, limit ? (int64_t)limit : -1);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r = fn(arg, (uint64_t)sqlite3_column_int64(st, 0), (uint64_t)sqlite3_column_int64(st, 1));
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(c, rc, "foreign blocks");
    sqlite3_finalize(st);
    return rc;
}

static int s_map_drop(vol_catalog *c, const char *owner, vol_gen_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc = prep(c, "UPDATE chunks SET refs = refs - 1 WHERE gen IN (SELECT gen FROM maps WHERE owner = ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    if ((rc = step_done(c, st, "map drop")))
        return rc;
    if ((rc = prep(c, "DELETE FROM maps WHERE owner = ?", &st)))
        return rc;
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    if ((rc = step_done(c, st, "map drop")) || (rc = s_source_drop(c, owner)))
        return rc;
    if (!fn)
        return 0;
    if ((rc = prep(c, "SELECT gen FROM chunks WHERE refs <= 0", &st)))
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r = fn(arg, (uint64_t)sqlite3_column_int64(st, 0));
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(c, rc, "map drop");
    sqlite3_finalize(st);
    return rc;
}

static void ctrs_encode(const uint32_t *ctr, uint8_t out[4 * VOL_SECTORS])
{
    for (unsigned i = 0; i < VOL_SECTORS; i++)
        for (int b = 0; b < 4; b++)
            out[4 * i + b] = (uint8_t)(ctr[i] >> (8 * b));
}

static int s_chunk_put(vol_catalog *c, const vol_chunk *k)
{
    sqlite3_stmt *st;
    uint8_t blob[4 * VOL_SECTORS];
    int rc = prep(c, "INSERT OR REPLACE INTO chunks (gen, lineage, block, refs, seals, ctrs) VALUES (?, ?, ?, ?, ?, ?)", &st);
    if (rc)
        return rc;
    ctrs_encode(k->ctr, blob);
    sqlite3_bind_int64(st, 1, (int64_t)k->gen);
    sqlite3_bind_text(st, 2, k->lineage, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (int64_t)k->block);
    sqlite3_bind_int64(st, 4, k->refs);
    sqlite3_bind_int64(st, 5, (int64_t)k->seals);
    sqlite3_bind_blob(st, 6, blob, sizeof blob, SQLITE_TRANSIENT);
    return step_done(c, st, "chunk");
}

static int s_chunk_get(vol_catalog *c, uint64_t gen, vol_chunk *out)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT lineage, block, refs, seals, ctrs FROM chunks WHERE gen = ?", &st);
    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)gen);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const uint8_t *b = sqlite3_column_blob(st, 4);
        out->gen = gen;
        col_cpy(st, 0, out->lineage, sizeof out->lineage);
        out->block = (uint64_t)sqlite3_column_int64(st, 1);
        out->refs = sqlite3_column_int64(st, 2);
        out->seals = (uint64_t)sqlite3_column_int64(st, 3);
        if (sqlite3_column_bytes(st, 4) != 4 * VOL_SECTORS || !b) {
            EFS_ERROR("volume catalog: chunk %" PRIu64 " has a malformed counter list", gen);
            rc = -EIO;
        } else {
            for (unsigned i = 0; i < VOL_SECTORS; i++)
                out->ctr[i] = b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 |
                              (uint32_t)b[4 * i + 3] << 24;
            rc = 0;
        }
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : db_err(c, rc, "chunk");
    }
    sqlite3_finalize(st);
    return rc;
}

static int s_chunk_ref(vol_catalog *c, uint64_t gen, int delta, int64_t *refs_after)
{
    sqlite3_stmt *st;
    int rc = prep(c, "UPDATE chunks SET refs = refs + ? WHERE gen = ? RETURNING refs", &st);
    if (rc)
        return rc;
    sqlite3_bind_int(st, 1, delta);
    sqlite3_bind_int64(st, 2, (int64_t)gen);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (refs_after)
            *refs_after = sqlite3_column_int64(st, 0);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : db_err(c, rc, "chunk ref");
    }
    sqlite3_finalize(st);
    return rc;
}

static int s_chunk_delete(vol_catalog *c, uint64_t gen)
{
    sqlite3_stmt *st;
    int rc = prep(c, "DELETE FROM chunks WHERE gen = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)gen);
    return step_done(c, st, "chunk delete");
}

static int s_chunk_list(vol_catalog *c, vol_gen_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT gen FROM chunks ORDER BY gen", &st);
    if (rc)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r = fn(arg, (uint64_t)sqlite3_column_int64(st, 0));
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(c, rc, "chunks");
    sqlite3_finalize(st);
    return rc;
}

static int s_put_set(vol_catalog *c, const char *snapshot, uint64_t block, const uint8_t sha256[32])
{
    sqlite3_stmt *st;
    int rc = prep(c, "INSERT OR REPLACE INTO puts (snapshot, block, sha256) VALUES (?, ?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, snapshot, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)block);
    sqlite3_bind_blob(st, 3, sha256, 32, SQLITE_TRANSIENT);
    return step_done(c, st, "put");
}

static int s_put_list(vol_catalog *c, const char *snapshot, int (*fn)(void *, uint64_t, const uint8_t *), void *arg)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT block, sha256 FROM puts WHERE snapshot = ? ORDER BY block", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, snapshot, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r;
        if (sqlite3_column_bytes(st, 1) != 32) {
            sqlite3_finalize(st);
            return -EIO;
        }
        r = fn(arg, (uint64_t)sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 1));
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(c, rc, "puts");
    sqlite3_finalize(st);
    return rc;
}

static int s_put_drop(vol_catalog *c, const char *snapshot)
{
    return exec_text(c, "DELETE FROM puts WHERE snapshot = ?", snapshot, "puts");
}

static int s_gen_reserve(vol_catalog *c, uint64_t n, uint64_t *first)
{
    sqlite3_stmt *st;
    int rc = prep(c, "UPDATE meta SET v = CAST(v AS INTEGER) + ? WHERE k = 'next_gen' RETURNING CAST(v AS INTEGER) - ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)n);
    sqlite3_bind_int64(st, 2, (int64_t)n);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *first = (uint64_t)sqlite3_column_int64(st, 0);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    } else {
        rc = rc == SQLITE_DONE ? -EIO : db_err(c, rc, "generation");
    }
    sqlite3_finalize(st);
    return rc;
}

#define COPY_COLS "snapshot, source_region, source_snapshot, source_volume, base, blocks_copied, blocks_shared, created"
static void copy_row(sqlite3_stmt *st, vol_copy_rec *r)
{
    memset(r, 0, sizeof *r);
    col_cpy(st, 0, r->snapshot, sizeof r->snapshot);
    col_cpy(st, 1, r->source_region, sizeof r->source_region);
    col_cpy(st, 2, r->source_snapshot, sizeof r->source_snapshot);
    col_cpy(st, 3, r->source_volume, sizeof r->source_volume);
    col_cpy(st, 4, r->base, sizeof r->base);
    r->blocks_copied = (uint64_t)sqlite3_column_int64(st, 5);
    r->blocks_shared = (uint64_t)sqlite3_column_int64(st, 6);
    r->created = sqlite3_column_int64(st, 7);
}

static int s_copy_put(vol_catalog *c, const vol_copy_rec *r)
{
    sqlite3_stmt *st;
    int rc = prep(c, "INSERT INTO copies (" COPY_COLS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, r->snapshot, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->source_region, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->source_snapshot, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->source_volume, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, r->base, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (int64_t)r->blocks_copied);
    sqlite3_bind_int64(st, 7, (int64_t)r->blocks_shared);
    sqlite3_bind_int64(st, 8, r->created);
    return step_done(c, st, "copy");
}

static int s_copy_get(vol_catalog *c, const char *snapshot, vol_copy_rec *out)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT " COPY_COLS " FROM copies WHERE snapshot = ?", &st);
    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, snapshot, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        copy_row(st, out);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : db_err(c, rc, "copy");
    }
    sqlite3_finalize(st);
    return rc;
}

static int s_copy_list(vol_catalog *c, const char *region, const char *volume, vol_copy_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT " COPY_COLS " FROM copies WHERE source_region = ? AND source_volume = ? "
                     "ORDER BY created DESC, rowid DESC", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, region, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, volume, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        vol_copy_rec r;
        int x;
        copy_row(st, &r);
        if ((x = fn(arg, &r))) {
            sqlite3_finalize(st);
            return x;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(c, rc, "copies");
    sqlite3_finalize(st);
    return rc;
}

/* ---- create-volume permissions ---- */

static int perm_exec(vol_catalog *c, const char *sql, const char *snapshot, const char *account)
{
    sqlite3_stmt *st;
    int rc = prep(c, sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, snapshot, -1, SQLITE_STATIC);
    if (account)
        sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
    return step_done(c, st, "permission");
}
static int s_perm_add(vol_catalog *c, const char *snapshot, const char *account)
{
    return perm_exec(c, "INSERT OR IGNORE INTO create_volume_permissions (snapshot, account) VALUES (?, ?)", snapshot, account);
}
static int s_perm_remove(vol_catalog *c, const char *snapshot, const char *account)
{
    return perm_exec(c, "DELETE FROM create_volume_permissions WHERE snapshot = ? AND account = ?", snapshot, account);
}
static int s_perm_clear(vol_catalog *c, const char *snapshot)
{
    return perm_exec(c, "DELETE FROM create_volume_permissions WHERE snapshot = ?", snapshot, NULL);
}
static int s_perm_list(vol_catalog *c, const char *snapshot, vol_account_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT account FROM create_volume_permissions WHERE snapshot = ? ORDER BY account", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, snapshot, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r = fn(arg, (const char *)sqlite3_column_text(st, 0));
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(c, rc, "permissions");
    sqlite3_finalize(st);
    return rc;
}
static int s_perm_has(vol_catalog *c, const char *snapshot, const char *account, bool *has)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT 1 FROM create_volume_permissions WHERE snapshot = ? AND account = ?", &st);
    *has = false;
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, snapshot, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    *has = rc == SQLITE_ROW;
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_err(c, rc, "permission");
    sqlite3_finalize(st);
    return rc;
}

/* ---- signed snapshots ---- */

static int blob_dup(sqlite3_stmt *st, int i, uint8_t **out, size_t *len)
{
    int n = sqlite3_column_bytes(st, i);
    const void *b = sqlite3_column_blob(st, i);
    *out = NULL;
    *len = 0;
    if (!b || n <= 0)
        return 0;
    if (!(*out = malloc((size_t)n)))
        return -ENOMEM;
    memcpy(*out, b, (size_t)n);
    *len = (size_t)n;
    return 0;
}

/* A read-only catalog from before signed snapshots has no such tables: nothing is signed there. */
static bool no_sig_tables(vol_catalog *c)
{
    sqlite3_stmt *st;
    bool none = false;
    if (sqlite3_prepare_v2(DB(c), "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'snapshot_signatures'",
                           -1, &st, NULL) == SQLITE_OK) {
        none = sqlite3_step(st) != SQLITE_ROW;
        sqlite3_finalize(st);
    }
    return none;
}

static int s_sig_put(vol_catalog *c, const vol_signature *s)
{
    sqlite3_stmt *st;
    int rc = prep(c, "INSERT OR REPLACE INTO snapshot_signatures (snapshot, manifest, key_arn, algorithm, signature, signed,"
                     " source_snapshot, source_manifest, source_key_arn, source_algorithm, source_signature)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, s->snapshot_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, s->manifest, (int)s->manifest_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s->key_arn, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, s->algorithm, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, s->signature, (int)s->signature_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, s->signed_at);
    if (s->source_id[0]) {
        sqlite3_bind_text(st, 7, s->source_id, -1, SQLITE_STATIC);
        if (s->source_manifest)
            sqlite3_bind_blob(st, 8, s->source_manifest, (int)s->source_manifest_len, SQLITE_STATIC);
        sqlite3_bind_text(st, 9, s->source_key_arn, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 10, s->source_algorithm, -1, SQLITE_STATIC);
        if (s->source_signature)
            sqlite3_bind_blob(st, 11, s->source_signature, (int)s->source_signature_len, SQLITE_STATIC);
    }
    return step_done(c, st, "signature");
}

static int s_sig_get(vol_catalog *c, const char *snapshot, vol_signature *out)
{
    sqlite3_stmt *st;
    int rc;
    memset(out, 0, sizeof *out);
    if (no_sig_tables(c))
        return -ENOENT;
    rc = prep(c, "SELECT snapshot, manifest, key_arn, algorithm, signature, signed, source_snapshot, source_manifest,"
                 " source_key_arn, source_algorithm, source_signature FROM snapshot_signatures WHERE snapshot = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, snapshot, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        col_cpy(st, 0, out->snapshot_id, sizeof out->snapshot_id);
        col_cpy(st, 2, out->key_arn, sizeof out->key_arn);
        col_cpy(st, 3, out->algorithm, sizeof out->algorithm);
        out->signed_at = sqlite3_column_int64(st, 5);
        col_cpy(st, 6, out->source_id, sizeof out->source_id);
        col_cpy(st, 8, out->source_key_arn, sizeof out->source_key_arn);
        col_cpy(st, 9, out->source_algorithm, sizeof out->source_algorithm);
        if ((rc = blob_dup(st, 1, &out->manifest, &out->manifest_len)) ||
            (rc = blob_dup(st, 4, &out->signature, &out->signature_len)) ||
            (rc = blob_dup(st, 7, &out->source_manifest, &out->source_manifest_len)) ||
            (rc = blob_dup(st, 10, &out->source_signature, &out->source_signature_len)))
            vol_signature_clear(out);
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : db_err(c, rc, "signature");
    }
    sqlite3_finalize(st);
    return rc;
}

static int s_digest_put(vol_catalog *c, const char *snapshot, uint64_t block, const uint8_t sha256[32])
{
    sqlite3_stmt *st;
    int rc = prep(c, "INSERT OR REPLACE INTO snapshot_block_digests (snapshot, block, sha256) VALUES (?, ?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, snapshot, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)block);
    sqlite3_bind_blob(st, 3, sha256, 32, SQLITE_TRANSIENT);
    return step_done(c, st, "block digest");
}

static int s_digest_drop(vol_catalog *c, const char *snapshot)
{
    return exec_text(c, "DELETE FROM snapshot_block_digests WHERE snapshot = ?", snapshot, "block digests");
}

static int s_digest_list(vol_catalog *c, const char *snapshot, int (*fn)(void *, uint64_t, const uint8_t *), void *arg)
{
    sqlite3_stmt *st;
    int rc;
    if (no_sig_tables(c))
        return 0;
    if ((rc = prep(c, "SELECT block, sha256 FROM snapshot_block_digests WHERE snapshot = ? ORDER BY block", &st)))
        return rc;
    sqlite3_bind_text(st, 1, snapshot, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r;
        if (sqlite3_column_bytes(st, 1) != 32) {
            sqlite3_finalize(st);
            return -EIO;
        }
        r = fn(arg, (uint64_t)sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 1));
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(c, rc, "block digests");
    sqlite3_finalize(st);
    return rc;
}

/* ---- copies in progress ---- */

#define PROGRESS_COLS "snapshot, source_region, source_snapshot, source_volume, base, key_arn, local, blocks_total," \
                      " blocks_done, blocks_copied, blocks_shared, next_block, runs, created, updated"
static void progress_row(sqlite3_stmt *st, vol_copy_progress *p)
{
    memset(p, 0, sizeof *p);
    col_cpy(st, 0, p->rec.snapshot, sizeof p->rec.snapshot);
    col_cpy(st, 1, p->rec.source_region, sizeof p->rec.source_region);
    col_cpy(st, 2, p->rec.source_snapshot, sizeof p->rec.source_snapshot);
    col_cpy(st, 3, p->rec.source_volume, sizeof p->rec.source_volume);
    col_cpy(st, 4, p->rec.base, sizeof p->rec.base);
    col_cpy(st, 5, p->key_arn, sizeof p->key_arn);
    p->local = sqlite3_column_int(st, 6) != 0;
    p->blocks_total = (uint64_t)sqlite3_column_int64(st, 7);
    p->blocks_done = (uint64_t)sqlite3_column_int64(st, 8);
    p->rec.blocks_copied = (uint64_t)sqlite3_column_int64(st, 9);
    p->rec.blocks_shared = (uint64_t)sqlite3_column_int64(st, 10);
    p->next_block = (uint64_t)sqlite3_column_int64(st, 11);
    p->runs = (uint64_t)sqlite3_column_int64(st, 12);
    p->rec.created = sqlite3_column_int64(st, 13);
    p->updated = sqlite3_column_int64(st, 14);
}

static int s_progress_put(vol_catalog *c, const vol_copy_progress *p)
{
    sqlite3_stmt *st;
    int rc = prep(c, "INSERT OR REPLACE INTO copy_progress (" PROGRESS_COLS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                     " ?, ?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, p->rec.snapshot, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, p->rec.source_region, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, p->rec.source_snapshot, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, p->rec.source_volume, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, p->rec.base, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, p->key_arn, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, p->local ? 1 : 0);
    sqlite3_bind_int64(st, 8, (int64_t)p->blocks_total);
    sqlite3_bind_int64(st, 9, (int64_t)p->blocks_done);
    sqlite3_bind_int64(st, 10, (int64_t)p->rec.blocks_copied);
    sqlite3_bind_int64(st, 11, (int64_t)p->rec.blocks_shared);
    sqlite3_bind_int64(st, 12, (int64_t)p->next_block);
    sqlite3_bind_int64(st, 13, (int64_t)p->runs);
    sqlite3_bind_int64(st, 14, p->rec.created);
    sqlite3_bind_int64(st, 15, p->updated);
    return step_done(c, st, "copy progress");
}

static int s_progress_get(vol_catalog *c, const char *snapshot, vol_copy_progress *out)
{
    sqlite3_stmt *st;
    int rc;
    memset(out, 0, sizeof *out);
    if (((struct sqc *)c)->no_progress)
        return -ENOENT;
    if ((rc = prep(c, "SELECT " PROGRESS_COLS " FROM copy_progress WHERE snapshot = ?", &st)))
        return rc;
    sqlite3_bind_text(st, 1, snapshot, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        progress_row(st, out);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : db_err(c, rc, "copy progress");
    }
    sqlite3_finalize(st);
    return rc;
}

static int s_progress_list(vol_catalog *c, const char *source_snapshot, vol_progress_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc;
    if (((struct sqc *)c)->no_progress)
        return 0;
    if ((rc = prep(c, "SELECT " PROGRESS_COLS " FROM copy_progress WHERE source_snapshot = ? ORDER BY created, rowid", &st)))
        return rc;
    sqlite3_bind_text(st, 1, source_snapshot, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        vol_copy_progress p;
        int x;
        progress_row(st, &p);
        if ((x = fn(arg, &p))) {
            sqlite3_finalize(st);
            return x;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(c, rc, "copy progress");
    sqlite3_finalize(st);
    return rc;
}

static int s_progress_drop(vol_catalog *c, const char *snapshot)
{
    return exec_text(c, "DELETE FROM copy_progress WHERE snapshot = ?", snapshot, "copy progress");
}

static int s_map_page(vol_catalog *c, const char *owner, uint64_t from, uint64_t limit, vol_map_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT block, gen FROM maps WHERE owner = ? AND block >= ? ORDER BY block LIMIT ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)from);
    sqlite3_bind_int64(st, 3, limit ? (int64_t)limit : -1);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r = fn(arg, (uint64_t)sqlite3_column_int64(st, 0), (uint64_t)sqlite3_column_int64(st, 1));
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(c, rc, "map page");
    sqlite3_finalize(st);
    return rc;
}

static int s_map_count(vol_catalog *c, const char *owner, uint64_t *n)
{
    sqlite3_stmt *st;
    int rc = prep(c, "SELECT count(*) FROM maps WHERE owner = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    *n = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    rc = rc == SQLITE_ROW ? 0 : db_err(c, rc, "map count");
    sqlite3_finalize(st);
    return rc;
}

static const vol_catalog_ops SQLITE_OPS = {
    s_close, s_begin, s_commit, s_rollback, s_setting_get, s_setting_set, s_setting_delete, s_lineage_put, s_lineage_get,
    s_volume_put, s_volume_get, s_volume_delete, s_volume_list, s_snapshot_put, s_snapshot_get,
    s_snapshot_delete, s_snapshot_list, s_snapshot_pending, s_map_get, s_map_set, s_map_del, s_map_list,
    s_map_copy, s_map_drop, s_chunk_put, s_chunk_get, s_chunk_ref, s_chunk_delete, s_chunk_list, s_put_set,
    s_put_list, s_put_drop, s_gen_reserve,
    s_source_add, s_source_list, s_source_drop, s_map_bindings, s_map_foreign,
    s_copy_put, s_copy_get, s_copy_list,
    s_perm_add, s_perm_remove, s_perm_list, s_perm_has, s_perm_clear,
    s_sig_put, s_sig_get, s_digest_put, s_digest_drop, s_digest_list,
    s_progress_put, s_progress_get, s_progress_list, s_progress_drop, s_map_page, s_map_count,
};

/* meta.format of an open catalog: > 0; 0 when it has no meta table or no format row (a new, empty file);
 * -EIO when it cannot be read. Nothing is logged: a new catalog has no meta table yet. */
static int format_of(sqlite3 *db)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k = 'format'", -1, &st, NULL) != SQLITE_OK)
        return 0;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        rc = t && atoi((const char *)t) > 0 ? atoi((const char *)t) : -EIO;
    } else {
        rc = rc == SQLITE_DONE ? 0 : -EIO;
    }
    sqlite3_finalize(st);
    return rc;
}

static int refuse_newer(const char *path, int fmt)
{
    EFS_ERROR("volume catalog %s is format %d, newer than this envelopefs, which reads up to format %d", path, fmt,
              VOL_CATALOG_FORMAT);
    return -EPROTO;
}

int vol_catalog_sqlite_format(const char *path)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(path), j = 0;
    char *uri = malloc(3 * n + sizeof "file:?immutable=1");
    sqlite3 *db = NULL;
    int rc;
    if (!uri)
        return -ENOMEM;
    j = (size_t)sprintf(uri, "file:");
    for (size_t i = 0; i < n; i++) { /* percent-encode all but the unreserved bytes and '/' */
        unsigned char c = (unsigned char)path[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("/-._~", c)) {
            uri[j++] = (char)c;
        } else {
            uri[j++] = '%';
            uri[j++] = hex[c >> 4];
            uri[j++] = hex[c & 15];
        }
    }
    strcpy(uri + j, "?immutable=1");
    if (access(path, R_OK))
        rc = -errno;
    else if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK)
        rc = -EIO;
    else if (!(rc = format_of(db)))
        rc = -ENOENT;
    sqlite3_close(db);
    free(uri);
    return rc;
}

static int table_missing(sqlite3 *db, const char *name, bool *missing)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    *missing = sqlite3_step(st) != SQLITE_ROW;
    sqlite3_finalize(st);
    return 0;
}

/* Read only (a source region's catalog for copy-snapshot): no schema is created or changed; a catalog
 * without the base tables or from a newer format is refused. */
int vol_catalog_sqlite_open_ro(const char *path, vol_catalog **out)
{
    struct sqc *s = calloc(1, sizeof *s);
    int rc;
    *out = NULL;
    if (!s)
        return -ENOMEM;
    s->base.ops = &SQLITE_OPS;
    if (access(path, R_OK)) {
        rc = -errno;
        free(s);
        return rc;
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        EFS_ERROR("volume catalog %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        sqlite3_close(s->db);
        free(s);
        return -EIO;
    }
    sqlite3_busy_timeout(s->db, 10000);
    rc = format_of(s->db);
    if (rc == 0)
        rc = -EIO; /* no meta table or no format: not a catalog */
    else if (rc > VOL_CATALOG_FORMAT)
        rc = refuse_newer(path, rc);
    else if (rc > 0)
        rc = 0;
    if (!rc) /* a catalog from before lazy rekey has no owner_lineages table: no sources */
        rc = table_missing(s->db, "owner_lineages", &s->no_sources);
    if (!rc) /* nor one from before resumable copies a copy_progress table: no copy runs there */
        rc = table_missing(s->db, "copy_progress", &s->no_progress);
    if (rc) {
        sqlite3_close(s->db);
        free(s);
        return rc;
    }
    *out = &s->base;
    return 0;
}

int vol_catalog_sqlite_open(const char *path, vol_catalog **out)
{
    struct sqc *s = calloc(1, sizeof *s);
    char *fmt = NULL;
    int rc;
    *out = NULL;
    if (!s)
        return -ENOMEM;
    s->base.ops = &SQLITE_OPS;
    {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600); /* mode 0600 before SQLite sees it */
        if (fd < 0) {
            rc = -errno;
            free(s);
            return rc;
        }
        close(fd);
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        EFS_ERROR("volume catalog %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        sqlite3_close(s->db);
        free(s);
        return -EIO;
    }
    sqlite3_busy_timeout(s->db, 10000);
    /* a catalog from a newer format is refused before anything is set or created in it (its journal mode
     * included); checked again below inside the transaction, against a concurrent upgrade */
    if ((rc = format_of(s->db)) > VOL_CATALOG_FORMAT || rc < 0) {
        rc = rc > 0 ? refuse_newer(path, rc) : rc;
        goto fail;
    }
    if ((rc = exec1(&s->base, "PRAGMA journal_mode=WAL")) || (rc = exec1(&s->base, "PRAGMA synchronous=FULL")) ||
        (rc = exec1(&s->base, "BEGIN IMMEDIATE")))
        goto fail;
    if ((rc = exec1(&s->base, SCHEMA)) || (rc = exec1(&s->base, SCHEMA_COPIES)) ||
        (rc = exec1(&s->base, SCHEMA_SIGNATURES)) || (rc = exec1(&s->base, SCHEMA_PROGRESS)))
        goto fail;
    rc = s_setting_get(&s->base, "format", &fmt);
    if (rc == -ENOENT) {
        if ((rc = exec1(&s->base, "INSERT INTO meta (k, v) VALUES ('format', '1'), ('next_gen', '1')")))
            goto fail;
    } else if (rc) {
        goto fail;
    } else if (atoi(fmt) > VOL_CATALOG_FORMAT) {
        rc = refuse_newer(path, atoi(fmt));
        goto fail;
    }
    free(fmt);
    fmt = NULL;
    if ((rc = exec1(&s->base, "COMMIT")))
        goto fail;
    *out = &s->base;
    return 0;
fail:
    free(fmt);
    s_rollback(&s->base);
    sqlite3_close(s->db);
    free(s);
    return rc;
}
