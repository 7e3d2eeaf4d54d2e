/*
 * cks.c — custom key stores of type AWS_CLOUDHSM over a PKCS#11 token (kms/hsm.c): CreateCustomKeyStore,
 * ConnectCustomKeyStore, DisconnectCustomKeyStore, DescribeCustomKeyStores, UpdateCustomKeyStore,
 * DeleteCustomKeyStore, and the key operations of keys that live in one (CreateKey CustomKeyStoreId,
 * Encrypt, Decrypt, GenerateDataKey (and WithoutPlaintext), ReEncrypt inside the token, DescribeKey's CustomKeyStoreId and
 * CloudHsmClusterId).
 *
 * A CloudHsmClusterId names a configured token: the clusters file ($ENVELOPEFS_HSM_CLUSTERS, else
 * STORE/hsm-clusters), one line per cluster "CLUSTER-ID MODULE-PATH TOKEN-LABEL" (the label is the rest of
 * the line; '#' starts a comment). KeyStorePassword is the token's user PIN, kept in table
 * custom_key_stores sealed under the store's root key (AAD "envelopefs-cks-pin-v1" ‖ store id), unsealed into
 * locked memory only to log in, and never in a message, a trail record or a response.
 *
 * ConnectionState is the store's (table custom_key_stores, shared by every process on it); a process
 * logs in to the token lazily, at the first use of a CONNECTED store, and logs out when it sees the store
 * DISCONNECTED. A key in a custom key store is a keys row with origin AWS_CLOUDHSM, a row in
 * custom_key_store_keys, and no key_versions row: its one version is a token object (CKA_ID = the key's 16
 * raw id bytes, CKA_LABEL = its id), and its ciphertext blobs are the usual format (docs/FORMAT.md) sealed by
 * CKM_AES_GCM in the token with the blob header ‖ canonical encryption context as AAD.
 *
 * Called with the core lock held.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "authz.h"
#include "blob.h"
#include "common/jsonb64.h"
#include "ectx.h"
#include "hsm.h"
#include "internal.h"
#include "oputil.h"

#define fail kms_op_fail
#define CKS_MAX_PER_ACCOUNT 10
#define PIN_AAD "envelopefs-cks-pin-v1"

static const char CKS_SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS custom_key_stores(id TEXT PRIMARY KEY, account TEXT NOT NULL, name TEXT NOT NULL,"
    " type TEXT NOT NULL, cluster_id TEXT NOT NULL, trust_anchor TEXT NOT NULL, pin BLOB NOT NULL,"
    " state TEXT NOT NULL, error_code TEXT, created INTEGER NOT NULL, seq INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS custom_key_store_keys(key_id TEXT PRIMARY KEY, custom_key_store_id TEXT NOT NULL);"
    "INSERT OR IGNORE INTO meta(k, v) VALUES('feature.custom_key_stores', '1');";

kms_err kms_cks_migrate(sqlite3 *db, char **msg)
{
    return kms_schema_add(db, CKS_SCHEMA, "custom_key_stores tables", msg);
}

/* This process's logins, one per connected store it has used. */
struct kms_cks_conn {
    char id[KMS_CKS_ID_LEN + 1];
    hsm_token *tok;
};

void kms_cks_free(kms_core *c)
{
    for (size_t i = 0; i < c->n_cks_conns; i++)
        hsm_close(c->cks_conns[i].tok);
    free(c->cks_conns);
    c->cks_conns = NULL;
    c->n_cks_conns = 0;
}

static void conn_drop(kms_core *c, const char *id)
{
    for (size_t i = 0; i < c->n_cks_conns; i++)
        if (!strcmp(c->cks_conns[i].id, id)) {
            hsm_close(c->cks_conns[i].tok);
            c->cks_conns[i] = c->cks_conns[--c->n_cks_conns];
            return;
        }
}

static hsm_token *conn_find(kms_core *c, const char *id)
{
    for (size_t i = 0; i < c->n_cks_conns; i++)
        if (!strcmp(c->cks_conns[i].id, id))
            return c->cks_conns[i].tok;
    return NULL;
}

/* ---- the clusters file ---------------------------------------------------------------------- */

static bool valid_cluster_id(const char *s)
{
    size_t n = strlen(s);
    if (n < 19 || n > 24 || strncmp(s, "cluster-", 8))
        return false;
    for (const char *p = s + 8; *p; p++)
        if (!isalpha((unsigned char)*p) && !(*p >= '2' && *p <= '7'))
            return false;
    return true;
}

