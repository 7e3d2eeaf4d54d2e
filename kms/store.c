/*
 * store.c — the keystore: a SQLite database `keystore.db` in the store directory, unlocked by a root
 * key, holding CMKs, their key-material versions (encrypted under the root key), aliases, tags,
 * access keys for the server and the audit trail. docs/FORMAT.md "Keystore" describes the schema.
 *
 * Root key: 32 bytes from a 0600 key file (raw or 64 hex chars) or Argon2id(passphrase) with the salt
 * and limits recorded in the store. A verifier (an AEAD of a fixed string) tells a wrong root key from
 * a damaged store without modifying anything. Key material rows are sealed with
 * XChaCha20-Poly1305 under the root key, AAD = "envelopefs-cmk-v1" ‖ key id ‖ version, so rows cannot
 * be swapped between keys or versions.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/monotime.h"
#include "internal.h"
#include "audit.h"
#include "keymat.h"

#define STORE_FORMAT "2"      /* 2: keys carry key_spec / key_usage (format 1 is migrated on open) */
#define VERIFIER_TEXT "envelopefs keystore verifier v1"

static const char SCHEMA[] =
    "CREATE TABLE meta(k TEXT PRIMARY KEY, v BLOB NOT NULL);"
    "CREATE TABLE keys(id TEXT PRIMARY KEY, created INTEGER NOT NULL, description TEXT NOT NULL,"
    " state INTEGER NOT NULL, deletion_date INTEGER NOT NULL DEFAULT 0, pending_days INTEGER NOT NULL DEFAULT 0,"
    " rotation_enabled INTEGER NOT NULL DEFAULT 0, rotation_period INTEGER NOT NULL DEFAULT 365,"
    " next_rotation INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL,"
    " key_spec TEXT NOT NULL DEFAULT 'SYMMETRIC_DEFAULT', key_usage TEXT NOT NULL DEFAULT 'ENCRYPT_DECRYPT',"
    " origin TEXT NOT NULL DEFAULT 'AWS_KMS', expiration_model TEXT NOT NULL DEFAULT '',"
    " valid_to INTEGER NOT NULL DEFAULT 0, material_digest BLOB);"
    "CREATE TABLE key_versions(key_id TEXT NOT NULL, version INTEGER NOT NULL, created INTEGER NOT NULL,"
    " automatic INTEGER NOT NULL, material BLOB NOT NULL, PRIMARY KEY(key_id, version));"
    "CREATE TABLE aliases(name TEXT PRIMARY KEY, key_id TEXT NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL);"
    "CREATE TABLE tags(key_id TEXT NOT NULL, tag_key TEXT NOT NULL, tag_value TEXT NOT NULL, PRIMARY KEY(key_id, tag_key));"
    "CREATE TABLE access_keys(id TEXT PRIMARY KEY, account TEXT NOT NULL, user TEXT NOT NULL, secret BLOB NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE audit(seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, account TEXT, user TEXT,"
    " source TEXT, operation TEXT NOT NULL, key_id TEXT, result TEXT NOT NULL);";

static int64_t default_clock(void *arg)
{
    (void)arg;
    return (int64_t)time(NULL);
}

/* Tests only: ENVELOPEFS_TEST_CLOCK_OFFSET_S=N makes a core opened with it see the time N seconds ahead (a server
 * test lets a waiting period pass; the embedded tests use kms_core_set_clock). */
static int64_t test_offset_s;

static int64_t offset_clock(void *arg)
{
    (void)arg;
    return (int64_t)time(NULL) + test_offset_s;
}

/* ---- SQL helpers ---------------------------------------------------------------------------- */

static kms_err db_err(kms_core *c, char **msg, const char *what)
{
    int code = sqlite3_errcode(c->db);
    kms_set_msg(msg, "keystore: %s: %s", what, sqlite3_errmsg(c->db));
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
        return KMS_ERR_CORRUPT_STORE;
    if (code == SQLITE_FULL || code == SQLITE_IOERR || code == SQLITE_CANTOPEN || code == SQLITE_READONLY)
        return KMS_ERR_IO;
    return KMS_ERR_INTERNAL;
}

int kms_meta_get(sqlite3 *db, const char *k, void *buf, size_t cap, size_t *len)
{
    sqlite3_stmt *st;
    int rc = -1;
    if (sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k=?", -1, &st, NULL) != SQLITE_OK)
        return -2;
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        const void *p = sqlite3_column_blob(st, 0);
        if (n <= cap) {
            if (n)
                memcpy(buf, p, n);
            *len = n;
            rc = 0;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

static int meta_get_str(sqlite3 *db, const char *k, char *buf, size_t cap)
{
    size_t n;
    if (kms_meta_get(db, k, buf, cap - 1, &n))
        return -1;
    buf[n] = 0;
    return 0;
}

kms_err kms_schema_add(sqlite3 *db, const char *sql, const char *what, char **msg)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        kms_set_msg(msg, "key store error (%s): %s", what, sqlite3_errmsg(db));
        return KMS_ERR_IO;
    }
    return KMS_OK;
}

int kms_meta_put(sqlite3 *db, const char *k, const void *v, size_t n, bool replace)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(db, replace ? "INSERT OR REPLACE INTO meta(k,v) VALUES(?,?)" : "INSERT OR IGNORE INTO meta(k,v) VALUES(?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, v, (int)n, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    sqlite3_finalize(st);
    return rc;
}

/* ---- root key ------------------------------------------------------------------------------- */

static kms_err read_root_key_file(const char *path, uint8_t *key, char **msg)
{
    struct stat sb;
    char buf[130];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    kms_err e = KMS_OK;

    if (fd < 0) {
        kms_set_msg(msg, "cannot open root key file %s: %s", path, strerror(errno));
        return KMS_ERR_IO;
    }
    if (fstat(fd, &sb) || (sb.st_mode & 077)) {
        kms_set_msg(msg, "root key file %s must not be readable by group or others (chmod 600)", path);
        close(fd);
        return KMS_ERR_VALIDATION;
    }
    n = read(fd, buf, sizeof buf);
    close(fd);
    if (n == 32) {
        memcpy(key, buf, 32);
    } else if (n >= 64 && n <= 66) {
        size_t bin_len = 0;
        if (sodium_hex2bin(key, 32, buf, (size_t)n, "\r\n", &bin_len, NULL) || bin_len != 32)
            e = KMS_ERR_VALIDATION;
    } else {
        e = KMS_ERR_VALIDATION;
    }
    if (e)
        kms_set_msg(msg, "root key file %s must hold 32 raw bytes or 64 hex characters", path);
    sodium_memzero(buf, sizeof buf);
    return e;
}

static kms_err read_passphrase_file(const char *path, char *pw, size_t cap, char **msg)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        kms_set_msg(msg, "cannot open passphrase file %s: %s", path, strerror(errno));
        return KMS_ERR_IO;
    }
    if (!fgets(pw, (int)cap, f)) {
        fclose(f);
        kms_set_msg(msg, "passphrase file %s is empty", path);
        return KMS_ERR_VALIDATION;
    }
    fclose(f);
    pw[strcspn(pw, "\r\n")] = 0;
    if (!pw[0]) {
        kms_set_msg(msg, "passphrase file %s is empty", path);
        return KMS_ERR_VALIDATION;
    }
    return KMS_OK;
}

/* Derive the root key. For init (salt == NULL on entry to the store) the caller provides fresh
 * parameters. kdf: "keyfile" or "argon2id". */
