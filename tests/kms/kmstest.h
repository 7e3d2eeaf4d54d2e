/*
 * kmstest.h — what the key-service C tests share beyond testutil.h: opening a core on a test store
 * (a failure prints the typed error and its message, then fails the test) and removing a test's
 * temporary directory. Header-only, for the C tests in tests/kms; include after testutil.h and envelopefs/kms.h.
 */
#ifndef ENVELOPEFS_KMSTEST_H
#define ENVELOPEFS_KMSTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <sodium.h>
#include <sqlite3.h>

#include "envelopefs/kms.h"
#include "testutil.h"

/* A core on the store in store_dir with the root key in root_key_file; never NULL (fails the test).
 * The caller frees it with kms_core_free. */
static inline kms_core *kmstest_open(const char *store_dir, const char *root_key_file)
{
    kms_store_opts so = {.store_dir = store_dir, .root_key_file = root_key_file};
    kms_core *c = NULL;
    char *msg = NULL;
    kms_err e = kms_core_open(&so, &c, &msg);
    if (e)
        fprintf(stderr, "open %s: %s %s\n", store_dir, kms_err_name(e), msg ? msg : "");
    free(msg);
    CHECK(e == KMS_OK);
    return c;
}

/* A new store in DIR/store with a random root key in DIR/root.key (mode 0600), the paths written to
 * store (cap bytes each) and keyfile; account: the store's account id, or NULL for the default. */
static inline void kmstest_init_store(const char *dir, char *store, size_t scap, char *keyfile, size_t kcap,
                                      const char *account)
{
    kms_store_opts so = {0};
    unsigned char key[32];
    char *msg = NULL;
    FILE *f;
    CHECK((size_t)snprintf(store, scap, "%s/store", dir) < scap);
    CHECK((size_t)snprintf(keyfile, kcap, "%s/root.key", dir) < kcap);
    CHECK((f = fopen(keyfile, "wx")) != NULL);
    CHECK(fchmod(fileno(f), 0600) == 0);
    randombytes_buf(key, sizeof key);
    CHECK(fwrite(key, 1, sizeof key, f) == sizeof key);
    sodium_memzero(key, sizeof key);
    CHECK(fclose(f) == 0);
    so.store_dir = store;
    so.root_key_file = keyfile;
    so.account = account;
    CHECK(kms_store_init(&so, &msg) == KMS_OK);
    free(msg);
}

/* The first column of the first row of sql (one text parameter, arg; NULL binds NULL) on the store in
 * store_dir, read through a connection of its own (what another reader, or one after a crash, sees);
 * -1 when there is no row. */
static inline int64_t kmstest_sql_count(const char *store_dir, const char *sql, const char *arg)
{
    char path[400];
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t n = -1;
    CHECK((size_t)snprintf(path, sizeof path, "%s/keystore.db", store_dir) < sizeof path);
    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
    if (arg)
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* rm -rf of a test's temporary directory (a path the test made with mkdtemp: no quotes in it). */
static inline void kmstest_rmdir(const char *dir)
{
    char cmd[600];
    CHECK((size_t)snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir) < sizeof cmd);
    CHECK(system(cmd) == 0);
}

#endif