/* The module path and token label configured for cluster (false: none). */
static bool cluster_lookup(kms_core *c, const char *cluster, char *module, size_t mcap, char *label, size_t lcap)
{
    const char *env = getenv("ENVELOPEFS_HSM_CLUSTERS");
    char path[4096], line[4096];
    bool found = false;
    FILE *f;
    if (env && *env)
        snprintf(path, sizeof path, "%s", env);
    else
        snprintf(path, sizeof path, "%s/hsm-clusters", c->dir);
    if (!(f = fopen(path, "re")))
        return false;
    while (!found && fgets(line, sizeof line, f)) {
        char *p = line, *id, *mod, *lab, *end;
        if ((end = strchr(p, '#')))
            *end = 0;
        end = p + strlen(p);
        while (end > p && isspace((unsigned char)end[-1]))
            *--end = 0;
        while (isspace((unsigned char)*p))
            p++;
        id = p;
        p += strcspn(p, " \t");
        if (!*p)
            continue;
        *p++ = 0;
        p += strspn(p, " \t");
        mod = p;
        p += strcspn(p, " \t");
        if (!*p)
            continue;
        *p++ = 0;
        lab = p + strspn(p, " \t");
        if (strcmp(id, cluster) || !*lab)
            continue;
        snprintf(module, mcap, "%s", mod);
        snprintf(label, lcap, "%s", lab);
        found = true;
    }
    fclose(f);
    return found;
}

/* ---- rows ------------------------------------------------------------------------------------ */

struct cks_row {
    char id[KMS_CKS_ID_LEN + 1];
    char account[16];
    char name[257];
    char cluster[32];
    char state[16];
    char error_code[32];
    char *trust_anchor; /* malloc'd */
    uint8_t pin_sealed[32 + KMS_SEAL_OVERHEAD];
    size_t pin_sealed_len;
    int64_t created;
};

#define ROW_COLS "id, account, name, cluster_id, state, error_code, trust_anchor, pin, created"

static void row_read(sqlite3_stmt *st, struct cks_row *r)
{
    const char *s;
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", (s = (const char *)sqlite3_column_text(st, 0)) ? s : "");
    snprintf(r->account, sizeof r->account, "%s", (s = (const char *)sqlite3_column_text(st, 1)) ? s : "");
    snprintf(r->name, sizeof r->name, "%s", (s = (const char *)sqlite3_column_text(st, 2)) ? s : "");
    snprintf(r->cluster, sizeof r->cluster, "%s", (s = (const char *)sqlite3_column_text(st, 3)) ? s : "");
    snprintf(r->state, sizeof r->state, "%s", (s = (const char *)sqlite3_column_text(st, 4)) ? s : "");
    snprintf(r->error_code, sizeof r->error_code, "%s", (s = (const char *)sqlite3_column_text(st, 5)) ? s : "");
    r->trust_anchor = strdup((s = (const char *)sqlite3_column_text(st, 6)) ? s : "");
    if ((size_t)sqlite3_column_bytes(st, 7) <= sizeof r->pin_sealed) {
        r->pin_sealed_len = (size_t)sqlite3_column_bytes(st, 7);
        if (r->pin_sealed_len)
            memcpy(r->pin_sealed, sqlite3_column_blob(st, 7), r->pin_sealed_len);
    }
    r->created = sqlite3_column_int64(st, 8);
}

static void row_clear(struct cks_row *r) { free(r->trust_anchor); r->trust_anchor = NULL; }

/* The store with this id (in any account when account is NULL): 1 found, 0 not, -1 error. */
static int row_get(kms_core *c, const char *id, const char *account, struct cks_row *r)
{
    sqlite3_stmt *st;
    int found = 0;
    if (sqlite3_prepare_v2(c->db, "SELECT " ROW_COLS " FROM custom_key_stores WHERE id=?1 AND (?2 IS NULL OR account=?2)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (account)
        sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        row_read(st, r);
        found = 1;
    }
    sqlite3_finalize(st);
    return found;
}

static kms_err exec_bind(kms_core *c, const char *sql, const char *const *texts, size_t n, char **msg)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK) {
        kms_set_msg(msg, "key store error (custom_key_stores): %s", sqlite3_errmsg(c->db));
        return KMS_ERR_IO;
    }
    for (size_t i = 0; i < n; i++)
        if (texts[i])
            sqlite3_bind_text(st, (int)i + 1, texts[i], -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        kms_set_msg(msg, "key store error (custom_key_stores): %s", sqlite3_errmsg(c->db));
        return KMS_ERR_IO;
    }
    return KMS_OK;
}

static kms_err set_state(kms_core *c, const char *id, const char *state, const char *code, char **msg)
{
    return exec_bind(c, "UPDATE custom_key_stores SET state=?2, error_code=?3 WHERE id=?1",
                     (const char *const[]){id, state, code}, 3, msg);
}

/* ---- logging in ------------------------------------------------------------------------------ */