static kms_err derive_root_key(const kms_store_opts *o, const char *kdf, const uint8_t *salt,
                               uint64_t ops, uint64_t mem, uint8_t *key, char **msg)
{
    int sources = !!o->root_key_file + !!o->passphrase_file + !!o->passphrase;
    if (sources != 1) {
        kms_set_msg(msg, "give exactly one of a root key file, a passphrase file or a passphrase");
        return KMS_ERR_VALIDATION;
    }
    if (o->root_key_file) {
        if (strcmp(kdf, "keyfile")) {
            kms_set_msg(msg, "this store is protected by a passphrase, not a root key file");
            return KMS_ERR_BAD_PASSPHRASE;
        }
        return read_root_key_file(o->root_key_file, key, msg);
    }
    if (strcmp(kdf, "argon2id")) {
        kms_set_msg(msg, "this store is protected by a root key file, not a passphrase");
        return KMS_ERR_BAD_PASSPHRASE;
    }
    char *pw = sodium_malloc(1024);
    kms_err e = KMS_OK;
    if (!pw)
        return KMS_ERR_NOMEM;
    if (o->passphrase_file) {
        e = read_passphrase_file(o->passphrase_file, pw, 1024, msg);
    } else {
        size_t l = strlen(o->passphrase);
        if (!l || l >= 1024) {
            kms_set_msg(msg, "the passphrase must be 1 to 1023 bytes");
            e = KMS_ERR_VALIDATION;
        } else {
            memcpy(pw, o->passphrase, l + 1);
        }
    }
    if (!e && crypto_pwhash(key, 32, pw, strlen(pw), salt, ops, (size_t)mem,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
        kms_set_msg(msg, "Argon2id key derivation failed (out of memory?)");
        e = KMS_ERR_NOMEM;
    }
    sodium_free(pw);
    return e;
}

/* ---- sealing under the root key ------------------------------------------------------------- */

#define SEAL_OVERHEAD (crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES)

static void seal(const uint8_t *root, const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t n,
                 uint8_t *out /* n + SEAL_OVERHEAD */)
{
    randombytes_buf(out, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, NULL,
                                               pt, n, aad, aad_len, NULL, out, root);
}

static int unseal(const uint8_t *root, const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t n,
                  uint8_t *out /* n - SEAL_OVERHEAD */)
{
    if (n < SEAL_OVERHEAD)
        return -1;
    return crypto_aead_xchacha20poly1305_ietf_decrypt(
        out, NULL, NULL, in + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
        n - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, aad, aad_len, in, root);
}

/* ---- open / init ---------------------------------------------------------------------------- */

static char *db_path(const char *dir)
{
    char *path = NULL;
    kms_set_msg(&path, "%s/keystore.db", dir);
    return path;
}

static kms_err open_db(const char *path, int flags, sqlite3 **db, char **msg)
{
    if (sqlite3_open_v2(path, db, flags | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        kms_set_msg(msg, "cannot open %s: %s", path, *db ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return KMS_ERR_IO;
    }
    sqlite3_busy_timeout(*db, 10000);
    return KMS_OK;
}

kms_err kms_store_init(const kms_store_opts *o, char **errmsg)
{
    uint8_t *key = NULL;
    sqlite3 *db = NULL;
    char *path = NULL;
    kms_err e;
    uint8_t salt[crypto_pwhash_SALTBYTES];
    uint64_t ops = crypto_pwhash_OPSLIMIT_INTERACTIVE, mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    const char *kdf;
    uint8_t verifier[sizeof VERIFIER_TEXT - 1 + SEAL_OVERHEAD];
    struct stat sb;

    if (errmsg)
        *errmsg = NULL;
    if (sodium_init() < 0)
        return KMS_ERR_INTERNAL;
    if (!o || !o->store_dir) {
        kms_set_msg(errmsg, "no store directory given");
        return KMS_ERR_VALIDATION;
    }
    if (mkdir(o->store_dir, 0700) && errno != EEXIST) {
        kms_set_msg(errmsg, "cannot create store directory %s: %s", o->store_dir, strerror(errno));
        return KMS_ERR_IO;
    }
    path = db_path(o->store_dir);
    if (!path)
        return KMS_ERR_NOMEM;
    if (stat(path, &sb) == 0) {
        kms_set_msg(errmsg, "a key store already exists in %s", o->store_dir);
        free(path);
        return KMS_ERR_ALREADY_EXISTS;
    }
    key = sodium_malloc(32);
    if (!key) {
        free(path);
        return KMS_ERR_NOMEM;
    }
    kdf = o->root_key_file ? "keyfile" : "argon2id";
    randombytes_buf(salt, sizeof salt);
    e = derive_root_key(o, kdf, salt, ops, mem, key, errmsg);
    if (e)
        goto out;
    {
        mode_t old = umask(077);
        e = open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &db, errmsg);
        umask(old);
    }
    if (e)
        goto out;
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; BEGIN;", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK) {
        kms_set_msg(errmsg, "cannot create key store: %s", sqlite3_errmsg(db));
        e = KMS_ERR_IO;
        goto out_unlink;
    }
    seal(key, (const uint8_t *)"verifier", 8, (const uint8_t *)VERIFIER_TEXT, sizeof VERIFIER_TEXT - 1,
         verifier);
    {
        const char *region = o->region ? o->region : "us-east-1";
        const char *account = o->account ? o->account : "111122223333";
        uint8_t ops_b[8], mem_b[8];
        for (int i = 0; i < 8; i++) {
            ops_b[i] = (uint8_t)(ops >> (56 - 8 * i));
            mem_b[i] = (uint8_t)(mem >> (56 - 8 * i));
        }
        if (strlen(account) != 12 || strspn(account, "0123456789") != 12) {
            kms_set_msg(errmsg, "account must be 12 digits");
            e = KMS_ERR_VALIDATION;
            goto out_unlink;
        }
        if (kms_meta_put(db, "format", STORE_FORMAT, 1, true) || kms_meta_put(db, "kdf", kdf, strlen(kdf), true) ||
            kms_meta_put(db, "salt", salt, sizeof salt, true) || kms_meta_put(db, "opslimit", ops_b, 8, true) ||
            kms_meta_put(db, "memlimit", mem_b, 8, true) || kms_meta_put(db, "verifier", verifier, sizeof verifier, true) ||
            kms_meta_put(db, "region", region, strlen(region), true) ||
            kms_meta_put(db, "account", account, strlen(account), true) ||
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            kms_set_msg(errmsg, "cannot write key store: %s", sqlite3_errmsg(db));
            e = KMS_ERR_IO;
            goto out_unlink;
        }
    }
    goto out;
out_unlink:
    sqlite3_close(db);
    db = NULL;
    unlink(path);
out:
    sqlite3_close(db);
    sodium_free(key);
    free(path);
    return e;
}

/* ENVELOPEFS_KMS_SYNC=full: every commit (each group of audit records) fsyncs the WAL, so a power
 * loss loses nothing that was answered; the default (normal) syncs at checkpoints only. */
static bool sync_full(void)
{
    const char *v = getenv("ENVELOPEFS_KMS_SYNC");
    return v && !strcmp(v, "full");
}

/* Keystore format 1 → 2: every key of a format-1 store is SYMMETRIC_DEFAULT / ENCRYPT_DECRYPT, which is
 * what the new columns default to; nothing else changes, so rows, sealed material and the golden vectors of
 * format 1 stay as they are. One transaction, after the root key is verified; a process that finds another
 * already migrated the store (format re-read under the write lock) does nothing. */
static kms_err migrate_v1(kms_core *c, char **msg)
{
    char fmt[8];
    if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_err(c, msg, "migrating the key store to format 2");
    if (meta_get_str(c->db, "format", fmt, sizeof fmt) == 0 && !strcmp(fmt, "1") &&
        (sqlite3_exec(c->db,
                      "ALTER TABLE keys ADD COLUMN key_spec TEXT NOT NULL DEFAULT 'SYMMETRIC_DEFAULT';"
                      "ALTER TABLE keys ADD COLUMN key_usage TEXT NOT NULL DEFAULT 'ENCRYPT_DECRYPT';"
                      "ALTER TABLE keys ADD COLUMN origin TEXT NOT NULL DEFAULT 'AWS_KMS';"
                      "ALTER TABLE keys ADD COLUMN expiration_model TEXT NOT NULL DEFAULT '';"
                      "ALTER TABLE keys ADD COLUMN valid_to INTEGER NOT NULL DEFAULT 0;"
                      "ALTER TABLE keys ADD COLUMN material_digest BLOB;",
                      NULL, NULL, NULL) != SQLITE_OK ||
         kms_meta_put(c->db, "format", STORE_FORMAT, 1, true))) {
        kms_err e = db_err(c, msg, "migrating the key store to format 2");
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return e;
    }
    if (sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        kms_err e = db_err(c, msg, "migrating the key store to format 2");
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return e;
    }
    return KMS_OK;
}

kms_err kms_core_open(const kms_store_opts *o, kms_core **out, char **errmsg)
{
    kms_core *c;
    char *path;
    kms_err e;
    char kdf[16], fmt[8];
    uint8_t salt[crypto_pwhash_SALTBYTES], ops_b[8], mem_b[8], verifier[128], check[64];
    size_t n, vlen;
    uint64_t ops = 0, mem = 0;
    struct stat sb;

    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    if (sodium_init() < 0)
        return KMS_ERR_INTERNAL;
    if (!o || !o->store_dir) {
        kms_set_msg(errmsg, "no store directory given");
        return KMS_ERR_VALIDATION;
    }
    path = db_path(o->store_dir);
    if (!path)
        return KMS_ERR_NOMEM;
    if (stat(path, &sb)) {
        kms_set_msg(errmsg, "no key store in %s (create one with `envelopefs kms init-store`)", o->store_dir);
        free(path);
        return KMS_ERR_NOT_FOUND;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        free(path);
        return KMS_ERR_NOMEM;
    }
    {
        /* Adaptive: calls hold the lock for a few microseconds, so a waiter spins briefly before it
         * sleeps (a futex wait and wake per contended call cost ~4 % of the server's CPU). */
        pthread_mutexattr_t ma;
        if (pthread_mutexattr_init(&ma) || pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP) ||
            pthread_mutex_init(&c->lock, &ma)) {
            free(c);
            free(path);
            return KMS_ERR_INTERNAL;
        }
        pthread_mutexattr_destroy(&ma);
        if (pthread_cond_init(&c->mrk_cv, NULL)) {
            pthread_mutex_destroy(&c->lock);
            free(c);
            free(path);
            return KMS_ERR_INTERNAL;
        }
    }
    c->clock = default_clock;
    {
        const char *off = getenv("ENVELOPEFS_TEST_CLOCK_OFFSET_S");
        if (off && *off) {
            test_offset_s = strtoll(off, NULL, 10);
            c->clock = offset_clock;
        }
    }
    c->dir = strdup(o->store_dir);
    c->root_key = sodium_malloc(32);
    if (!c->dir || !c->root_key) {
        e = KMS_ERR_NOMEM;
        goto fail;
    }
    e = open_db(path, SQLITE_OPEN_READWRITE, &c->db, errmsg);
    if (e)
        goto fail;
    /* Integrity first: a damaged file is reported, never "repaired". Every table but the audit trail is
     * checked: the trail grows by every call (tens of bytes each), and checking it would make opening
     * the store — every CLI command, every mount — take time proportional to the store's whole history. */
    {
        static const char *const tables[] = {"meta", "keys", "key_versions", "aliases", "tags", "access_keys"};
        for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
            sqlite3_stmt *st;
            char sql[64];
            int rc;
            snprintf(sql, sizeof sql, "PRAGMA quick_check(%s)", tables[i]);
            rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
            if (rc != SQLITE_OK) {
                kms_set_msg(errmsg, "key store %s is damaged: %s", path, sqlite3_errmsg(c->db));
                e = KMS_ERR_CORRUPT_STORE;
                goto fail;
            }
            rc = sqlite3_step(st);
            if (rc != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0), "ok")) {
                kms_set_msg(errmsg, "key store %s is damaged: %s", path,
                        rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : sqlite3_errmsg(c->db));
                sqlite3_finalize(st);
                e = KMS_ERR_CORRUPT_STORE;
                goto fail;
            }
            sqlite3_finalize(st);
        }
    }
    if (meta_get_str(c->db, "format", fmt, sizeof fmt) || meta_get_str(c->db, "kdf", kdf, sizeof kdf) ||
        kms_meta_get(c->db, "salt", salt, sizeof salt, &n) || n != sizeof salt ||
        kms_meta_get(c->db, "opslimit", ops_b, 8, &n) || n != 8 || kms_meta_get(c->db, "memlimit", mem_b, 8, &n) ||
        n != 8 || kms_meta_get(c->db, "verifier", verifier, sizeof verifier, &vlen) ||
        meta_get_str(c->db, "region", c->region, sizeof c->region) ||
        meta_get_str(c->db, "account", c->account, sizeof c->account)) {
        kms_set_msg(errmsg, "key store %s is damaged: its metadata table is missing or incomplete", path);
        e = KMS_ERR_CORRUPT_STORE;
        goto fail;
    }
    if (strcmp(fmt, "1") && strcmp(fmt, STORE_FORMAT)) {
        kms_set_msg(errmsg, "key store %s has format %s; this build reads format %s", path, fmt, STORE_FORMAT);
        e = KMS_ERR_CORRUPT_STORE;
        goto fail;
    }
    for (int i = 0; i < 8; i++) {
        ops = ops << 8 | ops_b[i];
        mem = mem << 8 | mem_b[i];
    }
    if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > crypto_pwhash_OPSLIMIT_MAX || mem < crypto_pwhash_MEMLIMIT_MIN ||
        mem > (uint64_t)1 << 34) {
        kms_set_msg(errmsg, "key store %s is damaged: implausible Argon2id parameters", path);
        e = KMS_ERR_CORRUPT_STORE;
        goto fail;
    }
    e = derive_root_key(o, kdf, salt, ops, mem, c->root_key, errmsg);
    if (e)
        goto fail;
    if (vlen != sizeof VERIFIER_TEXT - 1 + SEAL_OVERHEAD ||
        unseal(c->root_key, (const uint8_t *)"verifier", 8, verifier, vlen, check) ||
        sodium_memcmp(check, VERIFIER_TEXT, sizeof VERIFIER_TEXT - 1)) {
        kms_set_msg(errmsg, "wrong %s for the key store in %s",
                strcmp(kdf, "keyfile") ? "passphrase" : "root key", o->store_dir);
        e = KMS_ERR_BAD_PASSPHRASE;
        goto fail;
    }
    if (sqlite3_exec(c->db, sync_full() ? "PRAGMA secure_delete=ON; PRAGMA synchronous=FULL;"
                                        : "PRAGMA secure_delete=ON; PRAGMA synchronous=NORMAL;",
                     NULL, NULL, NULL)) {
        e = db_err(c, errmsg, "pragma");
        goto fail;
    }
    if (!strcmp(fmt, "1") && (e = migrate_v1(c, errmsg)))
        goto fail;
    e = kms_store_access_migrate(c->db, errmsg); /* key policies and grants (store_access.c) */
    if (!e)
        e = kms_mrk_migrate(c->db, errmsg); /* multi-Region keys (mrk.c) */
    if (!e)
        e = kms_cks_migrate(c->db, errmsg); /* custom key stores (cks.c) */
    if (!e) /* CreateKey's next seq (MAX) and the load's order: a lookup, not a scan of every key row */
        e = kms_schema_add(c->db, "CREATE INDEX IF NOT EXISTS keys_by_seq ON keys(seq)", "keys_by_seq index", errmsg);
    if (!e) /* last: triggers on every table the features above made */
        e = kms_changes_migrate(c->db, errmsg);
    if (e)
        goto fail;
    kms_changes_watch(c);
    e = kms_store_load(c, errmsg);
    if (!e)
        e = kms_trail_open(c, path, errmsg);
    if (e)
        goto fail;
    c->ckpt = kms_checkpointer_start(c->db, path, c->audit_sk, kms_trail_tick, c); /* NULL: SQLite checkpoints inside commits */
    if (c->ckpt)
        kms_checkpointer_watch(c->ckpt, c->w_db); /* the trail's commits are most of the WAL's pages */
    free(path);
    *out = c;
    return KMS_OK;
