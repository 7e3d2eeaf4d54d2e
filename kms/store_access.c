/*
 * store_access.c — the keystore's record of who may use a key: each key's owning account and policy
 * document (table key_policies) and its grants (table grants). Both tables are an additive migration
 * (docs/FORMAT.md): created when missing at open, with the meta row "feature.key_policies"; a key
 * without a key_policies row (made before the migration) belongs to the store's account and has the
 * default policy. Called with the core lock held, like the rest of store.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "authz.h"
#include "internal.h"

static const char ACCESS_SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS key_policies(key_id TEXT PRIMARY KEY, account TEXT NOT NULL, policy TEXT,"
    " updated INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS grants(id TEXT PRIMARY KEY, key_id TEXT NOT NULL, token TEXT NOT NULL UNIQUE,"
    " name TEXT, grantee TEXT NOT NULL, retiring TEXT, operations TEXT NOT NULL, constraint_type INTEGER NOT NULL,"
    " constraint_ctx TEXT, issuing_account TEXT NOT NULL, created INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS grants_by_key ON grants(key_id);"
    "INSERT OR IGNORE INTO meta(k, v) VALUES('feature.key_policies', '1');";

static kms_err sql_err(sqlite3 *db, char **msg, const char *what)
{
    kms_set_msg(msg, "key store error (%s): %s", what, sqlite3_errmsg(db));
    return KMS_ERR_IO;
}

static bool migrated(sqlite3 *db)
{
    sqlite3_stmt *st;
    bool yes = false;
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name IN"
                               " ('key_policies','grants')", -1, &st, NULL) != SQLITE_OK)
        return false;
    if (sqlite3_step(st) == SQLITE_ROW)
        yes = sqlite3_column_int(st, 0) == 2;
    sqlite3_finalize(st);
    return yes;
}

kms_err kms_store_access_migrate(sqlite3 *db, char **msg)
{
    static const char *const tables[] = {"key_policies", "grants"};
    if (!migrated(db)) {
        /* Several processes may open an old store at once: IF NOT EXISTS under one write lock. */
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            return sql_err(db, msg, "begin migration");
        if (sqlite3_exec(db, ACCESS_SCHEMA, NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            kms_err e = sql_err(db, msg, "key policy tables");
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return e;
        }
    }
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        sqlite3_stmt *st;
        char sql[64];
        int rc;
        snprintf(sql, sizeof sql, "PRAGMA quick_check(%s)", tables[i]);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
            return sql_err(db, msg, "quick_check");
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0), "ok")) {
            kms_set_msg(msg, "key store is damaged: %s",
                                   rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : sqlite3_errmsg(db));
            sqlite3_finalize(st);
            return KMS_ERR_CORRUPT_STORE;
        }
        sqlite3_finalize(st);
    }
    return KMS_OK;
}

void kms_grant_clear(kms_grant *g)
{
    free(g->token);
    free(g->name);
    free(g->grantee);
    free(g->retiring);
    for (size_t i = 0; i < g->n_pairs; i++) {
        free((char *)g->pairs[i].key);
        free((char *)g->pairs[i].value);
    }
    free(g->pairs);
    memset(g, 0, sizeof *g);
}

void kms_key_access_free(kms_key *k)
{
    kms_policy_free(k->policy);
    k->policy = NULL;
    free(k->policy_text);
    k->policy_text = NULL;
    for (size_t i = 0; i < k->n_grants; i++)
        kms_grant_clear(&k->grants[i]);
    free(k->grants);
    k->grants = NULL;
    k->n_grants = 0;
}

static char *dup_col(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? strdup(s) : NULL;
}