/* Open the store's token with its PIN; *code says why not. */
static kms_err login(kms_core *c, const struct cks_row *r, hsm_token **tok, const char **code, char **msg)
{
    char module[4096], label[256];
    uint8_t aad[sizeof PIN_AAD - 1 + KMS_CKS_ID_LEN];
    size_t aad_len = sizeof PIN_AAD - 1 + strlen(r->id), pin_len;
    char *pin;
    kms_err e;
    *tok = NULL;
    if (!cluster_lookup(c, r->cluster, module, sizeof module, label, sizeof label)) {
        *code = HSM_CODE_NOT_FOUND;
        kms_set_msg(msg, "HSM cluster %s is not configured (clusters file)", r->cluster);
        return KMS_ERR_HSM_NOT_FOUND;
    }
    if (r->pin_sealed_len <= KMS_SEAL_OVERHEAD) {
        *code = HSM_CODE_INTERNAL;
        kms_set_msg(msg, "custom key store %s has no sealed password", r->id);
        return KMS_ERR_CORRUPT_STORE;
    }
    pin_len = r->pin_sealed_len - KMS_SEAL_OVERHEAD;
    memcpy(aad, PIN_AAD, sizeof PIN_AAD - 1);
    memcpy(aad + sizeof PIN_AAD - 1, r->id, strlen(r->id));
    if (!(pin = sodium_malloc(pin_len + 1)))
        return KMS_ERR_NOMEM;
    if (kms_store_unseal(c, aad, aad_len, r->pin_sealed, r->pin_sealed_len, (uint8_t *)pin)) {
        sodium_free(pin);
        *code = HSM_CODE_INTERNAL;
        kms_set_msg(msg, "key store is damaged: the password of custom key store %s fails authentication", r->id);
        return KMS_ERR_CORRUPT_STORE;
    }
    e = hsm_open(module, label, pin, pin_len, tok, code, msg);
    sodium_free(pin); /* wipes */
    return e;
}

/* The token of a key's store for a cryptographic operation: KMSInvalidStateException (the key is
 * Unavailable) unless the store is CONNECTED and this process can log in. */
static kms_err key_token(struct op_ctx *x, const kms_key *k, hsm_token **tok)
{
    kms_core *c = x->core;
    struct cks_row r;
    const char *code = NULL;
    char arn[160];
    int found = row_get(c, k->cks_id, NULL, &r);
    kms_err e;
    kms_op_key_arn(c, k, arn, sizeof arn);
    if (found < 0)
        return fail(x, KMS_ERR_IO, "key store error (custom_key_stores): %s", sqlite3_errmsg(c->db));
    if (!found)
        return fail(x, KMS_ERR_INVALID_STATE, "%s is unavailable: its custom key store %s does not exist", arn, k->cks_id);
    if (strcmp(r.state, "CONNECTED")) {
        conn_drop(c, r.id);
        row_clear(&r);
        return fail(x, KMS_ERR_INVALID_STATE, "%s is unavailable: its custom key store %s is not connected", arn,
                    k->cks_id);
    }
    if ((*tok = conn_find(c, r.id))) {
        row_clear(&r);
        return KMS_OK;
    }
    e = login(c, &r, tok, &code, x->msg);
    if (!e) {
        struct kms_cks_conn *n = realloc(c->cks_conns, (c->n_cks_conns + 1) * sizeof *n);
        if (!n) {
            hsm_close(*tok);
            row_clear(&r);
            return KMS_ERR_NOMEM;
        }
        c->cks_conns = n;
        snprintf(n[c->n_cks_conns].id, sizeof n[c->n_cks_conns].id, "%s", r.id);
        n[c->n_cks_conns++].tok = *tok;
    }
    row_clear(&r);
    if (e && e != KMS_ERR_NOMEM)
        return fail(x, KMS_ERR_INVALID_STATE, "%s is unavailable: custom key store %s cannot reach its HSM (%s)", arn,
                    k->cks_id, code ? code : HSM_CODE_INTERNAL);
    return e;
}

/* ---- operations on the stores ---------------------------------------------------------------- */

static kms_err get_password(struct op_ctx *x, json_t *in, const char **pw)
{
    kms_err e = kms_op_get_str(x, in, "KeyStorePassword", false, pw);
    if (!e && *pw && (strlen(*pw) < 7 || strlen(*pw) > 32))
        return fail(x, KMS_ERR_VALIDATION, "1 validation error detected: Value at 'keyStorePassword' failed to satisfy "
                                           "constraint: Member must have length between 7 and 32");
    return e;
}

static kms_err get_name(struct op_ctx *x, json_t *in, const char *field, bool required, const char **name)
{
    kms_err e = kms_op_get_str(x, in, field, required, name);
    if (!e && *name && (!**name || strlen(*name) > 256))
        return fail(x, KMS_ERR_VALIDATION, "1 validation error detected: Value at '%c%s' failed to satisfy "
                                           "constraint: Member must have length between 1 and 256",
                    field[0] - 'A' + 'a', field + 1);
    return e;
}