fail:
    free(path);
    kms_core_free(c);
    return e;
}

void kms_core_free(kms_core *c)
{
    if (!c)
        return;
    kms_trail_async_stop(c); /* (takes the core lock to write: before it is held here) */
    pthread_mutex_lock(&c->lock);
    kms_trail_close(c); /* writes what is queued and seals the head */
    pthread_mutex_unlock(&c->lock);
    kms_checkpointer_stop(c->ckpt);
    kms_trail_free(c);
    kms_cks_free(c);
    kms_free_tables(c);
    sqlite3_finalize(c->dv_stmt);
    sqlite3_finalize(c->cc_read);
    sqlite3_finalize(c->cc_begin);
    sqlite3_finalize(c->cc_commit);
    sqlite3_close(c->db);
    sodium_free(c->root_key);
    free(c->dir);
    pthread_cond_destroy(&c->mrk_cv);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void kms_core_set_clock(kms_core *c, kms_clock_fn fn, void *arg)
{
    c->clock = fn ? fn : default_clock;
    c->clock_arg = fn ? arg : NULL;
}

const char *kms_core_region(const kms_core *c) { return c->region; }
const char *kms_core_account(const kms_core *c) { return c->account; }

/* ---- in-memory tables ----------------------------------------------------------------------- */

static void free_key(kms_key *k)
{
    for (size_t i = 0; i < k->n_versions; i++) {
        kms_gcm_key_free(k->versions[i].gcm);
        for (size_t j = 0; k->versions[i].pctx && j < KMS_PCTX_SLOTS; j++)
            EVP_PKEY_CTX_free(k->versions[i].pctx[j]);
        free(k->versions[i].pctx);
        EVP_PKEY_free(k->versions[i].pkey);
        sodium_free(k->versions[i].material);
    }
    free(k->versions);
    free(k->description);
    kms_key_access_free(k);
}

/* ---- the index of keys[] by id ------------------------------------------------------------- */

/* FNV-1a over the id's text (ids are random UUIDs: any mixing hash spreads them). */
static uint64_t id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *id; id++)
        h = (h ^ (uint8_t)*id) * 1099511628211ULL;
    return h;
}