/* A grant's constraint context as stored: a JSON object of strings. */
static int ctx_from_json(const char *text, kms_grant *g)
{
    json_t *o = json_loads(text, 0, NULL), *v;
    const char *k;
    size_t i = 0;
    if (!json_is_object(o)) {
        json_decref(o);
        return -1;
    }
    g->pairs = calloc(json_object_size(o) ? json_object_size(o) : 1, sizeof *g->pairs);
    if (!g->pairs) {
        json_decref(o);
        return -1;
    }
    json_object_foreach(o, k, v) {
        if (!json_is_string(v))
            break;
        g->pairs[i].key = strdup(k);
        g->pairs[i].value = strdup(json_string_value(v));
        g->n_pairs = ++i;
        if (!g->pairs[i - 1].key || !g->pairs[i - 1].value)
            break;
    }
    i = json_object_size(o) == g->n_pairs && (!i || (g->pairs[i - 1].key && g->pairs[i - 1].value));
    json_decref(o);
    return i ? 0 : -1;
}

static char *ctx_to_json(const kms_grant *g)
{
    json_t *o = json_object();
    char *s;
    for (size_t i = 0; o && i < g->n_pairs; i++)
        json_object_set_new(o, g->pairs[i].key, json_string(g->pairs[i].value));
    s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return s;
}