static kms_err get_cluster(struct op_ctx *x, json_t *in, bool required, const char **cluster)
{
    kms_err e = kms_op_get_str(x, in, "CloudHsmClusterId", required, cluster);
    if (!e && *cluster && !valid_cluster_id(*cluster))
        return fail(x, KMS_ERR_VALIDATION, "1 validation error detected: Value '%.64s' at 'cloudHsmClusterId' failed "
                                           "to satisfy constraint: Member must satisfy regular expression pattern: "
                                           "cluster-[2-7a-zA-Z]{11,16}", *cluster);
    return e;
}

/* Whether a store of account other than `except` uses name / cluster. */
static bool taken(kms_core *c, const char *column, const char *value, const char *account, const char *except)
{
    char sql[160];
    sqlite3_stmt *st;
    bool t = false;
    snprintf(sql, sizeof sql, "SELECT 1 FROM custom_key_stores WHERE %s=?1 AND (?2 IS NULL OR account=?2) AND id<>?3",
             column);
    if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK)
        return true;
    sqlite3_bind_text(st, 1, value, -1, SQLITE_STATIC);
    if (account)
        sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, except ? except : "", -1, SQLITE_STATIC);
    t = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return t;
}

static void seal_pin(kms_core *c, const char *id, const char *pw, uint8_t *out)
{
    uint8_t aad[sizeof PIN_AAD - 1 + KMS_CKS_ID_LEN];
    memcpy(aad, PIN_AAD, sizeof PIN_AAD - 1);
    memcpy(aad + sizeof PIN_AAD - 1, id, strlen(id));
    kms_store_seal(c, aad, sizeof PIN_AAD - 1 + strlen(id), (const uint8_t *)pw, strlen(pw), out);
}