static void index_put(kms_core *c, size_t i)
{
    size_t mask = c->key_index_cap - 1, s = (size_t)id_hash(c->keys[i].id) & mask;
    while (c->key_index[s])
        s = (s + 1) & mask;
    c->key_index[s] = (uint32_t)(i + 1);
}

/* Rebuild the index of keys[0, n_keys) (after a load, or a destroy shifted the array). Without memory
 * for it the index goes and kms_find_key scans: slower, still right. */
static void index_rebuild(kms_core *c)
{
    size_t cap = 16;
    while (cap < 2 * c->n_keys)
        cap *= 2;
    if (cap != c->key_index_cap || !c->key_index) {
        free(c->key_index);
        c->key_index = c->n_keys < UINT32_MAX ? calloc(cap, sizeof *c->key_index) : NULL;
        c->key_index_cap = c->key_index ? cap : 0;
    } else {
        memset(c->key_index, 0, cap * sizeof *c->key_index);
    }
    for (size_t i = 0; c->key_index && i < c->n_keys; i++)
        index_put(c, i);
}

/* keys[n_keys - 1] was appended. */
static void index_append(kms_core *c)
{
    if (!c->key_index || 2 * c->n_keys > c->key_index_cap)
        index_rebuild(c);
    else
        index_put(c, c->n_keys - 1);
}

void kms_free_tables(kms_core *c)
{
    for (size_t i = 0; i < c->n_keys; i++)
        free_key(&c->keys[i]);
    free(c->keys);
    c->keys = NULL;
    c->n_keys = c->cap_keys = 0;
    free(c->key_index);
    c->key_index = NULL;
    c->key_index_cap = 0;
    c->sweep_at = 0;
    for (size_t i = 0; i < c->n_aliases; i++)
        free(c->aliases[i].name);
    free(c->aliases);
    c->aliases = NULL;
    c->n_aliases = c->cap_aliases = 0;
}

static int uuid_to_raw(const char *id, uint8_t raw[16])
{
    size_t n = 0;
    if (strlen(id) != KMS_KEY_ID_LEN)
        return -1;
    if (!strncmp(id, "mrk-", 4)) /* a multi-Region key (mrk.c): "mrk-" and the 16 raw bytes in hex */
        id += 4;
    for (const char *p = id; *p && n < 32; p++) {
        if (*p == '-')
            continue;
        int hi = *p;
        int v = (hi >= '0' && hi <= '9') ? hi - '0' : (hi >= 'a' && hi <= 'f') ? hi - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        if (n % 2 == 0)
            raw[n / 2] = (uint8_t)(v << 4);
        else
            raw[n / 2] |= (uint8_t)v;
        n++;
    }
    return n == 32 ? 0 : -1;
}

