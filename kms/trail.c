/*
 * trail.c — CloudTrail-shaped audit records (their fields; the text is record.c's), their hash chain,
 * signed digests, group commit and the committer thread of kms_core_when_durable (see trail.h);
 * validation lives in trail_check.c.
 */
#include "trail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "common/monotime.h"
#include "internal.h"
#include "record.h"

/* ---- the chain ------------------------------------------------------------------------------- */

static void put_be64(uint8_t b[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

static void hash_str(crypto_hash_sha256_state *h, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    uint8_t len[8];
    put_be64(len, n);
    crypto_hash_sha256_update(h, len, 8);
    if (n)
        crypto_hash_sha256_update(h, (const uint8_t *)s, n);
}

void kms_trail_hash(const uint8_t prev[32], int64_t seq, int64_t time, const char *const cols[9], int read_only,
                    uint8_t out[32])
{
    static const char tag[] = "envelopefs-audit-v1";
    crypto_hash_sha256_state h;
    uint8_t b[8], ro = (uint8_t)!!read_only;
    crypto_hash_sha256_init(&h);
    crypto_hash_sha256_update(&h, (const uint8_t *)tag, sizeof tag); /* with its NUL */
    crypto_hash_sha256_update(&h, prev, 32);
    put_be64(b, (uint64_t)seq);
    crypto_hash_sha256_update(&h, b, 8);
    put_be64(b, (uint64_t)time);
    crypto_hash_sha256_update(&h, b, 8);
    for (int i = 0; i < 9; i++)
        hash_str(&h, cols[i]);
    crypto_hash_sha256_update(&h, &ro, 1);
    crypto_hash_sha256_final(&h, out);
}

size_t kms_trail_digest_msg(uint8_t *m, const char *kind, int64_t first_seq, int64_t last_seq,
                            const uint8_t last_hash[32], int64_t time)
{
    static const char tag[] = "envelopefs-audit-digest-v1";
    size_t n = 0, kl = strlen(kind);
    memcpy(m, tag, sizeof tag);
    n += sizeof tag;
    m[n++] = (uint8_t)kl;
    memcpy(m + n, kind, kl);
    n += kl;
    put_be64(m + n, (uint64_t)first_seq);
    put_be64(m + n + 8, (uint64_t)last_seq);
    n += 16;
    memcpy(m + n, last_hash, 32);
    n += 32;
    put_be64(m + n, (uint64_t)time);
    return n + 8;
}

int kms_trail_put_digest(sqlite3 *db, const uint8_t *sk, const char *kind, int64_t first_seq, int64_t last_seq,
                         const uint8_t last_hash[32], int64_t time)
{
    uint8_t m[128], sig[crypto_sign_BYTES];
    size_t n = kms_trail_digest_msg(m, kind, first_seq, last_seq, last_hash, time);
    sqlite3_stmt *st;
    int rc;
    if (!sk || crypto_sign_detached(sig, NULL, m, n, sk))
        return -1;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO audit_digests(kind, first_seq, last_seq, last_hash, time, sig)"
                           " VALUES(?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, first_seq);
    sqlite3_bind_int64(st, 3, last_seq);
    sqlite3_bind_blob(st, 4, last_hash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, time);
    sqlite3_bind_blob(st, 6, sig, sizeof sig, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    sqlite3_finalize(st);
    return rc;
}

int kms_trail_hash_of(sqlite3 *db, int64_t seq, uint8_t out[32])
{
    sqlite3_stmt *st;
    int rc = -1;
    if (sqlite3_prepare_v2(db, "SELECT hash FROM audit WHERE seq=?", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, seq);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 32) {
        memcpy(out, sqlite3_column_blob(st, 0), 32);
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---- schema and key ------------------------------------------------------------------------------ */

static bool has_column(sqlite3 *db, const char *table, const char *col)
{
    sqlite3_stmt *st;
    char sql[96];
    bool found = false;
    snprintf(sql, sizeof sql, "PRAGMA table_info(%s)", table);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return false;
    while (sqlite3_step(st) == SQLITE_ROW)
        if (!strcmp((const char *)sqlite3_column_text(st, 1), col))
            found = true;
    sqlite3_finalize(st);
    return found;
}

#define SK_AAD "envelopefs-audit-signing-key-v1"
#define SEALED_SK (crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + crypto_sign_SECRETKEYBYTES + \
                   crypto_aead_xchacha20poly1305_ietf_ABYTES)

/* The migration, in one transaction (another process may race us: INSERT OR IGNORE and re-read). */
static kms_err migrate(kms_core *c, char **msg)
{
    static const char *const cols[][2] = {{"event_id", "TEXT"}, {"access_key", "TEXT"}, {"read_only", "INTEGER"},
                                          {"event", "TEXT"},    {"prev", "BLOB"},       {"hash", "BLOB"}};
    uint8_t buf[8];
    size_t n;
    if (!kms_meta_get(c->db, "feature_audit_chain", buf, sizeof buf, &n))
        return KMS_OK;
    if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    if (kms_meta_get(c->db, "feature_audit_chain", buf, sizeof buf, &n)) {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES], zero[32] = {0};
        uint8_t *sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
        uint8_t sealed[SEALED_SK];
        sqlite3_stmt *st;
        int64_t next = 1;
        int bad = !sk;
        for (size_t i = 0; !bad && i < sizeof cols / sizeof cols[0]; i++)
            if (!has_column(c->db, "audit", cols[i][0])) {
                char sql[96];
                snprintf(sql, sizeof sql, "ALTER TABLE audit ADD COLUMN %s %s", cols[i][0], cols[i][1]);
                bad = sqlite3_exec(c->db, sql, NULL, NULL, NULL) != SQLITE_OK;
            }
        if (!bad)
            bad = sqlite3_exec(c->db,
                               "CREATE TABLE IF NOT EXISTS audit_digests(id INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
                               " first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, last_hash BLOB NOT NULL,"
                               " time INTEGER NOT NULL, sig BLOB NOT NULL)",
                               NULL, NULL, NULL) != SQLITE_OK;
        if (!bad) {
            crypto_sign_keypair(pk, sk);
            randombytes_buf(sealed, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
            crypto_aead_xchacha20poly1305_ietf_encrypt(sealed + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, NULL,
                                                       sk, crypto_sign_SECRETKEYBYTES, (const uint8_t *)SK_AAD,
                                                       sizeof SK_AAD - 1, NULL, sealed, c->root_key);
            bad = kms_meta_put(c->db, "audit_sign_pk", pk, sizeof pk, false) || kms_meta_put(c->db, "audit_sign_sk", sealed, sizeof sealed, false);
        }
        /* The chain starts after the records already there (they stay, unchained: "legacy"). */
        if (!bad && sqlite3_prepare_v2(c->db, "SELECT seq FROM audit ORDER BY seq DESC LIMIT 1", -1, &st, NULL) ==
                        SQLITE_OK) {
            if (sqlite3_step(st) == SQLITE_ROW)
                next = sqlite3_column_int64(st, 0) + 1;
            sqlite3_finalize(st);
        }
        if (!bad)
            bad = kms_trail_put_digest(c->db, sk, "start", next, next - 1, zero, kms_now(c)) ||
                  kms_meta_put(c->db, "feature_audit_chain", "1", 1, false);
        sodium_free(sk);
        if (bad)
            goto fail;
    }
    if (sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return KMS_OK;
fail:
    kms_set_msg(msg, "keystore: adding the audit chain: %s", sqlite3_errmsg(c->db));
    sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return KMS_ERR_IO;
}

/* The writer's own connection on the store file, with the core connection's synchronous setting (so a
 * commit is as durable as before) and its other pragmas. */
static kms_err open_writer(kms_core *c, const char *path, char **msg)
{
    char sql[96];
    int64_t sync = 2;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(c->db, "PRAGMA synchronous", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            sync = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    if (sqlite3_open_v2(path, &c->w_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(c->w_db, 10000);
    snprintf(sql, sizeof sql, "PRAGMA secure_delete=ON; PRAGMA synchronous=%d;", (int)sync);
    if (sqlite3_exec(c->w_db, sql, NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    return KMS_OK;
fail:
    kms_set_msg(msg, "cannot open %s for the audit trail: %s", path,
                c->w_db ? sqlite3_errmsg(c->w_db) : "out of memory");
    sqlite3_close(c->w_db);
    c->w_db = NULL;
    return KMS_ERR_IO;
}

kms_err kms_trail_open(kms_core *c, const char *path, char **msg)
{
    uint8_t sealed[SEALED_SK];
    size_t n, pn;
    kms_err e = migrate(c, msg);
    if (e)
        return e;
    if (pthread_mutex_init(&c->trail_wmu, NULL))
        return KMS_ERR_NOMEM;
    if (pthread_mutex_init(&c->trail_mu, NULL)) {
        pthread_mutex_destroy(&c->trail_wmu);
        return KMS_ERR_NOMEM;
    }
    if (pthread_cond_init(&c->trail_cv, NULL)) {
        pthread_mutex_destroy(&c->trail_mu);
        pthread_mutex_destroy(&c->trail_wmu);
        return KMS_ERR_NOMEM;
    }
    if (pthread_cond_init(&c->async_cv, NULL)) {
        pthread_cond_destroy(&c->trail_cv);
        pthread_mutex_destroy(&c->trail_mu);
        pthread_mutex_destroy(&c->trail_wmu);
        return KMS_ERR_NOMEM;
    }
    c->trail_init = true;
    c->audit_sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    if (!c->audit_sk)
        return KMS_ERR_NOMEM;
    if (kms_meta_get(c->db, "audit_sign_sk", sealed, sizeof sealed, &n) || n != sizeof sealed ||
        kms_meta_get(c->db, "audit_sign_pk", c->audit_pk, sizeof c->audit_pk, &pn) || pn != sizeof c->audit_pk ||
        crypto_aead_xchacha20poly1305_ietf_decrypt(
            c->audit_sk, NULL, NULL, sealed + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
            n - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, (const uint8_t *)SK_AAD, sizeof SK_AAD - 1, sealed,
            c->root_key)) {
        kms_set_msg(msg, "key store is damaged: the audit signing key is missing or does not unseal");
        return KMS_ERR_CORRUPT_STORE;
    }
    {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        crypto_sign_ed25519_sk_to_pk(pk, c->audit_sk);
        if (sodium_memcmp(pk, c->audit_pk, sizeof pk)) {
            kms_set_msg(msg, "key store is damaged: the audit public key does not match its secret half");
            return KMS_ERR_CORRUPT_STORE;
        }
    }
    c->digest_ms = efs_mono_ns() / 1000000;
    return open_writer(c, path, msg);
}

/* ---- records ------------------------------------------------------------------------------------ */

static void uuid4(char out[37])
{
    uint8_t r[16];
    static const char hx[] = "0123456789abcdef";
    size_t o = 0;
    if (kms_random(r, sizeof r))
        randombytes_buf(r, sizeof r);
    r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
    r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hx[r[i] >> 4];
        out[o++] = hx[r[i] & 15];
    }
    out[o] = 0;
}

/* Bounded copy; bytes outside printable ASCII become '?' (names, access key ids and user agents come
 * from clients, and a record must stay valid JSON). */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src ? src : "", cap - 1);
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
    dst[n] = 0;
}

/* One record (core lock held). req and resp: what requestParameters and responseElements copy (record.h;
 * borrowed); resources: NULL or n of them (borrowed); result is the `result` column and the errorCode
 * (NULL: "OK", no errorCode). identity, when non-NULL (borrowed), is the userIdentity as another service
 * saw its caller (kms_service_event), in place of the one built from p. Another service's record goes to
 * its caller's account (recipientAccountId). data_event: a data-plane call (managementEvent false,
 * eventCategory "Data": EBS's block calls). The record's text is written directly (record.c). */
static uint64_t append(kms_core *c, const kms_principal *p, const char *event_source, const char *op,
                       struct kms_record_part req, struct kms_record_part resp, const char *key_id,
                       const struct kms_record_resource *resources, size_t nresources, bool read_only,
                       const char *result, const char *msg, const char *grant_id, const json_t *identity,
                       bool data_event)
{
    struct audit_rec *r;
    struct kms_record rec;
    char when[32], principal_arn[128], rid[37], svc[64], gid[KMS_GRANT_ID_BUF];
    const char *account = p && p->account ? p->account : c->account;
    const char *user = p && p->user ? p->user : "local";
    char safe_user[64], safe_source[64];
    const char *source = p && p->source ? p->source : "embedded";
    time_t t;
    struct tm tm;
    char agent[160];
    size_t n;

    if (c->q_n + atomic_load(&c->w_backlog) >= KMS_TRAIL_MAX_PENDING) /* (w_backlog: a failed batch) */
        return 0;
    if (c->q_n == c->q_cap) {
        size_t cap = c->q_cap ? c->q_cap * 2 : 64;
        struct audit_rec *q = realloc(c->q, cap * sizeof *q);
        if (!q)
            return 0;
        c->q = q;
        c->q_cap = cap;
    }
    r = &c->q[c->q_n];
    memset(r, 0, sizeof *r);
    r->time = kms_now(c);
    copy_str(r->account, sizeof r->account, account);
    copy_str(r->user, sizeof r->user, user);
    copy_str(r->source, sizeof r->source, source);
    copy_str(safe_user, sizeof safe_user, user);
    copy_str(safe_source, sizeof safe_source, source);
    user = safe_user;
    source = safe_source;
    copy_str(r->op, sizeof r->op, op);
    copy_str(r->key_id, sizeof r->key_id, key_id);
    copy_str(r->result, sizeof r->result, result ? result : "OK");
    copy_str(r->access_key, sizeof r->access_key, p ? p->access_key : NULL);
    r->read_only = read_only;
    copy_str(agent, sizeof agent,
             p && p->user_agent ? p->user_agent
                                : (p && (p->access_key || p->unix_peer) ? "unknown" : "envelopefs-embedded"));
    uuid4(r->event_id);
    uuid4(rid);

    t = (time_t)r->time;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!strcmp(user, "root") || !strcmp(user, "local"))
        snprintf(principal_arn, sizeof principal_arn, "arn:aws:iam::%s:root", account);
    else
        snprintf(principal_arn, sizeof principal_arn, "arn:aws:iam::%s:user/%s", account, user);
    memset(&rec, 0, sizeof rec);
    rec.event_time = when;
    rec.event_source = event_source;
    rec.event_name = r->op;
    rec.region = c->region;
    rec.source_ip = strncmp(source, "http:", 5) ? source : source + 5;
    rec.user_agent = agent;
    rec.identity = identity; /* the service's view of its caller: the columns above still say who, for lookups */
    rec.ui_type = strcmp(principal_arn + strlen(principal_arn) - 5, ":root") ? "IAMUser" : "Root";
    rec.principal_id = r->access_key[0] ? r->access_key : account;
    rec.arn = principal_arn;
    rec.account_id = account;
    rec.access_key_id = r->access_key[0] ? r->access_key : NULL;
    rec.user_name = strcmp(user, "local") ? user : NULL;
    rec.unix_peer = p ? p->unix_peer : NULL; /* ours, not CloudTrail's: who the kernel said was on the socket */
    if (p && p->via_service) { /* a service calling on the principal's behalf: CloudTrail's invokedBy */
        copy_str(svc, sizeof svc, p->via_service);
        svc[strcspn(svc, ".")] = 0;
        if (strlen(svc) + 15 < sizeof svc)
            strcat(svc, ".amazonaws.com");
        rec.invoked_by = svc;
    }
    rec.error_code = result ? r->result : NULL;
    rec.error_message = msg;
    rec.error_message_len = msg ? strnlen(msg, 512) : 0;
    rec.request = req;
    rec.response = resp;
    rec.request_id = rid;
    rec.event_id = r->event_id;
    if (grant_id && *grant_id) {
        copy_str(gid, sizeof gid, grant_id);
        rec.grant_id = gid;
    }
    rec.read_only = read_only;
    rec.management = !data_event;
    rec.resources = resources;
    rec.nresources = nresources;
    /* another service's call is delivered to its caller's account (EC2's resources are the caller's) */
    rec.recipient_account = strcmp(event_source, "kms.amazonaws.com") && r->account[0] ? r->account : c->account;
    rec.event_category = data_event ? "Data" : "Management";
    if (kms_record_text(&rec, &r->event, &n))
        return 0;
    r->ticket = ++c->q_ticket;
    c->q_n++;
    return r->ticket;
}

uint64_t kms_trail_append(kms_core *c, const kms_principal *p, const char *op, json_t *req, json_t *resp,
                          const char *key_id, kms_err e, const char *msg)
{
    return kms_trail_append_grant(c, p, op, req, resp, key_id, e, msg, NULL);
}

uint64_t kms_trail_append_grant(kms_core *c, const kms_principal *p, const char *op, json_t *req, json_t *resp,
                                const char *key_id, kms_err e, const char *msg, const char *grant_id)
{
    bool ro = kms_trail_read_only(op);
    struct kms_record_resource res;
    char id[40], arn[160];
    struct kms_record_part rq = {req, KMS_RECORD_REQ_FIELDS, KMS_RECORD_REQ_NFIELDS};
    struct kms_record_part rs = {e || ro ? NULL : resp, KMS_RECORD_RESP_FIELDS, KMS_RECORD_RESP_NFIELDS};
    copy_str(id, sizeof id, key_id);
    if (id[0]) {
        snprintf(arn, sizeof arn, "arn:aws:kms:%s:%s:key/%s", c->region, c->account, id);
        res = (struct kms_record_resource){c->account, "AWS::KMS::Key", arn};
    }
    return append(c, p, "kms.amazonaws.com", op, rq, rs, key_id, &res, id[0] ? 1 : 0, ro, e ? kms_err_name(e) : NULL,
                  msg, grant_id, NULL, false);
}

kms_err kms_core_audit_service_event(kms_core *c, const kms_principal *p, const kms_service_event *ev)
{
    json_t *req = NULL, *resp = NULL, *who = NULL;
    struct kms_record_resource res;
    bool has_res = false;
    kms_principal agent;
    uint64_t ticket;
    char src[64];
    size_t n = ev && ev->event_source ? strlen(ev->event_source) : 0;
    /* another service's name (NAME.amazonaws.com, not ours) and event name */
    if (!ev || !ev->event_name || !*ev->event_name || strlen(ev->event_name) >= 48 || n <= 14 || n >= sizeof src ||
        strcmp(ev->event_source + n - 14, ".amazonaws.com") || !strcmp(ev->event_source, "kms.amazonaws.com"))
        return KMS_ERR_VALIDATION;
    copy_str(src, sizeof src, ev->event_source);
    if (ev->request_parameters) /* (not inside json_is_object: a macro, it evaluates its argument twice) */
        req = json_loads(ev->request_parameters, 0, NULL);
    if (ev->response_elements)
        resp = json_loads(ev->response_elements, 0, NULL);
    if (ev->user_identity)
        who = json_loads(ev->user_identity, 0, NULL);
    if ((ev->request_parameters && !json_is_object(req)) || (ev->response_elements && !json_is_object(resp)) ||
        (ev->user_identity && !json_is_object(who))) {
        json_decref(req);
        json_decref(resp);
        json_decref(who);
        return KMS_ERR_VALIDATION;
    }
    if (ev->resource_name && *ev->resource_name) {
        const char *acct = p && p->account ? p->account : c->account; /* "": the service could not learn it */
        res = (struct kms_record_resource){*acct ? acct : NULL, ev->resource_type, ev->resource_arn};
        has_res = true;
    }
    if (ev->user_agent) {
        agent = p ? *p : (kms_principal){0};
        agent.user_agent = ev->user_agent;
        p = &agent;
    }
    pthread_mutex_lock(&c->lock);
    ticket = append(c, p, src, ev->event_name, (struct kms_record_part){req, NULL, 0},
                    (struct kms_record_part){resp, NULL, 0}, ev->resource_name, &res, has_res ? 1 : 0, ev->read_only,
                    ev->error_code && *ev->error_code ? ev->error_code : NULL, ev->error_message, NULL, who,
                    ev->data_event);
    pthread_mutex_unlock(&c->lock);
    json_decref(req);
    json_decref(resp);
    json_decref(who);
    if (!ticket)
        return KMS_ERR_INTERNAL;
    return kms_trail_commit(c, ticket);
}

/* ---- writing ------------------------------------------------------------------------------------ */

/* The chain's head (seq, hash) inside the writer's transaction: the newest record (newest: the core's
 * prepared statement), or where the newest start/checkpoint digest says the chain continues. */
static int head(sqlite3 *db, sqlite3_stmt *newest, int64_t *seq, uint8_t hash[32])
{
    sqlite3_stmt *st;
    int rc = -1;
    memset(hash, 0, 32);
    *seq = 0;
    if (sqlite3_step(newest) == SQLITE_ROW) {
        *seq = sqlite3_column_int64(newest, 0);
        if (sqlite3_column_bytes(newest, 1) == 32)
            memcpy(hash, sqlite3_column_blob(newest, 1), 32);
        rc = 0;
    }
    sqlite3_reset(newest);
    if (!rc)
        return 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT first_seq, last_hash FROM audit_digests WHERE kind IN ('start','checkpoint')"
                           " ORDER BY id DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *seq = sqlite3_column_int64(st, 0) - 1;
        if (sqlite3_column_bytes(st, 1) == 32)
            memcpy(hash, sqlite3_column_blob(st, 1), 32);
    }
    sqlite3_finalize(st);
    return 0;
}

static void free_recs(struct audit_rec *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(r[i].event);
}

/* A statement of the writer's, prepared at its first use and kept (a commit per call is the common case:
 * preparing the head's SELECT, BEGIN and COMMIT again each time was ~40,000 instructions a commit). */
static bool prepared(kms_core *c, sqlite3_stmt **st, const char *sql)
{
    return *st || sqlite3_prepare_v3(c->w_db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) == SQLITE_OK;
}

/* Step a statement that returns no row (BEGIN, COMMIT) and reset it: true on SQLITE_DONE. */
static bool run_once(sqlite3_stmt *st)
{
    bool ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_reset(st);
    return ok;
}

static void stat_max(_Atomic uint64_t *m, uint64_t v)
{
    uint64_t cur = atomic_load(m);
    while (v > cur && !atomic_compare_exchange_weak(m, &cur, v))
        ;
}

/* Write the writer's batch (trail_wmu held, not the core lock): one transaction on the writer's own
 * connection, the chain continued from the head the transaction sees, a digest when one is due. On
 * failure the batch stays for the next writer, which writes it first: records enter the chain in ticket
 * order whatever fails. */
static bool write_batch(kms_core *c, bool seal_now)
{
    sqlite3_stmt *st;
    uint8_t prev[32], h[32];
    int64_t seq, now_ms = efs_mono_ns() / 1000000;
    bool ok = true, due;
    if (!c->w_n && !(c->since_digest && (seal_now || now_ms - c->digest_ms >= KMS_DIGEST_INTERVAL_MS)))
        return true;
    if (!prepared(c, &c->audit_ins,
                  "INSERT INTO audit(seq, time, account, user, source, operation, key_id, result,"
                  " event_id, access_key, read_only, event, prev, hash)"
                  " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)") ||
        !prepared(c, &c->audit_head, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1") ||
        !prepared(c, &c->audit_begin, "BEGIN IMMEDIATE") || !prepared(c, &c->audit_commit, "COMMIT"))
        goto failed;
    st = c->audit_ins;
    if (!run_once(c->audit_begin))
        goto failed;
    ok = !head(c->w_db, c->audit_head, &seq, prev);
    for (size_t i = 0; ok && i < c->w_n; i++) {
        struct audit_rec *r = &c->w_batch[i];
        const char *cols[9] = {r->account, r->user, r->source, r->op, r->key_id, r->result, r->event_id,
                               r->access_key, r->event};
        seq++;
        kms_trail_hash(prev, seq, r->time, cols, r->read_only, h);
        sqlite3_bind_int64(st, 1, seq);
        sqlite3_bind_int64(st, 2, r->time);
        for (int j = 0; j < 8; j++)
            sqlite3_bind_text(st, 3 + j, cols[j], -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 11, r->read_only);
        sqlite3_bind_text(st, 12, r->event, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 13, prev, 32, SQLITE_STATIC);
        sqlite3_bind_blob(st, 14, h, 32, SQLITE_STATIC);
        ok = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        memcpy(prev, h, 32);
    }
    c->since_digest += (int64_t)c->w_n;
    due = seal_now || c->since_digest >= KMS_DIGEST_RECORDS || now_ms - c->digest_ms >= KMS_DIGEST_INTERVAL_MS;
    if (ok && c->since_digest && due)
        ok = !kms_trail_put_digest(c->w_db, c->audit_sk, seal_now ? "close" : "periodic", seq - c->since_digest + 1,
                                   seq, prev, kms_now(c));
    if (ok && atomic_load(&c->trail_fail_next) > 0 && atomic_fetch_sub(&c->trail_fail_next, 1) > 0)
        ok = false; /* tests: this write fails after its inserts, as a full disk would at COMMIT */
    if (ok && run_once(c->audit_commit)) {
        if (c->w_n) {
            atomic_fetch_add(&c->trail_commits, 1);
            atomic_fetch_add(&c->trail_records, c->w_n);
            stat_max(&c->trail_max_batch, c->w_n);
        }
        free_recs(c->w_batch, c->w_n);
        c->w_n = 0;
        atomic_store(&c->w_backlog, 0);
        if (due) {
            c->since_digest = 0;
            c->digest_ms = now_ms;
        }
        return true;
    }
    c->since_digest -= (int64_t)c->w_n;
    sqlite3_exec(c->w_db, "ROLLBACK", NULL, NULL, NULL);
failed:
    atomic_fetch_add(&c->trail_write_failures, 1);
    return false;
}

/* Move the core's queue to the writer's batch (core lock and trail_wmu held): a swap of arrays, or, when
 * a failed batch is still there, an append behind it. On no memory the records stay queued (taken by a
 * later round, still behind everything in the batch). */
static void take_queue(kms_core *c)
{
    if (!c->q_n)
        return;
    if (!c->w_n) {
        struct audit_rec *b = c->w_batch;
        size_t cap = c->w_cap;
        c->w_batch = c->q;
        c->w_cap = c->q_cap;
        c->w_n = c->q_n;
        c->q = b;
        c->q_cap = cap;
        c->q_n = 0;
    } else {
        if (c->w_n + c->q_n > c->w_cap) {
            size_t cap = 2 * (c->w_n + c->q_n);
            struct audit_rec *b = realloc(c->w_batch, cap * sizeof *b);
            if (!b)
                return;
            c->w_batch = b;
            c->w_cap = cap;
        }
        memcpy(c->w_batch + c->w_n, c->q, c->q_n * sizeof *c->q);
        c->w_n += c->q_n;
        c->q_n = 0;
    }
    atomic_store(&c->w_backlog, c->w_n);
}

/* The tickets [lo, hi] were in a failed write (trail_mu held): extend the newest range (a retried batch
 * starts with the same ticket) or start another. */
static void note_refused(kms_core *c, uint64_t lo, uint64_t hi)
{
    unsigned n = sizeof c->trail_refused / sizeof c->trail_refused[0], last = (c->trail_refused_next + n - 1) % n;
    if (c->trail_refused[last].hi && c->trail_refused[last].lo <= lo && lo <= c->trail_refused[last].hi + 1) {
        if (hi > c->trail_refused[last].hi)
            c->trail_refused[last].hi = hi;
        return;
    }
    c->trail_refused[c->trail_refused_next % n].lo = lo;
    c->trail_refused[c->trail_refused_next % n].hi = hi;
    c->trail_refused_next = (c->trail_refused_next + 1) % n;
}

/* One commit round: take what is queued and write it on the writer's connection. The core lock is held
 * only while the queue is swapped out (core_held: the caller holds it throughout, as flush and close do);
 * trail_wmu is taken before the core lock is released, so batches are written in the order they were
 * taken. The outcome is published under trail_mu and every waiter woken. */
static bool commit_round(kms_core *c, bool seal_now, bool core_held)
{
    uint64_t last;
    bool ok;
    if (!core_held)
        pthread_mutex_lock(&c->lock);
    if (!c->w_db) { /* closed */
        if (!core_held)
            pthread_mutex_unlock(&c->lock);
        return true;
    }
    pthread_mutex_lock(&c->trail_wmu);
    take_queue(c);
    if (!core_held)
        pthread_mutex_unlock(&c->lock);
    last = c->w_n ? c->w_batch[c->w_n - 1].ticket : 0;
    ok = write_batch(c, seal_now);
    if (!ok) /* each caller of the batch is told it failed: its record (written by a later round) says so */
        for (size_t i = 0; i < c->w_n; i++)
            kms_audit_rec_refused(&c->w_batch[i]);
    pthread_mutex_lock(&c->trail_mu);
    if (ok && last > c->trail_durable)
        c->trail_durable = last;
    else if (!ok && last > c->trail_failed)
        c->trail_failed = last;
    if (!ok && c->w_n)
        note_refused(c, c->w_batch[0].ticket, last);
    pthread_cond_broadcast(&c->trail_cv);
    pthread_mutex_unlock(&c->trail_mu);
    pthread_mutex_unlock(&c->trail_wmu);
    return ok;
}

/* Was a ticket of [lo, hi] in a failed write (trail_mu held)? */
static bool refused_locked(const kms_core *c, uint64_t lo, uint64_t hi)
{
    for (size_t i = 0; i < sizeof c->trail_refused / sizeof c->trail_refused[0]; i++)
        if (c->trail_refused[i].hi && c->trail_refused[i].lo <= hi && lo <= c->trail_refused[i].hi)
            return true;
    return false;
}

bool kms_trail_refused_in(kms_core *c, uint64_t lo, uint64_t hi)
{
    bool hit;
    pthread_mutex_lock(&c->trail_mu);
    hit = refused_locked(c, lo, hi);
    pthread_mutex_unlock(&c->trail_mu);
    return hit;
}

/* Become the committer (trail_mu held): false if another thread is. */
static bool take_role(kms_core *c)
{
    if (c->trail_writing)
        return false;
    c->trail_writing = true;
    return true;
}

static void drop_role(kms_core *c)
{
    pthread_mutex_lock(&c->trail_mu);
    c->trail_writing = false;
    pthread_cond_broadcast(&c->trail_cv);
    pthread_mutex_unlock(&c->trail_mu);
}

void kms_trail_tick(void *arg)
{
    kms_core *c = arg;
    bool due = false;
    pthread_mutex_lock(&c->lock);
    /* trylock: a writer busy now seals the head itself when a digest is due */
    if (c->w_db && !pthread_mutex_trylock(&c->trail_wmu)) {
        due = c->since_digest && efs_mono_ns() / 1000000 - c->digest_ms >= KMS_DIGEST_INTERVAL_MS;
        pthread_mutex_unlock(&c->trail_wmu);
    }
    if (due && !pthread_mutex_trylock(&c->trail_mu)) { /* (never waits with the core lock held) */
        due = take_role(c);
        pthread_mutex_unlock(&c->trail_mu);
    } else {
        due = false;
    }
    pthread_mutex_unlock(&c->lock);
    if (!due)
        return;
    (void)commit_round(c, false, false); /* due: writes the digest even with nothing queued */
    drop_role(c);
}

void kms_trail_flush_locked(kms_core *c)
{
    if (c->trail_init)
        (void)commit_round(c, false, true);
}

static kms_err kms_trail_commit_written(kms_core *c, uint64_t ticket)
{
    pthread_mutex_lock(&c->trail_mu);
    while (c->trail_durable < ticket) {
        if (c->trail_failed >= ticket) {
            pthread_mutex_unlock(&c->trail_mu);
            return KMS_ERR_IO;
        }
        if (!take_role(c)) {
            pthread_cond_wait(&c->trail_cv, &c->trail_mu);
            continue;
        }
        pthread_mutex_unlock(&c->trail_mu);
        /* Every record queued while the previous commit synced goes into this one. */
        (void)commit_round(c, false, false);
        pthread_mutex_lock(&c->trail_mu);
        c->trail_writing = false;
        pthread_cond_broadcast(&c->trail_cv);
    }
    pthread_mutex_unlock(&c->trail_mu);
    return KMS_OK;
}

kms_err kms_trail_commit(kms_core *c, uint64_t ticket)
{
    kms_err e = kms_trail_commit_written(c, ticket);
    /* written, but by a later round after a write of it failed (and its record says the call was refused) */
    if (!e && kms_trail_refused_in(c, ticket, ticket))
        e = KMS_ERR_IO;
    return e;
}

/* ---- outcomes without a waiting thread (kms_core_when_durable) ------------------------------------ */

struct kms_trail_waiter {
    uint64_t ticket;
    kms_durable_fn done;
    void *arg;
};

/* The outcome of ticket if known (trail_mu held): KMS_OK, KMS_ERR_IO, or -1 while it is pending. */
static int outcome_of(const kms_core *c, uint64_t ticket)
{
    if (c->trail_durable >= ticket) /* written; by a later round if a write of it failed (refused then) */
        return refused_locked(c, ticket, ticket) ? KMS_ERR_IO : KMS_OK;
    return c->trail_failed >= ticket ? KMS_ERR_IO : -1;
}

/* The committer thread: while outcomes are promised, take the committer's role (waiting for a caller of
 * kms_trail_commit that holds it), write a round (everything queued: every connection's record since
 * the last round shares it), then deliver the outcomes now known, outside trail_mu. Leaves once stopped
 * with nothing promised. */
static void *async_main(void *arg)
{
    kms_core *c = arg;
    pthread_mutex_lock(&c->trail_mu);
    for (;;) {
        struct kms_trail_waiter ready[64];
        size_t n_ready = 0, k = 0;
        if (!c->n_waiters) {
            if (c->async_stop)
                break;
            pthread_cond_wait(&c->async_cv, &c->trail_mu);
            continue;
        }
        if (!take_role(c)) {
            pthread_cond_wait(&c->trail_cv, &c->trail_mu); /* another committer's round may settle them */
        } else {
            pthread_mutex_unlock(&c->trail_mu);
            (void)commit_round(c, false, false);
            pthread_mutex_lock(&c->trail_mu);
            c->trail_writing = false;
            pthread_cond_broadcast(&c->trail_cv);
        }
        for (size_t i = 0; i < c->n_waiters; i++) { /* settled ones out (64 at a time), the rest kept in order */
            if (n_ready < sizeof ready / sizeof ready[0] && outcome_of(c, c->waiters[i].ticket) >= 0)
                ready[n_ready++] = c->waiters[i];
            else
                c->waiters[k++] = c->waiters[i];
        }
        c->n_waiters = k;
        pthread_mutex_unlock(&c->trail_mu);
        for (size_t i = 0; i < n_ready; i++) {
            int o;
            pthread_mutex_lock(&c->trail_mu);
            o = outcome_of(c, ready[i].ticket);
            pthread_mutex_unlock(&c->trail_mu);
            ready[i].done(ready[i].arg, (kms_err)o);
        }
        pthread_mutex_lock(&c->trail_mu);
    }
    pthread_mutex_unlock(&c->trail_mu);
    return NULL;
}

void kms_core_when_durable(kms_core *c, uint64_t ticket, kms_durable_fn done, void *arg)
{
    int o;
    pthread_mutex_lock(&c->trail_mu);
    o = outcome_of(c, ticket);
    if (o < 0 && c->n_waiters == c->cap_waiters) {
        size_t cap = c->cap_waiters ? 2 * c->cap_waiters : 64;
        struct kms_trail_waiter *w = realloc(c->waiters, cap * sizeof *w);
        if (w) {
            c->waiters = w;
            c->cap_waiters = cap;
        }
    }
    if (o < 0 && !c->async_started && !c->async_stop &&
        !pthread_create(&c->async_thread, NULL, async_main, c))
        c->async_started = true;
    if (o < 0 && (c->n_waiters == c->cap_waiters || !c->async_started || c->async_stop)) {
        /* no memory or no thread: wait here instead (the outcome is the same) */
        pthread_mutex_unlock(&c->trail_mu);
        done(arg, kms_trail_commit(c, ticket));
        return;
    }
    if (o < 0) {
        c->waiters[c->n_waiters++] = (struct kms_trail_waiter){ticket, done, arg};
        pthread_cond_signal(&c->async_cv);
    }
    pthread_mutex_unlock(&c->trail_mu);
    if (o >= 0)
        done(arg, (kms_err)o);
}

kms_err kms_core_wait_durable(kms_core *c, uint64_t ticket)
{
    return kms_trail_commit(c, ticket);
}

void kms_trail_async_stop(kms_core *c)
{
    bool started;
    if (!c->trail_init)
        return;
    pthread_mutex_lock(&c->trail_mu);
    c->async_stop = true;
    started = c->async_started;
    pthread_cond_broadcast(&c->async_cv);
    pthread_mutex_unlock(&c->trail_mu);
    if (started)
        pthread_join(c->async_thread, NULL); /* after the last promised outcome was delivered */}

void kms_core_trail_stats(kms_core *c, kms_trail_stats *out)
{
    out->commits = atomic_load(&c->trail_commits);
    out->records = atomic_load(&c->trail_records);
    out->max_batch = atomic_load(&c->trail_max_batch);
    out->failures = atomic_load(&c->trail_write_failures);
}

void kms_trail_close(kms_core *c)
{
    if (!c->trail_init)
        return;
    if (c->w_db)
        (void)commit_round(c, true, true);
    pthread_mutex_lock(&c->trail_wmu);
    free_recs(c->q, c->q_n);
    free(c->q);
    c->q = NULL;
    c->q_n = c->q_cap = 0;
    free_recs(c->w_batch, c->w_n);
    free(c->w_batch);
    c->w_batch = NULL;
    c->w_n = c->w_cap = 0;
    sqlite3_finalize(c->audit_ins);
    sqlite3_finalize(c->audit_head);
    sqlite3_finalize(c->audit_begin);
    sqlite3_finalize(c->audit_commit);
    c->audit_ins = c->audit_head = c->audit_begin = c->audit_commit = NULL;
    sqlite3_close(c->w_db);
    c->w_db = NULL;
    pthread_mutex_unlock(&c->trail_wmu);
}

void kms_trail_free(kms_core *c)
{
    sodium_free(c->audit_sk); /* here, after the maintenance thread (it borrows the key for pruning) stopped */
    c->audit_sk = NULL;
    if (!c->trail_init)
        return;
    free(c->waiters);
    c->waiters = NULL;
    pthread_cond_destroy(&c->async_cv);
    pthread_cond_destroy(&c->trail_cv);
    pthread_mutex_destroy(&c->trail_mu);
    pthread_mutex_destroy(&c->trail_wmu);
    c->trail_init = false;
}