kms_err kms_op_create_custom_key_store(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_core *c = x->core;
    const char *name, *type, *cluster, *anchor, *pw, *acct = kms_caller_account(c, x->caller);
    char module[4096], label[256], id[KMS_CKS_ID_LEN + 1], created[24];
    uint8_t raw[9], sealed[32 + KMS_SEAL_OVERHEAD];
    sqlite3_stmt *st;
    int64_t count = 0;
    kms_err e;
    int rc;

    if ((e = get_name(x, in, "CustomKeyStoreName", true, &name)) || (e = kms_op_get_str(x, in, "CustomKeyStoreType", false, &type)))
        return e;
    if (type && !strcmp(type, "EXTERNAL_KEY_STORE"))
        return fail(x, KMS_ERR_UNSUPPORTED_OPERATION,
                    "CustomKeyStoreType EXTERNAL_KEY_STORE is not supported: this key service has AWS_CLOUDHSM key "
                    "stores over a PKCS#11 token only");
    if ((e = get_cluster(x, in, true, &cluster)) || (e = kms_op_get_str(x, in, "TrustAnchorCertificate", true, &anchor)) ||
        (e = get_password(x, in, &pw)))
        return e;
    if (!pw)
        return fail(x, KMS_ERR_VALIDATION, "KeyStorePassword is required for an AWS_CLOUDHSM key store");
    if (!*anchor || strlen(anchor) > 5000)
        return fail(x, KMS_ERR_VALIDATION, "1 validation error detected: Value at 'trustAnchorCertificate' failed to "
                                           "satisfy constraint: Member must have length between 1 and 5000");
    if ((e = kms_authorize(c, x->caller, x->operation, NULL)))
        return e;
    if (taken(c, "name", name, acct, NULL))
        return fail(x, KMS_ERR_CKS_NAME_IN_USE, "A custom key store named %s already exists in this account", name);
    if (taken(c, "cluster_id", cluster, NULL, NULL))
        return fail(x, KMS_ERR_HSM_IN_USE, "HSM cluster %s is already associated with a custom key store", cluster);
    if (!cluster_lookup(c, cluster, module, sizeof module, label, sizeof label))
        return fail(x, KMS_ERR_HSM_NOT_FOUND,
                    "HSM cluster %s is not configured: add \"%s MODULE-PATH TOKEN-LABEL\" to the clusters file "
                    "($ENVELOPEFS_HSM_CLUSTERS or STORE/hsm-clusters)", cluster, cluster);
    if (sqlite3_prepare_v2(c->db, "SELECT count(*) FROM custom_key_stores WHERE account=?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, acct, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            count = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    if (count >= CKS_MAX_PER_ACCOUNT)
        return fail(x, KMS_ERR_LIMIT_EXCEEDED, "An account may have at most %d custom key stores", CKS_MAX_PER_ACCOUNT);
    randombytes_buf(raw, sizeof raw);
    memcpy(id, "cks-", 4);
    for (int i = 0; i < 17; i++)
        id[4 + i] = "0123456789abcdef"[i % 2 ? raw[i / 2] & 15 : raw[i / 2] >> 4];
    id[KMS_CKS_ID_LEN] = 0;
    seal_pin(c, id, pw, sealed);
    snprintf(created, sizeof created, "%lld", (long long)kms_now(c));
    if (sqlite3_prepare_v2(c->db,
                           "INSERT INTO custom_key_stores(id, account, name, type, cluster_id, trust_anchor, pin, state,"
                           " error_code, created, seq) VALUES(?,?,?,'AWS_CLOUDHSM',?,?,?,'DISCONNECTED',NULL,?,"
                           " (SELECT COALESCE(MAX(seq),0)+1 FROM custom_key_stores))",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(x, KMS_ERR_IO, "key store error (custom_key_stores): %s", sqlite3_errmsg(c->db));
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, acct, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, cluster, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, anchor, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, sealed, (int)(strlen(pw) + KMS_SEAL_OVERHEAD), SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, kms_now(c));
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return fail(x, KMS_ERR_IO, "key store error (custom_key_stores): %s", sqlite3_errmsg(c->db));
    *out = json_pack("{s:s}", "CustomKeyStoreId", id);
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}

/* CustomKeyStoreId → the caller's account's store (CustomKeyStoreNotFoundException). */
static kms_err resolve_store(struct op_ctx *x, json_t *in, struct cks_row *r)
{
    const char *id;
    int found;
    kms_err e = kms_op_get_str(x, in, "CustomKeyStoreId", true, &id);
    if (e)
        return e;
    if (!*id || strlen(id) > 64)
        return fail(x, KMS_ERR_VALIDATION, "1 validation error detected: Value at 'customKeyStoreId' failed to "
                                           "satisfy constraint: Member must have length between 1 and 64");
    found = row_get(x->core, id, kms_caller_account(x->core, x->caller), r);
    if (found < 0)
        return fail(x, KMS_ERR_IO, "key store error (custom_key_stores): %s", sqlite3_errmsg(x->core->db));
    if (!found)
        return fail(x, KMS_ERR_CKS_NOT_FOUND, "Custom key store %s does not exist in this account", id);
    return kms_authorize(x->core, x->caller, x->operation, NULL);
}

kms_err kms_op_connect_custom_key_store(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_core *c = x->core;
    struct cks_row r;
    hsm_token *tok = NULL;
    const char *code = NULL;
    char *why = NULL;
    kms_err e = resolve_store(x, in, &r);
    if (e)
        return e;
    if (!strcmp(r.state, "FAILED")) {
        row_clear(&r);
        return fail(x, KMS_ERR_CKS_INVALID_STATE,
                    "Custom key store %s is in the FAILED state (%s): disconnect it, then connect it again", r.id,
                    r.error_code);
    }
    if (!strcmp(r.state, "CONNECTED") && conn_find(c, r.id)) {
        row_clear(&r);
        *out = json_object();
        return KMS_OK;
    }
    conn_drop(c, r.id);
    e = login(c, &r, &tok, &code, &why);
    if (e == KMS_ERR_NOMEM || e == KMS_ERR_CORRUPT_STORE) {
        row_clear(&r);
        kms_set_msg(x->msg, "%s", why ? why : "out of memory");
        free(why);
        return e;
    }
    if (e) { /* as AWS: the call succeeds, the store is FAILED with the reason (DescribeCustomKeyStores) */
        e = set_state(c, r.id, "FAILED", code ? code : HSM_CODE_INTERNAL, x->msg);
    } else {
        struct kms_cks_conn *n = realloc(c->cks_conns, (c->n_cks_conns + 1) * sizeof *n);
        if (!n) {
            hsm_close(tok);
            e = KMS_ERR_NOMEM;
        } else {
            c->cks_conns = n;
            snprintf(n[c->n_cks_conns].id, sizeof n[c->n_cks_conns].id, "%s", r.id);
            n[c->n_cks_conns++].tok = tok;
            e = set_state(c, r.id, "CONNECTED", NULL, x->msg);
        }
    }
    free(why);
    row_clear(&r);
    if (!e)
        *out = json_object();
    return e;
}

kms_err kms_op_disconnect_custom_key_store(struct op_ctx *x, json_t *in, json_t **out)
{
    struct cks_row r;
    kms_err e = resolve_store(x, in, &r);
    if (e)
        return e;
    conn_drop(x->core, r.id);
    e = set_state(x->core, r.id, "DISCONNECTED", NULL, x->msg);
    row_clear(&r);
    if (!e)
        *out = json_object();
    return e;
}

static json_t *entry(const struct cks_row *r)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s}", "CustomKeyStoreId", r->id, "CustomKeyStoreName",
                          r->name, "CloudHsmClusterId", r->cluster, "TrustAnchorCertificate",
                          r->trust_anchor ? r->trust_anchor : "", "ConnectionState", r->state, "CreationDate",
                          (json_int_t)r->created, "CustomKeyStoreType", "AWS_CLOUDHSM");
    if (o && !strcmp(r->state, "FAILED") && r->error_code[0])
        json_object_set_new(o, "ConnectionErrorCode", json_string(r->error_code));
    return o;
}