kms_err kms_store_load(kms_core *c, char **msg)
{
    sqlite3_stmt *st = NULL;
    kms_err e = KMS_OK;
    int rc;

    kms_free_tables(c);
    if (sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return db_err(c, msg, "begin");
    if (sqlite3_prepare_v2(c->db,
                           "SELECT id, created, description, state, deletion_date, pending_days,"
                           " rotation_enabled, rotation_period, next_rotation, key_spec, key_usage, origin, expiration_model, valid_to,"
                           " material_digest FROM keys ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK) {
        e = KMS_ERR_CORRUPT_STORE;
        kms_set_msg(msg, "key store is damaged: %s", sqlite3_errmsg(c->db));
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        kms_key k;
        memset(&k, 0, sizeof k);
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (!id || strlen(id) != KMS_KEY_ID_LEN || uuid_to_raw(id, k.raw_id)) {
            e = KMS_ERR_CORRUPT_STORE;
            kms_set_msg(msg, "key store is damaged: malformed key id in the keys table");
            goto out;
        }
        memcpy(k.id, id, KMS_KEY_ID_LEN + 1);
        k.created = sqlite3_column_int64(st, 1);
        k.description = strdup((const char *)sqlite3_column_text(st, 2) ? (const char *)sqlite3_column_text(st, 2) : "");
        k.state = (enum kms_key_state)sqlite3_column_int(st, 3);
        k.deletion_date = sqlite3_column_int64(st, 4);
        if ((int)k.state == KMS_DB_STATE_PENDING_REPLICA_DELETION) { /* in memory: PendingDeletion, no date */
            k.state = KS_PENDING_DELETION;
            k.deletion_date = strncmp(id, KMS_MRK_PREFIX, 4) ? -1 : 0; /* (-1: refused below) */
        } else if (k.state == KS_PENDING_DELETION && k.deletion_date <= 0) {
            k.deletion_date = -1;
        }
        k.pending_days = sqlite3_column_int(st, 5);
        k.rotation_enabled = sqlite3_column_int(st, 6) != 0;
        k.rotation_period = sqlite3_column_int(st, 7);
        k.next_rotation = sqlite3_column_int64(st, 8);
        {
            int spec = kms_spec_parse((const char *)sqlite3_column_text(st, 9));
            int usage = kms_usage_parse((const char *)sqlite3_column_text(st, 10));
            if (spec < 0 || usage < 0 || !kms_spec_usage_valid((enum kms_key_spec)spec, (enum kms_key_usage)usage)) {
                free(k.description);
                e = KMS_ERR_CORRUPT_STORE;
                kms_set_msg(msg, "key store is damaged: key %s has an unknown key spec or usage", id);
                goto out;
            }
            k.spec = (enum kms_key_spec)spec;
            k.usage = (enum kms_key_usage)usage;
        }
        {
            const char *origin = (const char *)sqlite3_column_text(st, 11);
            const char *model = (const char *)sqlite3_column_text(st, 12);
            k.external = origin && !strcmp(origin, "EXTERNAL");
            k.hsm = origin && !strcmp(origin, "AWS_CLOUDHSM"); /* a custom key store's key (cks.c) */
            k.expires = model && !strcmp(model, "KEY_MATERIAL_EXPIRES");
            k.valid_to = sqlite3_column_int64(st, 13);
            if (sqlite3_column_bytes(st, 14) == 32) {
                memcpy(k.material_digest, sqlite3_column_blob(st, 14), 32);
                k.has_digest = true;
            }
            if ((unsigned)k.state > KS_PENDING_IMPORT || (k.state == KS_PENDING_IMPORT && !k.external) ||
                k.deletion_date < 0 ||
                (k.external && k.spec != KMS_SPEC_SYMMETRIC) || (k.hsm && k.spec != KMS_SPEC_SYMMETRIC)) {
                free(k.description);
                e = KMS_ERR_CORRUPT_STORE;
                kms_set_msg(msg, "key store is damaged: key %s has an impossible state or origin", id);
                goto out;
            }
        }
        if (c->n_keys == c->cap_keys) {
            size_t nc = c->cap_keys ? 2 * c->cap_keys : 16;
            kms_key *nk = realloc(c->keys, nc * sizeof *nk);
            if (!nk) {
                free(k.description);
                e = KMS_ERR_NOMEM;
                goto out;
            }
            c->keys = nk;
            c->cap_keys = nc;
        }
        c->keys[c->n_keys++] = k;
    }
    if (rc != SQLITE_DONE) {
        e = db_err(c, msg, "reading keys");
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    index_rebuild(c); /* the rows below find their keys through it */
    if (sqlite3_prepare_v2(c->db, "SELECT key_id, version, created, automatic FROM key_versions ORDER BY key_id, version",
                           -1, &st, NULL) != SQLITE_OK) {
        e = KMS_ERR_CORRUPT_STORE;
        kms_set_msg(msg, "key store is damaged: %s", sqlite3_errmsg(c->db));
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        kms_key *k = kms_find_key(c, (const char *)sqlite3_column_text(st, 0));
        if (!k)
            continue; /* orphan row of a destroyed key */
        kms_version *nv = realloc(k->versions, (k->n_versions + 1) * sizeof *nv);
        if (!nv) {
            e = KMS_ERR_NOMEM;
            goto out;
        }
        k->versions = nv;
        nv[k->n_versions].version = (uint32_t)sqlite3_column_int64(st, 1);
        nv[k->n_versions].created = sqlite3_column_int64(st, 2);
        nv[k->n_versions].automatic = sqlite3_column_int(st, 3);
        nv[k->n_versions].material = NULL;
        nv[k->n_versions].material_len = 0;
        nv[k->n_versions].gcm = NULL;
        nv[k->n_versions].pkey = NULL;
        nv[k->n_versions].pctx = NULL;
        if (nv[k->n_versions].version != k->n_versions + 1) {
            e = KMS_ERR_CORRUPT_STORE;
            kms_set_msg(msg, "key store is damaged: key %s has a gap in its key-material versions", k->id);
            goto out;
        }
        k->n_versions++;
    }
    sqlite3_finalize(st);
    st = NULL;
    if ((e = kms_cks_load_keys(c, msg)))
        goto out;
    for (size_t i = 0; i < c->n_keys; i++) {
        kms_key *k = &c->keys[i];
        if (!k->hsm)
            continue;
        /* its one version is a token object: no key_versions row */
        if (k->n_versions || !k->cks_id[0] || !(k->versions = calloc(1, sizeof *k->versions))) {
            e = k->n_versions || !k->cks_id[0] ? KMS_ERR_CORRUPT_STORE : KMS_ERR_NOMEM;
            kms_set_msg(msg, "key store is damaged: key %s (Origin AWS_CLOUDHSM) has %s", k->id,
                        k->n_versions ? "key material in the store" : "no custom key store");
            goto out;
        }
        k->versions[0].version = 1;
        k->versions[0].created = k->created;
        k->n_versions = 1;
    }
    for (size_t i = 0; i < c->n_keys; i++)
        if (c->keys[i].n_versions == 0 && /* an imported key waiting for (or being deleted without) material */
            !(c->keys[i].external &&
              (c->keys[i].state == KS_PENDING_IMPORT || c->keys[i].state == KS_PENDING_DELETION))) {
            e = KMS_ERR_CORRUPT_STORE;
            kms_set_msg(msg, "key store is damaged: key %s has no key material", c->keys[i].id);
            goto out;
        }
    if (sqlite3_prepare_v2(c->db, "SELECT name, key_id, created, updated FROM aliases ORDER BY name", -1, &st,
                           NULL) != SQLITE_OK) {
        e = KMS_ERR_CORRUPT_STORE;
        kms_set_msg(msg, "key store is damaged: %s", sqlite3_errmsg(c->db));
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        kms_alias a;
        const char *kid = (const char *)sqlite3_column_text(st, 1);
        if (!kid || strlen(kid) != KMS_KEY_ID_LEN)
            continue;
        a.name = strdup((const char *)sqlite3_column_text(st, 0));
        memcpy(a.key_id, kid, KMS_KEY_ID_LEN + 1);
        a.created = sqlite3_column_int64(st, 2);
        a.updated = sqlite3_column_int64(st, 3);
        if (c->n_aliases == c->cap_aliases) {
            size_t nc = c->cap_aliases ? 2 * c->cap_aliases : 16;
            kms_alias *na = realloc(c->aliases, nc * sizeof *na);
            if (!na) {
                free(a.name);
                e = KMS_ERR_NOMEM;
                goto out;
            }
            c->aliases = na;
            c->cap_aliases = nc;
        }
        c->aliases[c->n_aliases++] = a;
    }
    e = kms_store_access_load(c, msg);
out:
    sqlite3_finalize(st);
    /* The data version and change counter of the snapshot just read, inside its transaction: read after
     * the COMMIT, a commit between the two would count as loaded without being so. */
    {
        sqlite3_stmt *dv;
        if (sqlite3_prepare_v2(c->db, "PRAGMA data_version", -1, &dv, NULL) == SQLITE_OK) {
            if (sqlite3_step(dv) == SQLITE_ROW)
                c->data_version = sqlite3_column_int64(dv, 0);
            sqlite3_finalize(dv);
        }
        (void)kms_changes_read(c->db, &c->change_count); /* -1 if absent: every move of data_version reloads */
        c->own_changes = false;
    }
    sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
    atomic_fetch_add(&c->generation, 1); /* whatever was read from the store before may be stale */
    return e;
}

/* Called under the core lock at the start of every call. PRAGMA data_version takes and drops a
 * SQLite read lock (two fcntl calls), so it is asked at most once per KMS_FRESHNESS_MS: a commit by
 * another process becomes visible to every call that starts more than KMS_FRESHNESS_MS after it. */
/* Whether the last data_version check is recent enough to skip one at now (no lock needed). */
static bool checked_recently(kms_core *c, int64_t now)
{
    int64_t checked = atomic_load(&c->dv_checked_ns);
    return checked && now - checked < (int64_t)KMS_FRESHNESS_MS * 1000000;
}

kms_err kms_store_reload_if_changed(kms_core *c, char **msg)
{
    int64_t now = efs_mono_ns(), v;
    int rc;
    if (checked_recently(c, now))
        return KMS_OK;
    if (!c->dv_stmt && sqlite3_prepare_v3(c->db, "PRAGMA data_version", -1, SQLITE_PREPARE_PERSISTENT, &c->dv_stmt,
                                          NULL) != SQLITE_OK)
        return db_err(c, msg, "data_version");
    /* The time is taken before the check: a commit after it is caught by the next check. */
    rc = sqlite3_step(c->dv_stmt);
    v = rc == SQLITE_ROW ? sqlite3_column_int64(c->dv_stmt, 0) : 0;
    sqlite3_reset(c->dv_stmt);
    if (rc != SQLITE_ROW)
        return KMS_OK; /* store busy: keep the tables, ask again at the next call */
    atomic_store(&c->dv_checked_ns, now);
    if (v == c->data_version && !c->own_changes)
        return KMS_OK;
    /* Another connection committed (this process's audit writer, its pruning, another process) or the
     * core wrote itself: reload only if what the core holds changed (changes.c). */
    if (kms_changes_settle(c, v) == KMS_CHANGES_NONE)
        return KMS_OK;
    return kms_store_load(c, msg);
}

void kms_store_note_own_writes(kms_core *c)
{
    if (c->own_changes && c->dv_stmt)
        (void)kms_changes_settle(c, c->data_version); /* NONE: adopted; RELOAD: the next check reloads */
}

kms_key *kms_find_key(kms_core *c, const char *id)
{
    if (!id)
        return NULL;
    if (c->key_index) {
        size_t mask = c->key_index_cap - 1;
        for (size_t s = (size_t)id_hash(id) & mask; c->key_index[s]; s = (s + 1) & mask)
            if (!strcmp(c->keys[c->key_index[s] - 1].id, id))
                return &c->keys[c->key_index[s] - 1];
        return NULL;
    }
    for (size_t i = 0; i < c->n_keys; i++)
        if (!strcmp(c->keys[i].id, id))
            return &c->keys[i];
    return NULL;
}

kms_alias *kms_find_alias(kms_core *c, const char *name)
{
    for (size_t i = 0; i < c->n_aliases; i++)
        if (!strcmp(c->aliases[i].name, name))
            return &c->aliases[i];
    return NULL;
}

/* After our own write, remember the data version so we do not reload what we already have. */
static void note_own_write(kms_core *c)
{
    (void)c; /* PRAGMA data_version does not change for the connection's own commits. */
}

/* ---- writes --------------------------------------------------------------------------------- */

static kms_err insert_version_row(kms_core *c, const kms_key *k, uint32_t version, int64_t created,
                                  int automatic, const uint8_t *material, size_t len, char **msg)
{
    uint8_t aad[KMS_MATERIAL_AAD_MAX], sealed[KMS_KEYMAT_MAX + SEAL_OVERHEAD];
    size_t aad_len = kms_material_aad(aad, k->id, version, k->spec, k->usage);
    sqlite3_stmt *st;
    int rc;

    if (!kms_keymat_len_ok(k->spec, len))
        return KMS_ERR_INTERNAL;
    seal(c->root_key, aad, aad_len, material, len, sealed);
    if (sqlite3_prepare_v2(c->db, "INSERT INTO key_versions(key_id, version, created, automatic, material) VALUES(?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(c, msg, "insert key material");
    sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_int64(st, 3, created);
    sqlite3_bind_int(st, 4, automatic);
    sqlite3_bind_blob(st, 5, sealed, (int)(len + SEAL_OVERHEAD), SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? KMS_OK : db_err(c, msg, "insert key material");
}

static kms_err write_key_row(kms_core *c, const kms_key *k, bool insert, char **msg)
{
    sqlite3_stmt *st;
    int rc;
    const char *sql = insert
        ? "INSERT INTO keys(description, state, deletion_date, pending_days, rotation_enabled,"
          " rotation_period, next_rotation, created, id, origin, expiration_model, valid_to, material_digest,"
          " key_spec, key_usage, seq) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
          " (SELECT COALESCE(MAX(seq),0)+1 FROM keys))"
        : "UPDATE keys SET description=?, state=?, deletion_date=?, pending_days=?, rotation_enabled=?,"
          " rotation_period=?, next_rotation=?, created=?, origin=?10, expiration_model=?11, valid_to=?12,"
          " material_digest=?13 WHERE id=?9";
    c->sweep_at = 0; /* its state or deadline may change with this write: kms_sweep_deletions looks again */
    if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(c, msg, "write key");
    sqlite3_bind_text(st, 1, k->description ? k->description : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, kms_awaiting_replicas(k) ? KMS_DB_STATE_PENDING_REPLICA_DELETION : (int)k->state);
    sqlite3_bind_int64(st, 3, k->deletion_date);
    sqlite3_bind_int(st, 4, k->pending_days);
    sqlite3_bind_int(st, 5, k->rotation_enabled);
    sqlite3_bind_int(st, 6, k->rotation_period);
    sqlite3_bind_int64(st, 7, k->next_rotation);
    sqlite3_bind_int64(st, 8, k->created);
    sqlite3_bind_text(st, 9, k->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, k->external ? "EXTERNAL" : k->hsm ? "AWS_CLOUDHSM" : "AWS_KMS", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 11, !k->external || (!k->n_versions && !k->has_digest) ? ""
                              : k->expires ? "KEY_MATERIAL_EXPIRES" : "KEY_MATERIAL_DOES_NOT_EXPIRE", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 12, k->valid_to);
    if (k->has_digest)
        sqlite3_bind_blob(st, 13, k->material_digest, 32, SQLITE_STATIC);
    if (insert) {
        sqlite3_bind_text(st, 14, kms_spec_name(k->spec), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 15, kms_usage_name(k->usage), -1, SQLITE_STATIC);
    }
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? KMS_OK : db_err(c, msg, "write key");
}

kms_err kms_store_insert_key(kms_core *c, const kms_key *k, const uint8_t *material, size_t len, char **msg)
{
    kms_err e;
    kms_key *slot;
    if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_err(c, msg, "begin");
    e = write_key_row(c, k, true, msg);
    if (!e && material) /* an imported key (Origin EXTERNAL) starts without material */
        e = insert_version_row(c, k, 1, k->created, 0, material, len, msg);
    if (!e && k->hsm) /* a custom key store's key: its material is in the token (cks.c) */
        e = kms_cks_write_key(c, k, msg);
    if (!e)
        e = kms_store_write_policy(c, k, msg);
    if (e || sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return e ? e : db_err(c, msg, "commit");
    }
    if (c->n_keys == c->cap_keys) {
        size_t nc = c->cap_keys ? 2 * c->cap_keys : 16;
        kms_key *nk = realloc(c->keys, nc * sizeof *nk);
        if (!nk)
            return kms_store_load(c, msg);
        c->keys = nk;
        c->cap_keys = nc;
    }
    slot = &c->keys[c->n_keys];
    *slot = *k;
    slot->description = strdup(k->description ? k->description : "");
    slot->versions = calloc(1, sizeof *slot->versions);
    slot->policy_text = k->policy_text ? strdup(k->policy_text) : NULL; /* compiled at first use */
    slot->policy = NULL;
    slot->grants = NULL;
    slot->n_grants = 0;
    if (!slot->description || !slot->versions || (k->policy_text && !slot->policy_text)) {
        free(slot->description);
        free(slot->versions);
        free(slot->policy_text);
        return kms_store_load(c, msg);
    }
    slot->n_versions = material || k->hsm ? 1 : 0;
    slot->versions[0].version = 1;
    slot->versions[0].created = k->created;
    c->n_keys++;
    index_append(c);
    note_own_write(c);
    return KMS_OK;
}

kms_err kms_store_add_version(kms_core *c, kms_key *k, int automatic, char **msg)
{
    uint8_t *material = sodium_malloc(32);
    uint32_t v = (uint32_t)k->n_versions + 1;
    int64_t now = kms_now(c);
    kms_version *nv;
    kms_err e;

    if (!material)
        return KMS_ERR_NOMEM;
    randombytes_buf(material, 32);
    nv = realloc(k->versions, (k->n_versions + 1) * sizeof *nv);
    if (!nv) {
        sodium_free(material);
        return KMS_ERR_NOMEM;
    }
    k->versions = nv;
    if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        sodium_free(material);
        return db_err(c, msg, "begin");
    }
    e = insert_version_row(c, k, v, now, automatic, material, 32, msg);
    if (!e)
        e = write_key_row(c, k, false, msg);
    if (e || sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        sodium_free(material);
        return e ? e : db_err(c, msg, "commit");
    }
    nv[k->n_versions].version = v;
    nv[k->n_versions].created = now;
    nv[k->n_versions].automatic = automatic;
    nv[k->n_versions].material = material;
    nv[k->n_versions].material_len = 32;
    nv[k->n_versions].gcm = NULL;
    nv[k->n_versions].pkey = NULL;
    nv[k->n_versions].pctx = NULL;
    sodium_mprotect_readonly(material);
    k->n_versions++;
    return KMS_OK;
}

kms_err kms_store_version_plain(kms_core *c, const kms_key *k, uint32_t version, uint8_t **out, size_t *len,
                                char **msg)
{
    sqlite3_stmt *st;
    uint8_t aad[KMS_MATERIAL_AAD_MAX], *m = NULL;
    size_t aad_len = kms_material_aad(aad, k->id, version, k->spec, k->usage), n = 0;
    *out = NULL;
    *len = 0;
    if (sqlite3_prepare_v2(c->db, "SELECT material FROM key_versions WHERE key_id=? AND version=?", -1, &st,
                           NULL) != SQLITE_OK)
        return db_err(c, msg, "read key material");
    sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) > (int)SEAL_OVERHEAD)
        n = (size_t)sqlite3_column_bytes(st, 0) - SEAL_OVERHEAD;
    m = n && kms_keymat_len_ok(k->spec, n) ? sodium_malloc(n) : NULL;
    if (!m || unseal(c->root_key, aad, aad_len, sqlite3_column_blob(st, 0), n + SEAL_OVERHEAD, m)) {
        sqlite3_finalize(st);
        sodium_free(m);
        kms_set_msg(msg, "key store is damaged: key material of key %s version %u fails authentication", k->id,
                    version);
        return KMS_ERR_CORRUPT_STORE;
    }
    sqlite3_finalize(st);
    *out = m;
    *len = n;
    return KMS_OK;
}

kms_err kms_store_put_version(kms_core *c, kms_key *k, int64_t created, int automatic, const uint8_t *material,
                              size_t len, char **msg)
{
    uint32_t v = (uint32_t)k->n_versions + 1;
    kms_version *nv = realloc(k->versions, (k->n_versions + 1) * sizeof *nv);
    kms_err e;
    if (!nv)
        return KMS_ERR_NOMEM;
    k->versions = nv;
    if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_err(c, msg, "begin");
    e = insert_version_row(c, k, v, created, automatic, material, len, msg);
    if (!e)
        e = write_key_row(c, k, false, msg);
    if (e || sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return e ? e : db_err(c, msg, "commit");
    }
    memset(&nv[k->n_versions], 0, sizeof nv[0]); /* material read back at first use */
    nv[k->n_versions].version = v;
    nv[k->n_versions].created = created;
    nv[k->n_versions].automatic = automatic;
    k->n_versions++;
    return KMS_OK;
}

kms_err kms_store_update_key(kms_core *c, const kms_key *k, char **msg)
{
    return write_key_row(c, k, false, msg);
}

static void drop_versions(kms_key *k)
{
    for (size_t i = 0; i < k->n_versions; i++) {
        kms_gcm_key_free(k->versions[i].gcm);
        sodium_free(k->versions[i].material);
    }
    free(k->versions);
    k->versions = NULL;
    k->n_versions = 0;
}

static kms_err delete_versions_row(kms_core *c, const kms_key *k, char **msg)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(c->db, "DELETE FROM key_versions WHERE key_id=?", -1, &st, NULL) != SQLITE_OK)
        return db_err(c, msg, "delete key material");
    sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? KMS_OK : db_err(c, msg, "delete key material");
}

kms_err kms_store_import_material(kms_core *c, kms_key *k, const uint8_t material[32], char **msg)
{
    kms_version *v = calloc(1, sizeof *v);
    uint8_t *m = sodium_malloc(32);
    int64_t now = kms_now(c);
    kms_err e;
    if (!v || !m) {
        free(v);
        sodium_free(m);
        return KMS_ERR_NOMEM;
    }
    memcpy(m, material, 32);
    if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        free(v);
        sodium_free(m);
        return db_err(c, msg, "begin");
    }
    e = delete_versions_row(c, k, msg);
    if (!e)
        e = insert_version_row(c, k, 1, now, 0, material, 32, msg);
    if (!e)
        e = write_key_row(c, k, false, msg);
    if (e || sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        free(v);
        sodium_free(m);
        return e ? e : db_err(c, msg, "commit");
    }
    drop_versions(k);
    v->version = 1;
    v->created = now;
    v->material = m;
    v->material_len = 32;
    sodium_mprotect_readonly(m);
    k->versions = v;
    k->n_versions = 1;
    return KMS_OK;
}