static uint32_t ops_from_text(const char *text)
{
    uint32_t ops = 0;
    char buf[64];
    const char *p = text;
    while (p && *p) {
        size_t n = strcspn(p, ",");
        if (n < sizeof buf) {
            int i;
            memcpy(buf, p, n);
            buf[n] = 0;
            if ((i = kms_grant_op_index(buf)) >= 0)
                ops |= 1u << i;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return ops;
}

static void ops_to_text(uint32_t ops, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < KMS_N_GRANT_OPS; i++)
        if (ops & (1u << i)) {
            int n = snprintf(buf + o, cap - o, "%s%s", o ? "," : "", KMS_GRANT_OPS[i]);
            if (n < 0 || (size_t)n >= cap - o)
                return;
            o += (size_t)n;
        }
}

kms_err kms_store_access_load(kms_core *c, char **msg)
{
    sqlite3_stmt *st;
    int rc;
    for (size_t i = 0; i < c->n_keys; i++)
        memcpy(c->keys[i].owner, c->account, sizeof c->keys[i].owner);
    if (sqlite3_prepare_v2(c->db, "SELECT key_id, account, policy FROM key_policies", -1, &st, NULL) != SQLITE_OK)
        return sql_err(c->db, msg, "reading key policies");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        kms_key *k = kms_find_key(c, (const char *)sqlite3_column_text(st, 0));
        const char *acct = (const char *)sqlite3_column_text(st, 1);
        if (!k)
            continue; /* orphan row of a destroyed key */
        if (!acct || strlen(acct) != 12) {
            sqlite3_finalize(st);
            kms_set_msg(msg, "key store is damaged: key %s has a malformed owner account", k->id);
            return KMS_ERR_CORRUPT_STORE;
        }
        memcpy(k->owner, acct, 13);
        if (sqlite3_column_type(st, 2) != SQLITE_NULL && !(k->policy_text = dup_col(st, 2))) {
            sqlite3_finalize(st);
            return KMS_ERR_NOMEM;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_err(c->db, msg, "reading key policies");
    if (sqlite3_prepare_v2(c->db,
                           "SELECT key_id, id, token, name, grantee, retiring, operations, constraint_type,"
                           " constraint_ctx, issuing_account, created FROM grants ORDER BY key_id, created, rowid",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_err(c->db, msg, "reading grants");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        kms_key *k = kms_find_key(c, (const char *)sqlite3_column_text(st, 0));
        const char *id = (const char *)sqlite3_column_text(st, 1);
        const char *acct = (const char *)sqlite3_column_text(st, 9);
        kms_grant g = {0}, *ng;
        if (!k)
            continue;
        if (!id || strlen(id) != 64 || !acct || strlen(acct) != 12 || !sqlite3_column_text(st, 2) ||
            !sqlite3_column_text(st, 4)) {
            sqlite3_finalize(st);
            kms_set_msg(msg, "key store is damaged: a grant of key %s is malformed", k->id);
            return KMS_ERR_CORRUPT_STORE;
        }
        memcpy(g.id, id, 65);
        memcpy(g.issuing_account, acct, 13);
        g.token = dup_col(st, 2);
        g.name = dup_col(st, 3);
        g.grantee = dup_col(st, 4);
        g.retiring = dup_col(st, 5);
        g.ops = ops_from_text((const char *)sqlite3_column_text(st, 6));
        g.constraint = (enum kms_grant_constraint)sqlite3_column_int(st, 7);
        g.created = sqlite3_column_int64(st, 10);
        if (g.constraint != KMS_GC_NONE &&
            (g.constraint > KMS_GC_SUBSET || !sqlite3_column_text(st, 8) ||
             ctx_from_json((const char *)sqlite3_column_text(st, 8), &g))) {
            kms_grant_clear(&g);
            sqlite3_finalize(st);
            kms_set_msg(msg, "key store is damaged: grant %s has a malformed constraint", id);
            return KMS_ERR_CORRUPT_STORE;
        }
        ng = realloc(k->grants, (k->n_grants + 1) * sizeof *ng);
        if (!ng || !g.token || !g.grantee) {
            if (ng)
                k->grants = ng;
            kms_grant_clear(&g);
            sqlite3_finalize(st);
            return KMS_ERR_NOMEM;
        }
        k->grants = ng;
        k->grants[k->n_grants++] = g;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? KMS_OK : sql_err(c->db, msg, "reading grants");
}

kms_err kms_store_write_policy(kms_core *c, const kms_key *k, char **msg)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(c->db, "INSERT OR REPLACE INTO key_policies(key_id, account, policy, updated) VALUES(?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_err(c->db, msg, "write key policy");
    sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k->owner, -1, SQLITE_STATIC);
    if (k->policy_text)
        sqlite3_bind_text(st, 3, k->policy_text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, kms_now(c));
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? KMS_OK : sql_err(c->db, msg, "write key policy");
}

kms_err kms_store_insert_grant(kms_core *c, kms_key *k, kms_grant *g, char **msg)
{
    sqlite3_stmt *st;
    char ops[512], *ctx = NULL;
    kms_grant *ng;
    int rc;
    ops_to_text(g->ops, ops, sizeof ops);
    if (g->constraint != KMS_GC_NONE && !(ctx = ctx_to_json(g)))
        return KMS_ERR_NOMEM;
    ng = realloc(k->grants, (k->n_grants + 1) * sizeof *ng);
    if (!ng) {
        free(ctx);
        return KMS_ERR_NOMEM;
    }
    k->grants = ng;
    if (sqlite3_prepare_v2(c->db,
                           "INSERT INTO grants(id, key_id, token, name, grantee, retiring, operations, constraint_type,"
                           " constraint_ctx, issuing_account, created) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        free(ctx);
        return sql_err(c->db, msg, "insert grant");
    }
    sqlite3_bind_text(st, 1, g->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, g->token, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, g->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, g->grantee, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, g->retiring, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, ops, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 8, (int)g->constraint);
    sqlite3_bind_text(st, 9, ctx, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, g->issuing_account, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 11, g->created);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    free(ctx);
    if (rc != SQLITE_DONE)
        return sql_err(c->db, msg, "insert grant");
    k->grants[k->n_grants++] = *g;
    memset(g, 0, sizeof *g);
    return KMS_OK;
}

kms_err kms_store_delete_grant(kms_core *c, kms_key *k, size_t idx, char **msg)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(c->db, "DELETE FROM grants WHERE id=?", -1, &st, NULL) != SQLITE_OK)
        return sql_err(c->db, msg, "delete grant");
    sqlite3_bind_text(st, 1, k->grants[idx].id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_err(c->db, msg, "delete grant");
    kms_grant_clear(&k->grants[idx]);
    memmove(&k->grants[idx], &k->grants[idx + 1], (k->n_grants - idx - 1) * sizeof *k->grants);
    k->n_grants--;
    return KMS_OK;
}