kms_err kms_op_describe_custom_key_stores(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_core *c = x->core;
    const char *id, *name, *acct = kms_caller_account(c, x->caller);
    size_t start, limit, total = 0, i = 0;
    sqlite3_stmt *st;
    json_t *arr;
    kms_err e;
    if ((e = kms_op_get_str(x, in, "CustomKeyStoreId", false, &id)) || (e = get_name(x, in, "CustomKeyStoreName", false, &name)))
        return e;
    if (id && name)
        return fail(x, KMS_ERR_VALIDATION, "Specify either CustomKeyStoreId or CustomKeyStoreName, not both");
    if (sqlite3_prepare_v2(c->db,
                           "SELECT " ROW_COLS " FROM custom_key_stores WHERE account=?1 AND (?2 IS NULL OR id=?2)"
                           " AND (?3 IS NULL OR name=?3) ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(x, KMS_ERR_IO, "key store error (custom_key_stores): %s", sqlite3_errmsg(c->db));
    sqlite3_bind_text(st, 1, acct, -1, SQLITE_STATIC);
    if (id)
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    if (name)
        sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW)
        total++;
    sqlite3_reset(st);
    if ((id || name) && !total) {
        sqlite3_finalize(st);
        return fail(x, KMS_ERR_CKS_NOT_FOUND, "Custom key store %s does not exist in this account", id ? id : name);
    }
    if ((e = kms_op_paging(x, in, 1000, 1000, total, &start, &limit)) ||
        (e = kms_authorize(c, x->caller, x->operation, NULL))) {
        sqlite3_finalize(st);
        return e;
    }
    arr = json_array();
    while (arr && sqlite3_step(st) == SQLITE_ROW && i < start + limit) {
        struct cks_row r;
        if (i++ < start)
            continue;
        row_read(st, &r);
        json_array_append_new(arr, entry(&r));
        row_clear(&r);
    }
    sqlite3_finalize(st);
    *out = json_pack("{s:o}", "CustomKeyStores", arr);
    if (!*out)
        return KMS_ERR_NOMEM;
    kms_op_page_end(*out, i, total);
    return KMS_OK;
}

/* The keys in store id (every state). */
static size_t keys_in(kms_core *c, const char *id)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n_keys; i++)
        n += !strcmp(c->keys[i].cks_id, id);
    return n;
}