kms_err kms_store_delete_material(kms_core *c, kms_key *k, char **msg)
{
    kms_err e;
    if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_err(c, msg, "begin");
    e = delete_versions_row(c, k, msg);
    if (!e)
        e = write_key_row(c, k, false, msg);
    if (e || sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return e ? e : db_err(c, msg, "commit");
    }
    drop_versions(k); /* sodium_free wipes the material */
    return KMS_OK;
}

void kms_store_seal(kms_core *c, const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t n, uint8_t *out)
{
    seal(c->root_key, aad, aad_len, pt, n, out);
}

int kms_store_unseal(kms_core *c, const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t n, uint8_t *out)
{
    return unseal(c->root_key, aad, aad_len, in, n, out);
}

void kms_store_material_digest(kms_core *c, const uint8_t *material, size_t n, uint8_t out[32])
{
    /* BLAKE2b keyed with a subkey of the root key: reveals nothing about the material without the root key */
    uint8_t sub[32];
    crypto_generichash(sub, sizeof sub, (const uint8_t *)"envelopefs import digest v1", 27, c->root_key, 32);
    crypto_generichash(out, 32, material, n, sub, sizeof sub);
    sodium_memzero(sub, sizeof sub);
}

kms_err kms_store_destroy_key(kms_core *c, const char *key_id, char **msg)
{
    static const char *const sqls[] = {"DELETE FROM key_versions WHERE key_id=?", "DELETE FROM aliases WHERE key_id=?",
                                       "DELETE FROM tags WHERE key_id=?", "DELETE FROM grants WHERE key_id=?",
                                       "DELETE FROM key_policies WHERE key_id=?",
                                       "DELETE FROM custom_key_store_keys WHERE key_id=?",
                                       "DELETE FROM multi_region WHERE key_id=?", /* (mrk.c: kms_mrk_migrate) */
                                       "DELETE FROM keys WHERE id=?"};
    char id[KMS_KEY_ID_LEN + 1];
    snprintf(id, sizeof id, "%s", key_id);
    if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_err(c, msg, "begin");
    for (size_t i = 0; i < sizeof sqls / sizeof sqls[0]; i++) {
        sqlite3_stmt *st;
        int rc;
        if (sqlite3_prepare_v2(c->db, sqls[i], -1, &st, NULL) != SQLITE_OK) {
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            return db_err(c, msg, "destroy key");
        }
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) {
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            return db_err(c, msg, "destroy key");
        }
    }
    if (sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return db_err(c, msg, "commit");
    /* Drop it from memory too (wipes cached material). */
    for (size_t i = 0; i < c->n_keys; i++)
        if (!strcmp(c->keys[i].id, id)) {
            if (c->keys[i].hsm)
                kms_cks_key_destroyed(c, &c->keys[i]); /* its token object, when the store is connected */
            free_key(&c->keys[i]);
            memmove(&c->keys[i], &c->keys[i + 1], (c->n_keys - i - 1) * sizeof *c->keys);
            c->n_keys--;
            index_rebuild(c); /* the keys after it moved */
            break;
        }
    for (size_t i = 0; i < c->n_aliases;) {
        if (!strcmp(c->aliases[i].key_id, id)) {
            free(c->aliases[i].name);
            memmove(&c->aliases[i], &c->aliases[i + 1], (c->n_aliases - i - 1) * sizeof *c->aliases);
            c->n_aliases--;
        } else {
            i++;
        }
    }
    return KMS_OK;
}