kms_err kms_op_update_custom_key_store(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_core *c = x->core;
    const char *name, *pw, *cluster;
    struct cks_row r;
    kms_err e;
    if ((e = get_name(x, in, "NewCustomKeyStoreName", false, &name)) || (e = get_password(x, in, &pw)) ||
        (e = get_cluster(x, in, false, &cluster)))
        return e;
    if ((e = resolve_store(x, in, &r)))
        return e;
    if (strcmp(r.state, "DISCONNECTED")) {
        row_clear(&r);
        return fail(x, KMS_ERR_CKS_INVALID_STATE,
                    "Custom key store %s is %s: disconnect it before updating its properties", r.id, r.state);
    }
    if (name && taken(c, "name", name, r.account, r.id))
        e = fail(x, KMS_ERR_CKS_NAME_IN_USE, "A custom key store named %s already exists in this account", name);
    if (!e && cluster && strcmp(cluster, r.cluster)) {
        /* "related": the other cluster id names the same token (module and label) */
        char m1[4096], l1[256], m2[4096], l2[256];
        if (!cluster_lookup(c, cluster, m2, sizeof m2, l2, sizeof l2))
            e = fail(x, KMS_ERR_HSM_NOT_FOUND, "HSM cluster %s is not configured (clusters file)", cluster);
        else if (taken(c, "cluster_id", cluster, NULL, r.id))
            e = fail(x, KMS_ERR_HSM_IN_USE, "HSM cluster %s is already associated with a custom key store", cluster);
        else if (!cluster_lookup(c, r.cluster, m1, sizeof m1, l1, sizeof l1) || strcmp(m1, m2) || strcmp(l1, l2))
            e = fail(x, KMS_ERR_HSM_NOT_RELATED,
                     "HSM cluster %s is not related to %s: it names another PKCS#11 module or token", cluster,
                     r.cluster);
    }
    if (!e && sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        e = fail(x, KMS_ERR_IO, "key store error (custom_key_stores): %s", sqlite3_errmsg(c->db));
    else if (!e) {
        if (name)
            e = exec_bind(c, "UPDATE custom_key_stores SET name=?2 WHERE id=?1", (const char *const[]){r.id, name}, 2, x->msg);
        if (!e && cluster)
            e = exec_bind(c, "UPDATE custom_key_stores SET cluster_id=?2 WHERE id=?1",
                          (const char *const[]){r.id, cluster}, 2, x->msg);
        if (!e && pw) {
            uint8_t sealed[32 + KMS_SEAL_OVERHEAD];
            sqlite3_stmt *st;
            seal_pin(c, r.id, pw, sealed);
            if (sqlite3_prepare_v2(c->db, "UPDATE custom_key_stores SET pin=?2 WHERE id=?1", -1, &st, NULL) != SQLITE_OK) {
                e = fail(x, KMS_ERR_IO, "key store error (custom_key_stores): %s", sqlite3_errmsg(c->db));
            } else {
                sqlite3_bind_text(st, 1, r.id, -1, SQLITE_STATIC);
                sqlite3_bind_blob(st, 2, sealed, (int)(strlen(pw) + KMS_SEAL_OVERHEAD), SQLITE_STATIC);
                if (sqlite3_step(st) != SQLITE_DONE)
                    e = fail(x, KMS_ERR_IO, "key store error (custom_key_stores): %s", sqlite3_errmsg(c->db));
                sqlite3_finalize(st);
            }
        }
        if (e || sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            if (!e)
                e = fail(x, KMS_ERR_IO, "key store error (custom_key_stores): commit");
        }
    }
    row_clear(&r);
    if (!e)
        *out = json_object();
    return e;
}

kms_err kms_op_delete_custom_key_store(struct op_ctx *x, json_t *in, json_t **out)
{
    struct cks_row r;
    size_t n;
    kms_err e = resolve_store(x, in, &r);
    if (e)
        return e;
    if (strcmp(r.state, "DISCONNECTED"))
        e = fail(x, KMS_ERR_CKS_INVALID_STATE, "Custom key store %s is %s: disconnect it before deleting it", r.id,
                 r.state);
    else if ((n = keys_in(x->core, r.id)))
        e = fail(x, KMS_ERR_CKS_HAS_CMKS,
                 "Custom key store %s still holds %zu KMS key(s): delete them (ScheduleKeyDeletion, then wait) first",
                 r.id, n);
    else
        e = exec_bind(x->core, "DELETE FROM custom_key_stores WHERE id=?1", (const char *const[]){r.id}, 1, x->msg);
    row_clear(&r);
    if (!e)
        *out = json_object();
    return e;
}

/* ---- keys in a custom key store -------------------------------------------------------------- */

kms_err kms_cks_create_key(struct op_ctx *x, const char *cks_id, kms_key *k)
{
    kms_core *c = x->core;
    struct cks_row r;
    hsm_token *tok;
    int found = row_get(c, cks_id, kms_caller_account(c, x->caller), &r);
    kms_err e;
    if (found < 0)
        return fail(x, KMS_ERR_IO, "key store error (custom_key_stores): %s", sqlite3_errmsg(c->db));
    if (!found)
        return fail(x, KMS_ERR_CKS_NOT_FOUND, "Custom key store %s does not exist in this account", cks_id);
    if (strcmp(r.state, "CONNECTED")) {
        e = fail(x, KMS_ERR_CKS_INVALID_STATE, "Custom key store %s is %s: connect it to create keys in it", cks_id,
                 r.state);
        row_clear(&r);
        return e;
    }
    row_clear(&r);
    snprintf(k->cks_id, sizeof k->cks_id, "%s", cks_id);
    k->hsm = true;
    if ((e = key_token(x, k, &tok))) {
        if (e == KMS_ERR_INVALID_STATE)
            e = fail(x, KMS_ERR_HSM_INVALID_CONFIG, "Custom key store %s cannot log in to its HSM", cks_id);
        return e;
    }
    return hsm_generate_aes256(tok, k->raw_id, k->id, x->msg);
}

void kms_cks_key_destroyed(kms_core *c, const kms_key *k)
{
    hsm_token *tok = conn_find(c, k->cks_id);
    char *m = NULL;
    if (tok && hsm_destroy_key(tok, k->raw_id, &m) == KMS_OK) {
        free(m);
        return;
    }
    free(m);
    /* not connected in this process: log in if the store is CONNECTED, else the token keeps the object */
    {
        struct op_ctx x = {.core = c, .msg = &m};
        if (key_token(&x, k, &tok) == KMS_OK && hsm_destroy_key(tok, k->raw_id, &m) != KMS_OK)
            kms_set_msg(&m, NULL); /* the token keeps an object no key names */
        free(m);
    }
}

kms_err kms_cks_token_key_info(kms_core *c, const kms_key *k, hsm_key_info *info, char **msg)
{
    hsm_token *tok;
    struct op_ctx x = {.core = c, .msg = msg};
    kms_err e = key_token(&x, k, &tok);
    return e ? e : hsm_describe_key(tok, k->raw_id, info, msg);
}

/* header ‖ canonical context, the AAD of a blob (malloc'd). */
static kms_err blob_aad(struct op_ctx *x, const uint8_t *header, const kms_ectx *ectx, uint8_t **aad, size_t *len,
                        kms_err bad)
{
    uint8_t *ctx = NULL;
    size_t cl = 0;
    if (kms_ectx_encode(ectx, &ctx, &cl))
        return bad == KMS_ERR_INVALID_CIPHERTEXT
                   ? fail(x, bad, NULL)
                   : fail(x, bad, "EncryptionContext keys must be non-empty and keys/values at most 65535 bytes");
    *aad = malloc(KMS_BLOB_HEADER_LEN + cl);
    if (!*aad) {
        free(ctx);
        return KMS_ERR_NOMEM;
    }
    memcpy(*aad, header, KMS_BLOB_HEADER_LEN);
    if (cl)
        memcpy(*aad + KMS_BLOB_HEADER_LEN, ctx, cl);
    free(ctx);
    *len = KMS_BLOB_HEADER_LEN + cl;
    return KMS_OK;
}

kms_err kms_cks_seal(struct op_ctx *x, kms_key *k, const uint8_t *pt, size_t n, const kms_ectx *ectx, json_t **blob_json)
{
    hsm_token *tok;
    uint8_t nonce[KMS_BLOB_NONCE_LEN], *blob, *aad = NULL;
    size_t aad_len;
    kms_err e = key_token(x, k, &tok);
    if (e)
        return e;
    if (kms_random(nonce, sizeof nonce))
        return fail(x, KMS_ERR_INTERNAL, "no random bytes");
    if (!(blob = malloc(n + KMS_BLOB_OVERHEAD)))
        return KMS_ERR_NOMEM;
    kms_blob_write_header(blob, k->raw_id, 1, nonce);
    e = blob_aad(x, blob, ectx, &aad, &aad_len, KMS_ERR_VALIDATION);
    if (!e)
        e = hsm_gcm_seal(tok, k->raw_id, nonce, aad, aad_len, pt, n, blob + KMS_BLOB_HEADER_LEN, x->msg);
    if (!e)
        *blob_json = efs_json_base64(blob, n + KMS_BLOB_OVERHEAD);
    free(aad);
    free(blob);
    return e ? e : *blob_json ? KMS_OK : KMS_ERR_NOMEM;
}

kms_err kms_cks_open(struct op_ctx *x, kms_key *k, const kms_blob *b, const kms_ectx *ectx, uint8_t *pt)
{
    hsm_token *tok;
    uint8_t *aad = NULL;
    size_t aad_len;
    kms_err e = key_token(x, k, &tok);
    if (e)
        return e;
    if (b->version != 1)
        return fail(x, KMS_ERR_INVALID_CIPHERTEXT, NULL);
    e = blob_aad(x, b->header, ectx, &aad, &aad_len, KMS_ERR_INVALID_CIPHERTEXT);
    if (!e)
        e = hsm_gcm_open(tok, k->raw_id, b->nonce, aad, aad_len, b->ciphertext, b->ciphertext_len, b->tag, pt, x->msg);
    free(aad);
    return e;
}

void kms_cks_describe(kms_core *c, const kms_key *k, json_t *m)
{
    struct cks_row r;
    int found;
    if (!k->hsm)
        return;
    json_object_set_new(m, "Origin", json_string("AWS_CLOUDHSM"));
    json_object_set_new(m, "CustomKeyStoreId", json_string(k->cks_id));
    found = row_get(c, k->cks_id, NULL, &r);
    if (found == 1)
        json_object_set_new(m, "CloudHsmClusterId", json_string(r.cluster));
    if ((found != 1 || strcmp(r.state, "CONNECTED")) && (k->state == KS_ENABLED || k->state == KS_DISABLED))
        json_object_set_new(m, "KeyState", json_string("Unavailable"));
    if (found == 1)
        row_clear(&r);
}

kms_err kms_cks_load_keys(kms_core *c, char **msg)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(c->db, "SELECT key_id, custom_key_store_id FROM custom_key_store_keys", -1, &st, NULL) !=
        SQLITE_OK) {
        kms_set_msg(msg, "key store is damaged: %s", sqlite3_errmsg(c->db));
        return KMS_ERR_CORRUPT_STORE;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        kms_key *k = kms_find_key(c, (const char *)sqlite3_column_text(st, 0));
        const char *id = (const char *)sqlite3_column_text(st, 1);
        if (!k || !id)
            continue; /* a row of a destroyed key */
        snprintf(k->cks_id, sizeof k->cks_id, "%s", id);
    }
    sqlite3_finalize(st);
    return KMS_OK;
}

kms_err kms_cks_write_key(kms_core *c, const kms_key *k, char **msg)
{
    return exec_bind(c, "INSERT OR REPLACE INTO custom_key_store_keys(key_id, custom_key_store_id) VALUES(?1, ?2)",
                     (const char *const[]){k->id, k->cks_id}, 2, msg);
}