/* The version's material, unsealed from the store on first use (locked memory); an asymmetric key's is
 * decoded into v->pkey at once and the DER wiped. */
static kms_err load_material(kms_core *c, kms_key *k, kms_version *v, char **msg)
{
    sqlite3_stmt *st;
    uint8_t aad[KMS_MATERIAL_AAD_MAX], *m;
    size_t aad_len, n = 0;
    int rc;
    kms_err e = KMS_OK;

    if (v->material || v->pkey)
        return KMS_OK;
    aad_len = kms_material_aad(aad, k->id, v->version, k->spec, k->usage);
    if (sqlite3_prepare_v2(c->db, "SELECT material FROM key_versions WHERE key_id=? AND version=?", -1, &st,
                           NULL) != SQLITE_OK)
        return db_err(c, msg, "read key material");
    sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, v->version);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) > (int)SEAL_OVERHEAD)
        n = (size_t)sqlite3_column_bytes(st, 0) - SEAL_OVERHEAD;
    /* The length is checked before unsealing: the output buffer holds exactly n bytes. */
    m = n && kms_keymat_len_ok(k->spec, n) ? sodium_malloc(n) : NULL;
    if (!m || unseal(c->root_key, aad, aad_len, sqlite3_column_blob(st, 0), n + SEAL_OVERHEAD, m) ||
        (kms_spec_is_asymmetric(k->spec) && kms_keymat_decode(k->spec, m, n, &v->pkey))) {
        kms_set_msg(msg, "key store is damaged: key material of key %s version %u fails authentication", k->id,
                v->version);
        sqlite3_finalize(st);
        sodium_free(m);
        return KMS_ERR_CORRUPT_STORE;
    }
    sqlite3_finalize(st);
    if (v->pkey) {
        sodium_free(m); /* sodium_free wipes */
        return e;
    }
    sodium_mprotect_readonly(m);
    v->material = m;
    v->material_len = n;
    return e;
}

kms_err kms_store_cipher(kms_core *c, kms_key *k, kms_version *v, kms_gcm_key **out, char **msg)
{
    kms_err e;
    if (k->spec != KMS_SPEC_SYMMETRIC)
        return KMS_ERR_INTERNAL; /* callers check the key's usage first */
    if (!v->gcm) {
        if ((e = load_material(c, k, v, msg)))
            return e;
        v->gcm = kms_gcm_key_new(v->material);
        if (!v->gcm)
            return KMS_ERR_NOMEM;
    }
    *out = v->gcm;
    return KMS_OK;
}

kms_err kms_store_pkey(kms_core *c, kms_key *k, kms_version *v, EVP_PKEY **out, char **msg)
{
    kms_err e;
    if (!kms_spec_is_asymmetric(k->spec))
        return KMS_ERR_INTERNAL;
    if ((e = load_material(c, k, v, msg)))
        return e;
    *out = v->pkey;
    return KMS_OK;
}

kms_err kms_store_material(kms_core *c, kms_key *k, kms_version *v, const uint8_t **out, size_t *len, char **msg)
{
    kms_err e;
    if (kms_spec_is_asymmetric(k->spec))
        return KMS_ERR_INTERNAL;
    if ((e = load_material(c, k, v, msg)))
        return e;
    *out = v->material;
    *len = v->material_len;
    return KMS_OK;
}

kms_err kms_store_put_alias(kms_core *c, const kms_alias *a, bool insert, char **msg)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(c->db,
                           insert ? "INSERT INTO aliases(key_id, created, updated, name) VALUES(?,?,?,?)"
                                  : "UPDATE aliases SET key_id=?, created=?, updated=? WHERE name=?",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(c, msg, "write alias");
    sqlite3_bind_text(st, 1, a->key_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, a->created);
    sqlite3_bind_int64(st, 3, a->updated);
    sqlite3_bind_text(st, 4, a->name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_err(c, msg, "write alias");
    if (insert) {
        if (c->n_aliases == c->cap_aliases) {
            size_t nc = c->cap_aliases ? 2 * c->cap_aliases : 16;
            kms_alias *na = realloc(c->aliases, nc * sizeof *na);
            if (!na)
                return kms_store_load(c, msg);
            c->aliases = na;
            c->cap_aliases = nc;
        }
        c->aliases[c->n_aliases] = *a;
        c->aliases[c->n_aliases].name = strdup(a->name);
        if (!c->aliases[c->n_aliases].name)
            return kms_store_load(c, msg);
        c->n_aliases++;
    } else {
        kms_alias *x = kms_find_alias(c, a->name);
        if (x) {
            memcpy(x->key_id, a->key_id, sizeof x->key_id);
            x->updated = a->updated;
        }
    }
    return KMS_OK;
}

kms_err kms_store_delete_alias(kms_core *c, const char *name, char **msg)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(c->db, "DELETE FROM aliases WHERE name=?", -1, &st, NULL) != SQLITE_OK)
        return db_err(c, msg, "delete alias");
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_err(c, msg, "delete alias");
    for (size_t i = 0; i < c->n_aliases; i++)
        if (!strcmp(c->aliases[i].name, name)) {
            free(c->aliases[i].name);
            memmove(&c->aliases[i], &c->aliases[i + 1], (c->n_aliases - i - 1) * sizeof *c->aliases);
            c->n_aliases--;
            break;
        }
    return KMS_OK;
}

kms_err kms_store_set_tag(kms_core *c, const char *key_id, const char *k, const char *v, char **msg)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(c->db, "INSERT OR REPLACE INTO tags(key_id, tag_key, tag_value) VALUES(?,?,?)", -1,
                           &st, NULL) != SQLITE_OK)
        return db_err(c, msg, "write tag");
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, v, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? KMS_OK : db_err(c, msg, "write tag");
}

kms_err kms_store_delete_tag(kms_core *c, const char *key_id, const char *k, char **msg)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(c->db, "DELETE FROM tags WHERE key_id=? AND tag_key=?", -1, &st, NULL) != SQLITE_OK)
        return db_err(c, msg, "delete tag");
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? KMS_OK : db_err(c, msg, "delete tag");
}

/* ---- access keys ---------------------------------------------------------------------------- */

kms_err kms_core_create_access_key(kms_core *c, const char *account, const char *user, char **akid,
                                   char **secret)
{
    static const char up[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char id[21], *sec;
    uint8_t sealed[40 + SEAL_OVERHEAD], aad[32];
    sqlite3_stmt *st;
    int rc;
    kms_err e = KMS_OK;

    *akid = *secret = NULL;
    /* IAM's user-name characters: the user becomes part of the principal ARN policies name */
    if (!account || strlen(account) != 12 || strspn(account, "0123456789") != 12 || !user || !*user ||
        strlen(user) > 63 ||
        strspn(user, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+=,.@_-") != strlen(user))
        return KMS_ERR_VALIDATION;
    sec = malloc(41);
    if (!sec)
        return KMS_ERR_NOMEM;
    memcpy(id, "AKIA", 4);
    for (int i = 4; i < 20; i++)
        id[i] = up[randombytes_uniform(32)];
    id[20] = 0;
    for (int i = 0; i < 40; i++)
        sec[i] = b64[randombytes_uniform(64)];
    sec[40] = 0;
    memcpy(aad, id, 20);
    pthread_mutex_lock(&c->lock);
    seal(c->root_key, aad, 20, (const uint8_t *)sec, 40, sealed);
    if (sqlite3_prepare_v2(c->db, "INSERT INTO access_keys(id, account, user, secret, created) VALUES(?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        e = KMS_ERR_IO;
    } else {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, user, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 4, sealed, sizeof sealed, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, kms_now(c));
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            e = KMS_ERR_IO;
    }
    pthread_mutex_unlock(&c->lock);
    if (e) {
        kms_secret_str_free(sec);
        return e;
    }
    *akid = strdup(id);
    if (!*akid) {
        kms_secret_str_free(sec);
        return KMS_ERR_NOMEM;
    }
    *secret = sec;
    return KMS_OK;
}

kms_err kms_core_lookup_access_key(kms_core *c, const char *akid, char *secret_out, size_t secret_cap,
                                   char *account_out, size_t account_cap, char *user_out, size_t user_cap)
{
    sqlite3_stmt *st;
    kms_err e = KMS_ERR_UNRECOGNIZED_CLIENT;
    if (!akid || strlen(akid) != 20 || secret_cap < 41)
        return KMS_ERR_UNRECOGNIZED_CLIENT;
    pthread_mutex_lock(&c->lock);
    if (sqlite3_prepare_v2(c->db, "SELECT account, user, secret FROM access_keys WHERE id=?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, akid, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            if (sqlite3_column_bytes(st, 2) == 40 + SEAL_OVERHEAD &&
                unseal(c->root_key, (const uint8_t *)akid, 20, sqlite3_column_blob(st, 2),
                       (size_t)sqlite3_column_bytes(st, 2), (uint8_t *)secret_out) == 0) {
                secret_out[40] = 0;
                if (account_out)
                    snprintf(account_out, account_cap, "%s", (const char *)sqlite3_column_text(st, 0));
                if (user_out)
                    snprintf(user_out, user_cap, "%s", (const char *)sqlite3_column_text(st, 1));
                e = KMS_OK;
            } else {
                e = KMS_ERR_CORRUPT_STORE;
            }
        }
        sqlite3_finalize(st);
    } else {
        e = KMS_ERR_INTERNAL;
    }
    pthread_mutex_unlock(&c->lock);
    return e;
}

/* ---- audit retention ------------------------------------------------------------------------ */

kms_err kms_core_audit_retention(kms_core *c, const kms_audit_retention *set, kms_audit_status *status)
{
    kms_audit_retention r;
    kms_err e = KMS_OK;
    if (set && !kms_retention_valid(set))
        return KMS_ERR_VALIDATION;
    pthread_mutex_lock(&c->lock);
    kms_trail_flush_locked(c);
    if (set && kms_retention_set(c->db, set))
        e = KMS_ERR_IO;
    else if (kms_retention_get(c->db, &r) || kms_audit_prune(c->db, &r, c->audit_sk, NULL, NULL) < 0)
        e = KMS_ERR_IO;
    else if (status) {
        status->retention = r;
        if (kms_audit_stat(c->db, status))
            e = KMS_ERR_IO;
    }
    pthread_mutex_unlock(&c->lock);
    return e;
}

kms_err kms_core_lookup_audit(kms_core *c, const kms_audit_query *q, kms_audit_event **out, size_t *n,
                              int64_t *next)
{
    int rc;
    *out = NULL;
    *n = 0;
    *next = 0;
    if (!q->max_results || q->max_results > KMS_AUDIT_MAX_RESULTS ||
        (q->start_time && q->end_time && q->start_time > q->end_time))
        return KMS_ERR_VALIDATION;
    pthread_mutex_lock(&c->lock);
    kms_trail_flush_locked(c);
    rc = kms_audit_lookup(c->db, q, out, n, next);
    pthread_mutex_unlock(&c->lock);
    return rc ? KMS_ERR_IO : KMS_OK;
}

kms_err kms_core_list_access_keys(kms_core *c, const char *user, kms_access_key_info **out, size_t *n)
{
    sqlite3_stmt *st;
    kms_access_key_info *v = NULL;
    size_t len = 0, cap = 0;
    kms_err e = KMS_OK;
    int rc;

    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&c->lock);
    if (sqlite3_prepare_v2(c->db,
                           "SELECT id, account, user, created FROM access_keys WHERE ?1 IS NULL OR user=?1"
                           " ORDER BY created, id",
                           -1, &st, NULL) != SQLITE_OK) {
        pthread_mutex_unlock(&c->lock);
        return KMS_ERR_IO;
    }
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC); /* NULL binds NULL: every user */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        kms_access_key_info *k;
        if (len == cap) {
            size_t nc = cap ? 2 * cap : 8;
            kms_access_key_info *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                e = KMS_ERR_NOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        k = &v[len++];
        memset(k, 0, sizeof *k);
        snprintf(k->id, sizeof k->id, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(k->account, sizeof k->account, "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(k->user, sizeof k->user, "%s", (const char *)sqlite3_column_text(st, 2));
        k->created = sqlite3_column_int64(st, 3);
    }
    if (!e && rc != SQLITE_DONE)
        e = KMS_ERR_IO;
    sqlite3_finalize(st);
    pthread_mutex_unlock(&c->lock);
    if (e) {
        free(v);
        return e;
    }
    *out = v;
    *n = len;
    return KMS_OK;
}

kms_err kms_core_delete_access_key(kms_core *c, const char *akid)
{
    sqlite3_stmt *st;
    kms_err e = KMS_OK;
    if (!akid || strlen(akid) != 20)
        return KMS_ERR_NOT_FOUND;
    pthread_mutex_lock(&c->lock);
    if (sqlite3_prepare_v2(c->db, "DELETE FROM access_keys WHERE id=?", -1, &st, NULL) != SQLITE_OK) {
        e = KMS_ERR_IO;
    } else {
        sqlite3_bind_text(st, 1, akid, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            e = KMS_ERR_IO;
        else if (sqlite3_changes(c->db) == 0)
            e = KMS_ERR_NOT_FOUND;
        sqlite3_finalize(st);
    }
    if (!e) /* this process's own commits do not move PRAGMA data_version: tell its caches here */
        atomic_fetch_add(&c->generation, 1);
    pthread_mutex_unlock(&c->lock);
    return e;
}

uint64_t kms_core_generation(kms_core *c)
{
    if (!checked_recently(c, efs_mono_ns())) {
        char *msg = NULL;
        pthread_mutex_lock(&c->lock);
        /* A failure (store busy, unreadable) keeps the tables; the next call reports it, if lasting. */
        (void)kms_store_reload_if_changed(c, &msg);
        pthread_mutex_unlock(&c->lock);
        free(msg);
    }
    return atomic_load(&c->generation);
}

void kms_secret_str_free(char *s)
{
    if (!s)
        return;
    sodium_memzero(s, strlen(s));
    free(s);
}
