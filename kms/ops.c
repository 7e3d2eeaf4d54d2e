/*
 * ops.c — AWS KMS operations on the in-memory key tables (write-through to the keystore).
 * Semantics, field names, limits and error names follow the AWS KMS API (botocore's service-2.json).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "common/jsonb64.h"
#include "aead.h"
#include "blob.h"
#include "ectx.h"
#include "authz.h"
#include "keymat.h"
#include "oputil.h"

#define DAY 86400

/* ---- small helpers -------------------------------------------------------------------------- */

/* Set the operation's error message (printf-style; NULL: none) and return e. */
#define fail(x, e, ...) (kms_set_msg((x)->msg, __VA_ARGS__), (e))

static kms_err invalid(struct op_ctx *x, const char *field, const char *constraint)
{
    return fail(x, KMS_ERR_VALIDATION, "1 validation error detected: Value at '%s' failed to satisfy constraint: %s",
                field, constraint);
}

/* Optional string field; *out NULL when absent. Non-strings are a validation error. */
static kms_err get_str(struct op_ctx *x, json_t *in, const char *field, bool required, const char **out)
{
    json_t *v = json_object_get(in, field);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required)
            return invalid(x, field, "Member must not be null");
        return KMS_OK;
    }
    if (!json_is_string(v))
        return fail(x, KMS_ERR_SERIALIZATION, "%s must be a string", field);
    *out = json_string_value(v);
    return KMS_OK;
}

static kms_err get_int(struct op_ctx *x, json_t *in, const char *field, bool *present, long long *out)
{
    json_t *v = json_object_get(in, field);
    *present = false;
    if (!v || json_is_null(v))
        return KMS_OK;
    if (!json_is_integer(v))
        return fail(x, KMS_ERR_SERIALIZATION, "%s must be an integer", field);
    *present = true;
    *out = json_integer_value(v);
    return KMS_OK;
}

/* Decode a base64 field into a malloc'd buffer. */
static kms_err get_b64(struct op_ctx *x, json_t *in, const char *field, bool required, size_t max,
                       uint8_t **out, size_t *out_len)
{
    const char *s;
    kms_err e = get_str(x, in, field, required, &s);
    size_t cap;
    *out = NULL;
    *out_len = 0;
    if (e || !s)
        return e;
    cap = strlen(s) / 4 * 3 + 3;
    *out = malloc(cap ? cap : 1);
    if (!*out)
        return KMS_ERR_NOMEM;
    if (efs_base64_decode(*out, cap, s, strlen(s), "\r\n", out_len, sodium_base64_VARIANT_ORIGINAL)) {
        free(*out);
        *out = NULL;
        return fail(x, KMS_ERR_SERIALIZATION, "%s is not valid base64", field);
    }
    if (*out_len == 0 || *out_len > max) {
        sodium_memzero(*out, cap);
        free(*out);
        *out = NULL;
        return fail(x, KMS_ERR_VALIDATION,
                    "1 validation error detected: Value at '%s' failed to satisfy constraint: Member must have length "
                    "between 1 and %zu", field, max);
    }
    return KMS_OK;
}

/* Parse an EncryptionContext object: string → string. pairs is malloc'd (strings borrowed from in). */
static kms_err get_ectx(struct op_ctx *x, json_t *in, const char *field, kms_ectx *ctx, kms_ectx_pair **pairs)
{
    json_t *obj = json_object_get(in, field), *v;
    const char *k;
    size_t i = 0;
    ctx->pairs = NULL;
    ctx->n = 0;
    *pairs = NULL;
    if (!obj || json_is_null(obj))
        return KMS_OK;
    if (!json_is_object(obj))
        return fail(x, KMS_ERR_SERIALIZATION, "%s must be an object of strings", field);
    if (json_object_size(obj) == 0)
        return KMS_OK;
    *pairs = calloc(json_object_size(obj), sizeof **pairs);
    if (!*pairs)
        return KMS_ERR_NOMEM;
    json_object_foreach(obj, k, v) {
        if (!json_is_string(v)) {
            free(*pairs);
            *pairs = NULL;
            return fail(x, KMS_ERR_SERIALIZATION, "%s values must be strings", field);
        }
        (*pairs)[i].key = k;
        (*pairs)[i].value = json_string_value(v);
        i++;
    }
    ctx->pairs = *pairs;
    ctx->n = i;
    return KMS_OK;
}

/* "arn:aws:kms:REGION:OWNER:key/ID", truncated to cap - 1 bytes (authz.c; joined by hand: every
 * data-key response carries one, and snprintf's format interpreter showed in profiles). */
static void key_arn(kms_core *c, const kms_key *k, char *buf, size_t cap)
{
    kms_key_arn_of(c, k, buf, cap);
}

static bool valid_alias_name(const char *n)
{
    if (strncmp(n, "alias/", 6) || strlen(n) > 256 || strlen(n) <= 6)
        return false;
    for (const char *p = n + 6; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("/_-", *p))
            return false;
    return true;
}

/* Resolve KeyId: key id, key ARN, alias name or alias ARN, then authorize its use. A key id or alias
 * name means a key of the caller's account (as in AWS); an ARN names the account, so another account's
 * key is reachable only by its ARN (or a ciphertext that carries its id). */
static kms_err resolve(struct op_ctx *x, const char *id, kms_key **out)
{
    kms_core *c = x->core;
    const char *rest = id, *acct = kms_caller_account(c, x->caller), *alias = NULL;
    char acct_buf[13];
    *out = NULL;
    if (!id || !*id)
        return invalid(x, "keyId", "Member must have length greater than or equal to 1");
    if (strlen(id) > 2048)
        return invalid(x, "keyId", "Member must have length less than or equal to 2048");
    if (!strncmp(id, "arn:", 4)) {
        size_t rl = strlen(c->region);
        const char *a;
        if (strncmp(id, "arn:aws:kms:", 12))
            return fail(x, KMS_ERR_INVALID_ARN, "Invalid arn %s", id);
        if (strncmp(id + 12, c->region, rl) || id[12 + rl] != ':')
            return fail(x, KMS_ERR_NOT_FOUND, "Invalid arn %s: no such region here", id);
        a = id + 12 + rl + 1;
        if (strspn(a, "0123456789") != 12 || a[12] != ':')
            return fail(x, KMS_ERR_INVALID_ARN, "Invalid arn %s", id);
        memcpy(acct_buf, a, 12);
        acct_buf[12] = 0;
        acct = acct_buf;
        rest = a + 13;
        if (strncmp(rest, "key/", 4) && strncmp(rest, "alias/", 6))
            return fail(x, KMS_ERR_INVALID_ARN, "Invalid arn %s", id);
        if (!strncmp(rest, "key/", 4))
            rest += 4;
    }
    if (!strncmp(rest, "alias/", 6)) {
        kms_alias *a = kms_find_alias(c, rest);
        kms_key *t = a ? kms_find_key(c, a->key_id) : NULL;
        if (!t || strcmp(t->owner, acct))
            return fail(x, KMS_ERR_NOT_FOUND, "Alias arn:aws:kms:%s:%s:%s is not found.", c->region, acct, rest);
        alias = a->name;
        rest = a->key_id;
    }
    *out = kms_find_key(c, rest);
    if (!*out || strcmp((*out)->owner, acct)) {
        *out = NULL;
        return fail(x, KMS_ERR_NOT_FOUND, "Key 'arn:aws:kms:%s:%s:key/%s' does not exist", c->region, acct, rest);
    }
    snprintf(x->key_id, KMS_KEY_ID_LEN + 1, "%s", (*out)->id);
    return kms_authorize_key(x, *out, alias);
}

static kms_err check_usable(struct op_ctx *x, kms_key *k)
{
    char arn[160];
    if (k->state == KS_ENABLED)
        return KMS_OK;
    key_arn(x->core, k, arn, sizeof arn);
    if (k->state == KS_DISABLED)
        return fail(x, KMS_ERR_DISABLED, "%s is disabled.", arn);
    if (k->state == KS_PENDING_IMPORT)
        return fail(x, KMS_ERR_INVALID_STATE, "%s is pending import.", arn);
    if (kms_awaiting_replicas(k))
        return fail(x, KMS_ERR_INVALID_STATE, "%s is pending replica deletion.", arn);
    return fail(x, KMS_ERR_INVALID_STATE, "%s is pending deletion.", arn);
}

/* Automatic rotation is applied lazily, at the first use after it is due. */
static kms_err maybe_rotate(struct op_ctx *x, kms_key *k)
{
    int64_t now = kms_now(x->core);
    kms_err e = KMS_OK;
    bool rotated = false;
    if (k->rotation_enabled && k->next_rotation && now >= k->next_rotation && kms_mrk_is_replica(x->core, k))
        return KMS_OK; /* a replica receives its primary's versions */
    while (!e && k->rotation_enabled && k->state == KS_ENABLED && k->next_rotation && now >= k->next_rotation) {
        k->next_rotation += (int64_t)k->rotation_period * DAY;
        e = kms_store_add_version(x->core, k, 1, x->msg);
        rotated = !e;
    }
    if (rotated && kms_is_mrk(k))
        kms_mrk_push(x->core, x->caller, k);
    return e;
}

void kms_sweep_deletions(kms_core *c)
{
    int64_t now = kms_now(c), next = INT64_MAX;
    if (c->sweep_at && now < c->sweep_at)
        return; /* no key's deadline has come (every write of a key row resets sweep_at) */
    for (size_t i = 0; i < c->n_keys;) {
        kms_key *k = &c->keys[i];
        if (kms_awaiting_replicas(k)) { /* no date yet: its replicas are looked at now and then */
            if (now >= k->replica_check_at && c->n_replica_due < KMS_REPLICA_DUE_MAX) {
                k->replica_check_at = now + KMS_REPLICA_RECHECK_S;
                snprintf(c->replica_due[c->n_replica_due++], KMS_KEY_ID_LEN + 1, "%s", k->id);
            }
        } else if (k->state == KS_PENDING_DELETION && now >= k->deletion_date) {
            char id[KMS_KEY_ID_LEN + 1];
            memcpy(id, k->id, sizeof id);
            if (kms_store_destroy_key(c, id, NULL) == KMS_OK)
                continue; /* array shifted */
        }
        if (k->external && k->expires && k->n_versions && now >= k->valid_to && k->state != KS_PENDING_DELETION) {
            /* imported material past its ValidTo is deleted: the key waits for a reimport */
            kms_key saved = *k;
            k->state = KS_PENDING_IMPORT;
            if (kms_store_delete_material(c, k, NULL)) {
                k->state = saved.state;
            }
        }
        i++;
    }
    /* The next deadline of what is left (a deletion that failed above is due again: now). */
    for (size_t i = 0; i < c->n_keys; i++) {
        const kms_key *k = &c->keys[i];
        if (kms_awaiting_replicas(k) && k->replica_check_at < next)
            next = k->replica_check_at;
        else if (k->state == KS_PENDING_DELETION && !kms_awaiting_replicas(k) && k->deletion_date < next)
            next = k->deletion_date;
        if (k->external && k->expires && k->n_versions && k->state != KS_PENDING_DELETION && k->valid_to < next)
            next = k->valid_to;
    }
    c->sweep_at = next > 0 ? next : 1; /* (0 means "not known") */
}

json_t *kms_op_key_metadata(kms_core *c, const kms_key *k)
{
    static const char *const states[] = {"Enabled", "Disabled", "PendingDeletion", "PendingImport"};
    char arn[160];
    json_t *m;
    key_arn(c, k, arn, sizeof arn);
    m = json_pack("{s:s, s:s, s:s, s:I, s:b, s:s, s:s, s:s, s:s, s:b, s:s}", "AWSAccountId", k->owner, "KeyId",
                  k->id, "Arn", arn, "CreationDate", (json_int_t)k->created, "Enabled", k->state == KS_ENABLED,
                  "Description", k->description ? k->description : "", "KeyState",
                  kms_awaiting_replicas(k) ? "PendingReplicaDeletion" : states[k->state], "Origin",
                  k->external ? "EXTERNAL" : "AWS_KMS", "KeyManager", "CUSTOMER", "MultiRegion", 0,
                  "CurrentKeyMaterialId", "");
    if (!m || kms_spec_describe(m, k->spec, k->usage)) { /* KeySpec, KeyUsage, the algorithm list */
        json_decref(m);
        return NULL;
    }
    {
        char mid[80];
        snprintf(mid, sizeof mid, "%s-v%u", k->id, (unsigned)k->n_versions);
        json_object_set_new(m, "CurrentKeyMaterialId", json_string(mid));
    }
    if (k->external && k->n_versions) {
        json_object_set_new(m, "ExpirationModel",
                            json_string(k->expires ? "KEY_MATERIAL_EXPIRES" : "KEY_MATERIAL_DOES_NOT_EXPIRE"));
        if (k->expires)
            json_object_set_new(m, "ValidTo", json_integer(k->valid_to));
    }
    if (!k->n_versions)
        json_object_set_new(m, "CurrentKeyMaterialId", json_string(""));
    kms_mrk_describe(c, k, m);
    kms_cks_describe(c, k, m); /* a custom key store's key: Origin AWS_CLOUDHSM, its store and cluster */
    /* botocore's KeyMetadata: DeletionDate "present only when ... PendingDeletion"; PendingDeletionWindowInDays
     * "present only when the KeyState of the KMS key is PendingReplicaDeletion" */
    if (kms_awaiting_replicas(k))
        json_object_set_new(m, "PendingDeletionWindowInDays", json_integer(k->pending_days));
    else if (k->state == KS_PENDING_DELETION)
        json_object_set_new(m, "DeletionDate", json_integer(k->deletion_date));
    return m;
}

/* Seal plaintext under the key's newest version. */
static kms_err seal_blob(struct op_ctx *x, kms_key *k, const uint8_t *pt, size_t n, const kms_ectx *ectx,
                         json_t **blob_json)
{
    kms_gcm_key *gk;
    uint8_t *aad = NULL, nonce[KMS_BLOB_NONCE_LEN], *blob;
    size_t aad_len;
    kms_version *v = &k->versions[k->n_versions - 1];
    kms_err e;
    if (k->hsm) /* sealed inside the custom key store's token (cks.c) */
        return kms_cks_seal(x, k, pt, n, ectx, blob_json);
    if ((e = kms_store_cipher(x->core, k, v, &gk, x->msg)))
        return e;
    if (kms_ectx_encode(ectx, &aad, &aad_len))
        return fail(x, KMS_ERR_VALIDATION, "EncryptionContext keys must be non-empty and keys/values at most 65535 bytes");
    blob = malloc(n + KMS_BLOB_OVERHEAD);
    if (!blob) {
        free(aad);
        return KMS_ERR_NOMEM;
    }
    if (kms_random(nonce, sizeof nonce)) {
        free(aad);
        free(blob);
        return fail(x, KMS_ERR_INTERNAL, "no random bytes");
    }
    kms_blob_write_header(blob, k->raw_id, v->version, nonce);
    if (kms_gcm_seal(gk, nonce, blob, KMS_BLOB_HEADER_LEN, aad, aad_len, pt, n, blob + KMS_BLOB_HEADER_LEN,
                     blob + KMS_BLOB_HEADER_LEN + n)) {
        free(aad);
        free(blob);
        return fail(x, KMS_ERR_INTERNAL, "encryption failed");
    }
    *blob_json = efs_json_base64(blob, n + KMS_BLOB_OVERHEAD);
    free(aad);
    free(blob);
    return *blob_json ? KMS_OK : KMS_ERR_NOMEM;
}

/* Open a blob. explicit_key may be NULL. *pt is this thread's scratch buffer: wipe *pt_len bytes after use. */
static kms_err open_blob(struct op_ctx *x, const uint8_t *buf, size_t len, const kms_ectx *ectx,
                         kms_key *explicit_key, kms_key **used, uint8_t **pt, size_t *pt_len)
{
    kms_blob b;
    kms_key *k = NULL;
    char id[KMS_KEY_ID_LEN + 1];
    kms_gcm_key *gk;
    uint8_t *aad = NULL;
    size_t aad_len;
    kms_err e;

    *pt = NULL;
    if (kms_blob_parse(buf, len, &b))
        return fail(x, KMS_ERR_INVALID_CIPHERTEXT, NULL);
    snprintf(id, sizeof id, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b.key_id[0],
             b.key_id[1], b.key_id[2], b.key_id[3], b.key_id[4], b.key_id[5], b.key_id[6], b.key_id[7], b.key_id[8],
             b.key_id[9], b.key_id[10], b.key_id[11], b.key_id[12], b.key_id[13], b.key_id[14], b.key_id[15]);
    if (explicit_key && strcmp(explicit_key->id, id) && !kms_is_mrk(explicit_key)) {
        char arn[160];
        key_arn(x->core, explicit_key, arn, sizeof arn);
        return fail(x, KMS_ERR_INCORRECT_KEY,
                    "The key ID in the request does not identify a CMK that can perform this operation.");
    }
    k = explicit_key ? explicit_key : kms_find_key(x->core, id);
    if (!k && !explicit_key) { /* a multi-Region key: the same raw id, "mrk-" + hex */
        kms_mrk_id(b.key_id, id);
        k = kms_find_key(x->core, id);
    }
    if (explicit_key && strcmp(explicit_key->id, id) && kms_is_mrk(explicit_key)) {
        kms_mrk_id(b.key_id, id);
        if (strcmp(explicit_key->id, id))
            return fail(x, KMS_ERR_INCORRECT_KEY,
                        "The key ID in the request does not identify a CMK that can perform this operation.");
    }
    if (!k || k->spec != KMS_SPEC_SYMMETRIC)
        return fail(x, KMS_ERR_INVALID_CIPHERTEXT, NULL); /* its key no longer exists (or never did) */
    if (!explicit_key) {
        snprintf(x->key_id, KMS_KEY_ID_LEN + 1, "%s", k->id);
        e = kms_authorize_key(x, k, NULL);
        if (e)
            return e;
    }
    e = check_usable(x, k);
    if (e)
        return e;
    if (b.version > k->n_versions && kms_is_mrk(k) && kms_mrk_is_replica(x->core, k)) {
        char *m = NULL;
        (void)kms_mrk_pull(x->core, k, &m); /* a rotation of the primary this replica missed */
        free(m);
    }
    if (b.version > k->n_versions)
        return fail(x, KMS_ERR_INVALID_CIPHERTEXT, NULL);
    if (k->hsm) { /* opened inside the custom key store's token (cks.c) */
        *pt = kms_scratch(b.ciphertext_len ? b.ciphertext_len : 1);
        if (!*pt)
            return KMS_ERR_NOMEM;
        if ((e = kms_cks_open(x, k, &b, ectx, *pt))) {
            sodium_memzero(*pt, b.ciphertext_len);
            *pt = NULL;
            return e;
        }
        *pt_len = b.ciphertext_len;
        *used = k;
        return KMS_OK;
    }
    e = kms_store_cipher(x->core, k, &k->versions[b.version - 1], &gk, x->msg);
    if (e)
        return e;
    if (kms_ectx_encode(ectx, &aad, &aad_len))
        return fail(x, KMS_ERR_INVALID_CIPHERTEXT, NULL);
    *pt = kms_scratch(b.ciphertext_len ? b.ciphertext_len : 1);
    if (!*pt) {
        free(aad);
        return KMS_ERR_NOMEM;
    }
    if (kms_gcm_open(gk, b.nonce, b.header, KMS_BLOB_HEADER_LEN, aad, aad_len, b.ciphertext, b.ciphertext_len, b.tag,
                     *pt)) {
        free(aad);
        *pt = NULL; /* kms_gcm_open wiped the scratch */
        return fail(x, KMS_ERR_INVALID_CIPHERTEXT, NULL);
    }
    free(aad);
    *pt_len = b.ciphertext_len;
    *used = k;
    return KMS_OK;
}

/* DryRun: every authorisation of the call has passed; stop before doing it. */
static kms_err dry_run(struct op_ctx *x)
{
    return x->dry_run ? fail(x, KMS_ERR_DRY_RUN, "The request would have succeeded, but the DryRun option is set.")
                      : KMS_OK;
}

static kms_err resolve_usable(struct op_ctx *x, json_t *in, kms_key **k)
{
    const char *id;
    kms_err e = get_str(x, in, "KeyId", true, &id);
    if (!e)
        e = resolve(x, id, k);
    if (!e)
        e = check_usable(x, *k);
    if (!e)
        e = maybe_rotate(x, *k);
    return e;
}

static kms_err resolve_any(struct op_ctx *x, json_t *in, kms_key **k)
{
    const char *id;
    kms_err e = get_str(x, in, "KeyId", true, &id);
    return e ? e : resolve(x, id, k);
}

/* Rotation of a multi-Region key is set and done at its primary (its versions reach the replicas). */
static kms_err not_replica(struct op_ctx *x, const kms_key *k)
{
    char arn[160];
    if (!kms_is_mrk(k) || !kms_mrk_is_replica(x->core, k))
        return KMS_OK;
    key_arn(x->core, k, arn, sizeof arn);
    return fail(x, KMS_ERR_UNSUPPORTED_OPERATION,
                "%s is a multi-Region replica key: rotate its primary key, whose new key material reaches it", arn);
}

/* Rotation is for SYMMETRIC_DEFAULT keys only (AWS refuses it for asymmetric and HMAC keys). */
static kms_err rotatable(struct op_ctx *x, const kms_key *k)
{
    char arn[160];
    if (k->spec == KMS_SPEC_SYMMETRIC && !k->external && !k->hsm)
        return KMS_OK;
    key_arn(x->core, k, arn, sizeof arn);
    if (k->hsm)
        return fail(x, KMS_ERR_UNSUPPORTED_OPERATION,
                    "%s is in custom key store %s: keys in a custom key store are not rotated.", arn, k->cks_id);
    if (k->external)
        return fail(x, KMS_ERR_UNSUPPORTED_OPERATION,
                    "%s has imported key material (Origin EXTERNAL): it is not rotated; put a new key behind the alias "
                    "instead.", arn);
    return fail(x, KMS_ERR_UNSUPPORTED_OPERATION,
                "%s is a %s key; key rotation is supported only for symmetric encryption KMS keys.", arn,
                kms_spec_name(k->spec));
}

static kms_err check_alg(struct op_ctx *x, json_t *in, const char *field)
{
    const char *alg;
    kms_err e = get_str(x, in, field, false, &alg);
    if (!e && alg && strcmp(alg, "SYMMETRIC_DEFAULT"))
        return fail(x, KMS_ERR_INVALID_KEY_USAGE, "%s %s is not supported by a SYMMETRIC_DEFAULT key", field, alg);
    return e;
}

#define KMS_MAX_TAGS 50

/* AWS's tag rules: TagKey 1-128 characters, TagValue 0-256, the aws: prefix reserved (TagException);
 * at most KMS_MAX_TAGS in one request (LimitExceededException). Characters, not bytes. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static kms_err check_tags(struct op_ctx *x, json_t *tags)
{
    json_t *t;
    size_t i;
    if (json_array_size(tags) > KMS_MAX_TAGS)
        return fail(x, KMS_ERR_LIMIT_EXCEEDED, "A key may have at most %d tags.", KMS_MAX_TAGS);
    json_array_foreach(tags, i, t) {
        const char *tk = json_string_value(json_object_get(t, "TagKey"));
        const char *tv = json_string_value(json_object_get(t, "TagValue"));
        if (!tk || !tv || !*tk || utf8_chars(tk) > 128 || utf8_chars(tv) > 256)
            return fail(x, KMS_ERR_TAG, "each tag needs a TagKey (1-128 characters) and a TagValue (0-256 characters)");
        if (!strncasecmp(tk, "aws:", 4))
            return fail(x, KMS_ERR_TAG, "Tag keys beginning with aws: are reserved for AWS use");
    }
    return KMS_OK;
}

/* ---- key lifecycle -------------------------------------------------------------------------- */

kms_err kms_op_create_key(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_core *c = x->core;
    const char *desc, *spec, *usage, *origin, *cks_id;
    kms_key k;
    uint8_t *material;
    size_t material_len;
    int ks = KMS_SPEC_SYMMETRIC, ku;
    kms_err e;
    json_t *tags = json_object_get(in, "Tags");
    uint8_t raw[16];
    bool multi_region;

    if ((e = get_str(x, in, "Description", false, &desc)) || (e = get_str(x, in, "KeySpec", false, &spec)) ||
        (e = get_str(x, in, "KeyUsage", false, &usage)) || (e = get_str(x, in, "Origin", false, &origin)) ||
        (e = get_str(x, in, "CustomKeyStoreId", false, &cks_id)))
        return e;
    {
        const char *cmks;
        if ((e = get_str(x, in, "CustomerMasterKeySpec", false, &cmks)))
            return e;
        if (spec && cmks)
            return fail(x, KMS_ERR_VALIDATION,
                        "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec "
                        "is deprecated.");
        if (!spec)
            spec = cmks;
    }
    if (desc && strlen(desc) > 8192)
        return invalid(x, "description", "Member must have length less than or equal to 8192");
    if (spec && (ks = kms_spec_parse(spec)) < 0)
        return fail(x, KMS_ERR_VALIDATION,
                    "1 validation error detected: Value '%s' at 'keySpec' failed to satisfy constraint: Member must "
                    "satisfy enum value set: [RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, "
                    "ECC_SECG_P256K1, SYMMETRIC_DEFAULT, HMAC_224, HMAC_256, HMAC_384, HMAC_512]", spec);
    if (usage && kms_usage_parse(usage) < 0)
        return fail(x, KMS_ERR_VALIDATION,
                    "1 validation error detected: Value '%s' at 'keyUsage' failed to satisfy constraint: Member must "
                    "satisfy enum value set: [SIGN_VERIFY, ENCRYPT_DECRYPT, GENERATE_VERIFY_MAC]", usage);
    ku = usage ? kms_usage_parse(usage) : kms_spec_default_usage((enum kms_key_spec)ks);
    if (ku < 0)
        return fail(x, KMS_ERR_VALIDATION, "You must specify a KeyUsage value for a %s KMS key.",
                    kms_spec_is_hmac((enum kms_key_spec)ks) ? "HMAC" : "asymmetric");
    if (!kms_spec_usage_valid((enum kms_key_spec)ks, (enum kms_key_usage)ku))
        return fail(x, KMS_ERR_VALIDATION, "KeyUsage %s is not compatible with KeySpec %s", usage, spec ? spec : "SYMMETRIC_DEFAULT");
    if (cks_id && (!*cks_id || strlen(cks_id) > 64))
        return invalid(x, "customKeyStoreId", "Member must have length between 1 and 64");
    if (cks_id && !origin)
        origin = "AWS_CLOUDHSM"; /* the only kind of custom key store here */
    if (origin && !strcmp(origin, "AWS_CLOUDHSM") && !cks_id)
        return fail(x, KMS_ERR_UNSUPPORTED_OPERATION, "Origin AWS_CLOUDHSM needs a CustomKeyStoreId");
    if (cks_id && strcmp(origin, "AWS_CLOUDHSM"))
        return fail(x, KMS_ERR_UNSUPPORTED_OPERATION,
                    "A key in custom key store %s must have Origin AWS_CLOUDHSM, not %s", cks_id, origin);
    if (cks_id && ks != KMS_SPEC_SYMMETRIC)
        return fail(x, KMS_ERR_UNSUPPORTED_OPERATION,
                    "KeySpec %s is not supported in a custom key store; only SYMMETRIC_DEFAULT", spec);
    if (origin && strcmp(origin, "AWS_KMS") && strcmp(origin, "EXTERNAL") && strcmp(origin, "AWS_CLOUDHSM")) {
        if (!strcmp(origin, "EXTERNAL_KEY_STORE"))
            return fail(x, KMS_ERR_UNSUPPORTED_OPERATION, "Origin %s is not supported: this key service has no external key stores", origin);
        return fail(x, KMS_ERR_VALIDATION,
                    "1 validation error detected: Value '%s' at 'origin' failed to satisfy constraint: Member must "
                    "satisfy enum value set: [EXTERNAL_KEY_STORE, AWS_CLOUDHSM, AWS_KMS, EXTERNAL]", origin);
    }
    if (origin && !strcmp(origin, "EXTERNAL") && ks != KMS_SPEC_SYMMETRIC)
        return fail(x, KMS_ERR_UNSUPPORTED_OPERATION, "KeySpec %s is not supported for Origin EXTERNAL; only SYMMETRIC_DEFAULT", spec);
    if (tags && !json_is_array(tags))
        return fail(x, KMS_ERR_SERIALIZATION, "Tags must be a list");
    if (tags && (e = check_tags(x, tags)))
        return e;
    {
        json_t *mr = json_object_get(in, "MultiRegion");
        if (mr && !json_is_boolean(mr))
            return fail(x, KMS_ERR_SERIALIZATION, "MultiRegion must be a boolean");
        multi_region = json_is_true(mr);
    }
    if (multi_region && cks_id)
        return fail(x, KMS_ERR_UNSUPPORTED_OPERATION, "A multi-Region key cannot be in a custom key store");
    e = kms_authorize(c, x->caller, x->operation, NULL);
    if (e)
        return e;
    memset(&k, 0, sizeof k);
    randombytes_buf(raw, 16);
    raw[6] = (uint8_t)((raw[6] & 0x0f) | 0x40); /* UUID v4 */
    raw[8] = (uint8_t)((raw[8] & 0x3f) | 0x80);
    memcpy(k.raw_id, raw, 16);
    snprintf(k.id, sizeof k.id, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", raw[0], raw[1],
             raw[2], raw[3], raw[4], raw[5], raw[6], raw[7], raw[8], raw[9], raw[10], raw[11], raw[12], raw[13],
             raw[14], raw[15]);
    if (multi_region)
        kms_mrk_id(raw, k.id); /* "mrk-" + 32 hex (mrk.c) */
    k.created = kms_now(c);
    k.description = (char *)(desc ? desc : "");
    k.state = KS_ENABLED;
    k.rotation_period = 365;
    snprintf(k.owner, sizeof k.owner, "%s", kms_caller_account(c, x->caller)); /* the caller's account's key */
    if ((e = kms_new_key_policy(x, in, &k))) /* before any key material exists */
        return e;
    k.spec = (enum kms_key_spec)ks;
    k.usage = (enum kms_key_usage)ku;
    k.external = origin && !strcmp(origin, "EXTERNAL");
    material = NULL;
    material_len = 0;
    if (cks_id) { /* generated inside the custom key store's token; nothing in this store (cks.c) */
        if ((e = kms_cks_create_key(x, cks_id, &k))) {
            kms_key_access_free(&k);
            return e;
        }
    } else if (k.external) {
        k.state = KS_PENDING_IMPORT; /* no material until ImportKeyMaterial (import.c) */
    } else if (kms_spec_is_asymmetric(k.spec)) { /* seconds for RSA_4096: with the core lock released */
        EVP_PKEY *pk = kms_op_keygen(x, k.spec);
        int rc = pk ? kms_keymat_from_pkey(pk, &material, &material_len) : -1;
        EVP_PKEY_free(pk);
        if (rc) {
            kms_key_access_free(&k);
            return fail(x, KMS_ERR_INTERNAL, "could not generate a %s key pair", kms_spec_name(k.spec));
        }
    } else if (kms_keymat_generate(k.spec, &material, &material_len)) {
        kms_key_access_free(&k);
        return fail(x, KMS_ERR_INTERNAL, "could not generate key material for %s", kms_spec_name(k.spec));
    }
    e = kms_store_insert_key(c, &k, material, material_len, x->msg);
    if (e && k.hsm)
        kms_cks_key_destroyed(c, &k); /* the token object of a key that was not recorded */
    sodium_free(material); /* NULL: no-op */
    kms_key_access_free(&k); /* the table holds its own copy */
    if (e)
        return e;
    snprintf(x->key_id, KMS_KEY_ID_LEN + 1, "%s", k.id);
    if (multi_region && (e = kms_mrk_created(c, &k, x->msg)))
        return e;
    if (tags) {
        size_t i;
        json_t *t;
        json_array_foreach(tags, i, t) {
            e = kms_store_set_tag(c, k.id, json_string_value(json_object_get(t, "TagKey")),
                                  json_string_value(json_object_get(t, "TagValue")), x->msg);
            if (e)
                return e;
        }
    }
    *out = json_pack("{s:o}", "KeyMetadata", kms_op_key_metadata(c, kms_find_key(c, k.id)));
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}

kms_err kms_op_describe_key(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    kms_err e = resolve_any(x, in, &k);
    if (e)
        return e;
    *out = json_pack("{s:o}", "KeyMetadata", kms_op_key_metadata(x->core, k));
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}

/* Paging: Marker is the decimal index of the next item (opaque to callers). */
static kms_err paging(struct op_ctx *x, json_t *in, long long def, long long max, size_t total, size_t *start,
                      size_t *limit)
{
    bool has;
    long long lim = def;
    const char *marker;
    kms_err e = get_int(x, in, "Limit", &has, &lim);
    if (e)
        return e;
    if (!has)
        lim = def;
    if (lim < 1 || lim > max)
        return fail(x, KMS_ERR_VALIDATION,
                    "1 validation error detected: Value '%lld' at 'limit' failed to satisfy constraint: Member must "
                    "have value between 1 and %lld", lim, max);
    e = get_str(x, in, "Marker", false, &marker);
    if (e)
        return e;
    *start = 0;
    if (marker) {
        char *end;
        unsigned long long v = strtoull(marker, &end, 10);
        if (!*marker || *end || v > total)
            return fail(x, KMS_ERR_INVALID_MARKER, "Invalid marker %s", marker);
        *start = (size_t)v;
    }
    *limit = (size_t)lim;
    return KMS_OK;
}

static void page_end(json_t *o, size_t next, size_t total)
{
    if (next < total) {
        char m[32];
        snprintf(m, sizeof m, "%zu", next);
        json_object_set_new(o, "NextMarker", json_string(m));
        json_object_set_new(o, "Truncated", json_true());
    } else {
        json_object_set_new(o, "Truncated", json_false());
    }
}

/* ListKeys lists the caller's account's keys: the Marker is the index among them. */
kms_err kms_op_list_keys(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_core *c = x->core;
    const char *acct = kms_caller_account(c, x->caller);
    size_t start, limit, i, total = 0, seen = 0, next;
    kms_err e;
    json_t *arr;
    for (i = 0; i < c->n_keys; i++)
        total += !strcmp(c->keys[i].owner, acct);
    e = paging(x, in, 100, 1000, total, &start, &limit);
    if (!e)
        e = kms_authorize(c, x->caller, x->operation, NULL);
    if (e)
        return e;
    arr = json_array();
    next = start;
    for (i = 0; i < c->n_keys && next < start + limit; i++) {
        char arn[160];
        if (strcmp(c->keys[i].owner, acct) || seen++ < start)
            continue;
        key_arn(c, &c->keys[i], arn, sizeof arn);
        json_array_append_new(arr, json_pack("{s:s, s:s}", "KeyId", c->keys[i].id, "KeyArn", arn));
        next++;
    }
    *out = json_pack("{s:o}", "Keys", arr);
    page_end(*out, next, total);
    return KMS_OK;
}

kms_err kms_op_update_key_description(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    const char *desc;
    char *old;
    kms_err e = resolve_any(x, in, &k);
    if (!e)
        e = get_str(x, in, "Description", true, &desc);
    if (e)
        return e;
    if (strlen(desc) > 8192)
        return invalid(x, "description", "Member must have length less than or equal to 8192");
    if (k->state == KS_PENDING_DELETION)
        return check_usable(x, k);
    old = k->description;
    k->description = strdup(desc);
    if (!k->description) {
        k->description = old;
        return KMS_ERR_NOMEM;
    }
    e = kms_store_update_key(x->core, k, x->msg);
    if (e) {
        free(k->description);
        k->description = old;
        return e;
    }
    free(old);
    *out = json_object();
    return KMS_OK;
}

static kms_err set_enabled(struct op_ctx *x, json_t *in, json_t **out, bool enable)
{
    kms_key *k;
    enum kms_key_state old;
    kms_err e = resolve_any(x, in, &k);
    if (e)
        return e;
    if (k->state == KS_PENDING_DELETION || k->state == KS_PENDING_IMPORT)
        return check_usable(x, k);
    old = k->state;
    k->state = enable ? KS_ENABLED : KS_DISABLED;
    e = kms_store_update_key(x->core, k, x->msg);
    if (e) {
        k->state = old;
        return e;
    }
    *out = json_object();
    return KMS_OK;
}

kms_err kms_op_enable_key(struct op_ctx *x, json_t *in, json_t **out) { return set_enabled(x, in, out, true); }
kms_err kms_op_disable_key(struct op_ctx *x, json_t *in, json_t **out) { return set_enabled(x, in, out, false); }

kms_err kms_op_schedule_key_deletion(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    bool has;
    long long days = 30;
    kms_key saved;
    char arn[160];
    size_t replicas = 0;
    kms_err e = resolve_any(x, in, &k);
    if (!e)
        e = get_int(x, in, "PendingWindowInDays", &has, &days);
    if (e)
        return e;
    if (!has)
        days = 30;
    if (days < 7 || days > 30)
        return fail(x, KMS_ERR_VALIDATION,
                    "1 validation error detected: Value '%lld' at 'pendingWindowInDays' failed to satisfy constraint: "
                    "Member must have value between 7 and 30", days);
    if (k->state == KS_PENDING_DELETION)
        return check_usable(x, k);
    if (kms_is_mrk(k)) {
        char id[KMS_KEY_ID_LEN + 1];
        snprintf(id, sizeof id, "%s", k->id);
        if ((e = kms_mrk_may_delete(x->core, id, &replicas, x->msg)))
            return e;
        /* the core lock was released while replicas on other servers were asked: look again */
        if (!(k = kms_find_key(x->core, id)))
            return fail(x, KMS_ERR_NOT_FOUND, "Key '%s' does not exist", id);
        if (k->state == KS_PENDING_DELETION)
            return check_usable(x, k);
    }
    /* A primary with replicas: PendingReplicaDeletion, its waiting period starting only when the last replica
     * is deleted (kms_mrk_check_replicas); no DeletionDate until then (botocore's ScheduleKeyDeletion). */
    saved = *k;
    k->state = KS_PENDING_DELETION;
    k->pending_days = (int)days;
    k->deletion_date = replicas ? 0 : kms_now(x->core) + days * DAY;
    k->replica_check_at = replicas ? kms_now(x->core) + KMS_REPLICA_RECHECK_S : 0;
    e = kms_store_update_key(x->core, k, x->msg);
    if (e) {
        *k = saved;
        return e;
    }
    key_arn(x->core, k, arn, sizeof arn);
    if (replicas)
        *out = json_pack("{s:s, s:s, s:I}", "KeyId", arn, "KeyState", "PendingReplicaDeletion", "PendingWindowInDays",
                         (json_int_t)days);
    else
        *out = json_pack("{s:s, s:I, s:s, s:I}", "KeyId", arn, "DeletionDate", (json_int_t)k->deletion_date,
                         "KeyState", "PendingDeletion", "PendingWindowInDays", (json_int_t)days);
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}

kms_err kms_op_cancel_key_deletion(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    kms_key saved;
    char arn[160];
    kms_err e = resolve_any(x, in, &k);
    if (e)
        return e;
    key_arn(x->core, k, arn, sizeof arn);
    if (k->state != KS_PENDING_DELETION)
        return fail(x, KMS_ERR_INVALID_STATE, "%s is not pending deletion.", arn);
    saved = *k;
    k->state = k->external && !k->n_versions ? KS_PENDING_IMPORT : KS_DISABLED;
    k->deletion_date = 0;
    k->pending_days = 0;
    e = kms_store_update_key(x->core, k, x->msg);
    if (e) {
        *k = saved;
        return e;
    }
    *out = json_pack("{s:s}", "KeyId", arn);
    return KMS_OK;
}

/* ---- rotation ------------------------------------------------------------------------------- */

kms_err kms_op_enable_key_rotation(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    bool has;
    long long period = 365;
    kms_key saved;
    kms_err e = resolve_any(x, in, &k);
    if (!e)
        e = get_int(x, in, "RotationPeriodInDays", &has, &period);
    if (e)
        return e;
    if (!has)
        period = 365;
    if (period < 90 || period > 2560)
        return fail(x, KMS_ERR_VALIDATION,
                    "1 validation error detected: Value '%lld' at 'rotationPeriodInDays' failed to satisfy "
                    "constraint: Member must have value between 90 and 2560", period);
    if ((e = rotatable(x, k)) || (e = not_replica(x, k)) || (e = check_usable(x, k)))
        return e;
    saved = *k;
    k->rotation_enabled = true;
    k->rotation_period = (int)period;
    k->next_rotation = kms_now(x->core) + period * DAY;
    e = kms_store_update_key(x->core, k, x->msg);
    if (e) {
        *k = saved;
        return e;
    }
    *out = json_object();
    return KMS_OK;
}

kms_err kms_op_disable_key_rotation(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    kms_key saved;
    kms_err e = resolve_any(x, in, &k);
    if (e)
        return e;
    if ((e = rotatable(x, k)) || (e = not_replica(x, k)) || (e = check_usable(x, k)))
        return e;
    saved = *k;
    k->rotation_enabled = false;
    k->next_rotation = 0;
    e = kms_store_update_key(x->core, k, x->msg);
    if (e) {
        *k = saved;
        return e;
    }
    *out = json_object();
    return KMS_OK;
}

kms_err kms_op_get_key_rotation_status(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    char arn[160];
    kms_err e = resolve_any(x, in, &k);
    if (e)
        return e;
    if ((e = rotatable(x, k)))
        return e;
    if (k->state == KS_PENDING_DELETION)
        return check_usable(x, k);
    key_arn(x->core, k, arn, sizeof arn);
    *out = json_pack("{s:b, s:s}", "KeyRotationEnabled", k->rotation_enabled, "KeyId", arn);
    if (k->rotation_enabled) {
        json_object_set_new(*out, "RotationPeriodInDays", json_integer(k->rotation_period));
        json_object_set_new(*out, "NextRotationDate", json_integer(k->next_rotation));
    }
    if (k->n_versions > 1 && !k->versions[k->n_versions - 1].automatic)
        json_object_set_new(*out, "OnDemandRotationStartDate", json_integer(k->versions[k->n_versions - 1].created));
    return KMS_OK;
}

kms_err kms_op_rotate_key_on_demand(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    char arn[160];
    kms_err e = resolve_any(x, in, &k);
    if (e)
        return e;
    if ((e = rotatable(x, k)) || (e = not_replica(x, k)) || (e = check_usable(x, k)))
        return e;
    if (k->n_versions >= 25 + 1)
        return fail(x, KMS_ERR_LIMIT_EXCEEDED, "a key can be rotated on demand at most 25 times");
    e = kms_store_add_version(x->core, k, 0, x->msg);
    if (e)
        return e;
    if (kms_is_mrk(k))
        kms_mrk_push(x->core, x->caller, k); /* to every replica it reaches */
    key_arn(x->core, k, arn, sizeof arn);
    *out = json_pack("{s:s}", "KeyId", arn);
    return KMS_OK;
}

kms_err kms_op_list_key_rotations(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    size_t start, limit, i, total;
    json_t *arr;
    kms_err e = resolve_any(x, in, &k);
    if (!e)
        e = rotatable(x, k);
    if (e)
        return e;
    total = k->n_versions - 1; /* the original material is not a rotation */
    if ((e = paging(x, in, 100, 1000, total, &start, &limit)))
        return e;
    arr = json_array();
    for (i = start; i < total && i < start + limit; i++) {
        kms_version *v = &k->versions[i + 1];
        char arn[160], mid[80];
        key_arn(x->core, k, arn, sizeof arn);
        snprintf(mid, sizeof mid, "%s-v%u", k->id, v->version);
        json_array_append_new(arr, json_pack("{s:s, s:I, s:s, s:s}", "KeyId", arn, "RotationDate",
                                             (json_int_t)v->created, "RotationType",
                                             v->automatic ? "AUTOMATIC" : "ON_DEMAND", "KeyMaterialId", mid));
    }
    *out = json_pack("{s:o}", "Rotations", arr);
    page_end(*out, i, total);
    return KMS_OK;
}

/* ---- aliases -------------------------------------------------------------------------------- */

static kms_err alias_target(struct op_ctx *x, json_t *in, kms_key **k)
{
    const char *tid;
    kms_err e = get_str(x, in, "TargetKeyId", true, &tid);
    if (e)
        return e;
    if (!strncmp(tid, "alias/", 6) || strstr(tid, ":alias/"))
        return fail(x, KMS_ERR_VALIDATION, "TargetKeyId must be a key id or key ARN, not an alias");
    e = resolve(x, tid, k);
    if (!e && strcmp((*k)->owner, kms_caller_account(x->core, x->caller)))
        return fail(x, KMS_ERR_NOT_FOUND, "An alias must name a key of the caller's account, not %s", tid);
    if (!e && (*k)->state == KS_PENDING_DELETION)
        return check_usable(x, *k);
    return e;
}

static kms_err alias_name(struct op_ctx *x, json_t *in, const char **name)
{
    kms_err e = get_str(x, in, "AliasName", true, name);
    if (e)
        return e;
    if (!valid_alias_name(*name))
        return fail(x, KMS_ERR_VALIDATION,
                    "1 validation error detected: Value '%s' at 'aliasName' failed to satisfy constraint: Member must "
                    "satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$", *name);
    if (!strncmp(*name, "alias/aws/", 10))
        return fail(x, KMS_ERR_INVALID_ALIAS_NAME, "alias/aws/ is reserved for AWS managed keys");
    return KMS_OK;
}

/* Aliases are the caller's account's when their key is. */
static bool alias_of_caller(struct op_ctx *x, const kms_alias *a)
{
    const kms_key *k = kms_find_key(x->core, a->key_id);
    return k && !strcmp(k->owner, kms_caller_account(x->core, x->caller));
}

kms_err kms_op_create_alias(struct op_ctx *x, json_t *in, json_t **out)
{
    const char *name;
    kms_key *k;
    kms_alias a;
    kms_err e = alias_name(x, in, &name);
    if (!e)
        e = alias_target(x, in, &k);
    if (e)
        return e;
    if (kms_find_alias(x->core, name))
        return fail(x, KMS_ERR_ALREADY_EXISTS, "An alias with the name arn:aws:kms:%s:%s:%s already exists",
                    x->core->region, kms_caller_account(x->core, x->caller), name);
    memset(&a, 0, sizeof a);
    a.name = (char *)name;
    memcpy(a.key_id, k->id, sizeof a.key_id);
    a.created = a.updated = kms_now(x->core);
    e = kms_store_put_alias(x->core, &a, true, x->msg);
    if (!e)
        *out = json_object();
    return e;
}

kms_err kms_op_update_alias(struct op_ctx *x, json_t *in, json_t **out)
{
    const char *name;
    kms_key *k;
    kms_alias a, *old;
    kms_err e = alias_name(x, in, &name);
    if (!e)
        e = alias_target(x, in, &k);
    if (e)
        return e;
    old = kms_find_alias(x->core, name);
    if (!old || !alias_of_caller(x, old))
        return fail(x, KMS_ERR_NOT_FOUND, "Alias arn:aws:kms:%s:%s:%s is not found.", x->core->region,
                    kms_caller_account(x->core, x->caller), name);
    /* as in AWS, UpdateAlias needs kms:UpdateAlias on the key the alias leaves too */
    if ((e = kms_authorize_key(x, kms_find_key(x->core, old->key_id), old->name)))
        return e;
    a = *old;
    a.name = (char *)name;
    memcpy(a.key_id, k->id, sizeof a.key_id);
    a.updated = kms_now(x->core);
    e = kms_store_put_alias(x->core, &a, false, x->msg);
    if (!e)
        *out = json_object();
    return e;
}

kms_err kms_op_delete_alias(struct op_ctx *x, json_t *in, json_t **out)
{
    const char *name;
    kms_alias *a;
    kms_err e = get_str(x, in, "AliasName", true, &name);
    if (e)
        return e;
    a = kms_find_alias(x->core, name);
    if (!a)
        return fail(x, KMS_ERR_NOT_FOUND, "Alias arn:aws:kms:%s:%s:%s is not found.", x->core->region,
                    kms_caller_account(x->core, x->caller), name);
    {
        kms_key *t = kms_find_key(x->core, a->key_id);
        if (!t || strcmp(t->owner, kms_caller_account(x->core, x->caller)))
            return fail(x, KMS_ERR_NOT_FOUND, "Alias arn:aws:kms:%s:%s:%s is not found.", x->core->region,
                        kms_caller_account(x->core, x->caller), name);
        snprintf(x->key_id, KMS_KEY_ID_LEN + 1, "%s", a->key_id);
        if ((e = kms_authorize_key(x, t, a->name)))
            return e;
    }
    e = kms_store_delete_alias(x->core, name, x->msg);
    if (!e)
        *out = json_object();
    return e;
}

kms_err kms_op_list_aliases(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_core *c = x->core;
    const char *kid;
    kms_key *filter = NULL;
    size_t start, limit, i, total = 0, seen = 0, next;
    json_t *arr;
    kms_err e = get_str(x, in, "KeyId", false, &kid);
    if (!e && kid)
        e = resolve(x, kid, &filter);
    if (e)
        return e;
    for (i = 0; i < c->n_aliases; i++)
        if (filter ? !strcmp(c->aliases[i].key_id, filter->id) : alias_of_caller(x, &c->aliases[i]))
            total++;
    if ((e = paging(x, in, 50, 100, total, &start, &limit)))
        return e;
    if (!filter && (e = kms_authorize(c, x->caller, x->operation, NULL)))
        return e;
    arr = json_array();
    next = start;
    for (i = 0; i < c->n_aliases; i++) {
        kms_alias *a = &c->aliases[i];
        char arn[320];
        if (filter ? strcmp(a->key_id, filter->id) != 0 : !alias_of_caller(x, a))
            continue;
        if (seen++ < start)
            continue;
        if (next >= start + limit)
            break;
        snprintf(arn, sizeof arn, "arn:aws:kms:%s:%s:%s", c->region, kms_caller_account(c, x->caller), a->name);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:I}", "AliasName", a->name, "AliasArn", arn,
                                             "TargetKeyId", a->key_id, "CreationDate", (json_int_t)a->created,
                                             "LastUpdatedDate", (json_int_t)a->updated));
        next++;
    }
    *out = json_pack("{s:o}", "Aliases", arr);
    page_end(*out, next, total);
    return KMS_OK;
}

/* ---- tags ----------------------------------------------------------------------------------- */

kms_err kms_op_tag_resource(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    json_t *tags = json_object_get(in, "Tags"), *t;
    size_t i;
    kms_err e = resolve_any(x, in, &k);
    if (e)
        return e;
    if (!json_is_array(tags))
        return invalid(x, "tags", "Member must not be null");
    if ((e = check_tags(x, tags)))
        return e;
    {
        /* At most KMS_MAX_TAGS per key, counting those it has and the new keys. */
        int64_t have = 0, added = 0;
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(x->core->db, "SELECT count(*) FROM tags WHERE key_id=?", -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW)
                have = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
        }
        json_array_foreach(tags, i, t) {
            const char *tk = json_string_value(json_object_get(t, "TagKey"));
            bool dup = false;
            if (sqlite3_prepare_v2(x->core->db, "SELECT 1 FROM tags WHERE key_id=? AND tag_key=?", -1, &st, NULL) ==
                SQLITE_OK) {
                sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, tk, -1, SQLITE_STATIC);
                dup = sqlite3_step(st) == SQLITE_ROW;
                sqlite3_finalize(st);
            }
            for (size_t j = 0; j < i && !dup; j++)
                dup = !strcmp(tk, json_string_value(json_object_get(json_array_get(tags, j), "TagKey")));
            added += !dup;
        }
        if (have + added > KMS_MAX_TAGS)
            return fail(x, KMS_ERR_LIMIT_EXCEEDED, "A key may have at most %d tags; this would make it %lld.",
                        KMS_MAX_TAGS, (long long)(have + added));
    }
    json_array_foreach(tags, i, t) {
        e = kms_store_set_tag(x->core, k->id, json_string_value(json_object_get(t, "TagKey")),
                              json_string_value(json_object_get(t, "TagValue")), x->msg);
        if (e)
            return e;
    }
    *out = json_object();
    return KMS_OK;
}

kms_err kms_op_untag_resource(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    json_t *keys = json_object_get(in, "TagKeys"), *t;
    size_t i;
    kms_err e = resolve_any(x, in, &k);
    if (e)
        return e;
    if (!json_is_array(keys))
        return invalid(x, "tagKeys", "Member must not be null");
    json_array_foreach(keys, i, t) {
        if (!json_is_string(t))
            return fail(x, KMS_ERR_SERIALIZATION, "TagKeys must be strings");
        e = kms_store_delete_tag(x->core, k->id, json_string_value(t), x->msg);
        if (e)
            return e;
    }
    *out = json_object();
    return KMS_OK;
}

kms_err kms_op_list_resource_tags(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    sqlite3_stmt *st;
    json_t *arr, *lim = json_object_get(in, "Limit"), *mk = json_object_get(in, "Marker");
    json_int_t limit = 50;
    const char *marker = NULL;
    bool more = false;
    kms_err e = resolve_any(x, in, &k);
    if (e)
        return e;
    if (lim) {
        if (!json_is_integer(lim))
            return fail(x, KMS_ERR_SERIALIZATION, "Limit must be a number");
        limit = json_integer_value(lim);
        if (limit < 1 || limit > 50)
            return invalid(x, "limit", "Member must have value between 1 and 50");
    }
    if (mk) {
        /* Our marker is the last tag key of the previous page. */
        if (!json_is_string(mk) || !*json_string_value(mk))
            return fail(x, KMS_ERR_INVALID_MARKER, "Marker is not valid");
        marker = json_string_value(mk);
    }
    arr = json_array();
    if (sqlite3_prepare_v2(x->core->db,
                           "SELECT tag_key, tag_value FROM tags WHERE key_id=?1 AND tag_key > ?2 ORDER BY tag_key"
                           " LIMIT ?3",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, marker ? marker : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, limit + 1);
        while (sqlite3_step(st) == SQLITE_ROW) {
            if ((json_int_t)json_array_size(arr) == limit) {
                more = true;
                break;
            }
            json_array_append_new(arr, json_pack("{s:s, s:s}", "TagKey", (const char *)sqlite3_column_text(st, 0),
                                                 "TagValue", (const char *)sqlite3_column_text(st, 1)));
        }
        sqlite3_finalize(st);
    }
    *out = json_pack("{s:o, s:b}", "Tags", arr, "Truncated", more);
    if (more)
        json_object_set_new(*out, "NextMarker", json_string(json_string_value(
                                                    json_object_get(json_array_get(arr, json_array_size(arr) - 1), "TagKey"))));
    return KMS_OK;
}

/* ---- cryptographic operations --------------------------------------------------------------- */

kms_err kms_op_encrypt(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    uint8_t *pt = NULL;
    size_t n;
    kms_ectx ectx;
    kms_ectx_pair *pairs = NULL;
    json_t *blob = NULL;
    const char *alg = NULL;
    char arn[160];
    kms_err e = get_b64(x, in, "Plaintext", true, 4096, &pt, &n);
    if (!e)
        e = get_str(x, in, "EncryptionAlgorithm", false, &alg);
    if (!e)
        e = get_ectx(x, in, "EncryptionContext", &ectx, &pairs);
    if (!e)
        e = resolve_usable(x, in, &k);
    if (!e && k->spec != KMS_SPEC_SYMMETRIC) {
        e = kms_asym_encrypt(x, k, alg, &ectx, pt, n, out); /* RSA keys; the wrong usage for others */
        sodium_memzero(pt, n);
        free(pt);
        free(pairs);
        return e;
    }
    if (!e)
        e = check_alg(x, in, "EncryptionAlgorithm");
    if (!e)
        e = dry_run(x);
    if (!e)
        e = seal_blob(x, k, pt, n, &ectx, &blob);
    if (pt) {
        sodium_memzero(pt, n);
        free(pt);
    }
    free(pairs);
    if (e)
        return e;
    key_arn(x->core, k, arn, sizeof arn);
    *out = json_pack("{s:o, s:s, s:s}", "CiphertextBlob", blob, "KeyId", arn, "EncryptionAlgorithm",
                     "SYMMETRIC_DEFAULT");
    return KMS_OK;
}

static kms_err data_key(struct op_ctx *x, json_t *in, json_t **out, bool with_plaintext)
{
    kms_key *k;
    const char *spec;
    bool has_n;
    long long nbytes = 0;
    kms_ectx ectx;
    kms_ectx_pair *pairs = NULL;
    uint8_t *pt;
    json_t *blob = NULL;
    char arn[160];
    kms_err e;

    if ((e = get_str(x, in, "KeySpec", false, &spec)) || (e = get_int(x, in, "NumberOfBytes", &has_n, &nbytes)))
        return e;
    if (spec && has_n)
        return fail(x, KMS_ERR_VALIDATION, "Please specify either number of bytes or key spec.");
    if (!spec && !has_n)
        return fail(x, KMS_ERR_VALIDATION, "Please specify either number of bytes or key spec.");
    if (spec) {
        if (!strcmp(spec, "AES_256"))
            nbytes = 32;
        else if (!strcmp(spec, "AES_128"))
            nbytes = 16;
        else
            return fail(x, KMS_ERR_VALIDATION,
                        "1 validation error detected: Value '%s' at 'keySpec' failed to satisfy constraint: Member "
                        "must satisfy enum value set: [AES_256, AES_128]", spec);
    } else if (nbytes < 1 || nbytes > 1024) {
        return fail(x, KMS_ERR_VALIDATION,
                    "1 validation error detected: Value '%lld' at 'numberOfBytes' failed to satisfy constraint: Member "
                    "must have value between 1 and 1024", nbytes);
    }
    if ((e = get_ectx(x, in, "EncryptionContext", &ectx, &pairs)))
        return e;
    e = resolve_usable(x, in, &k);
    if (!e && k->spec != KMS_SPEC_SYMMETRIC)
        e = kms_op_wrong_usage(x, k);
    if (!e)
        e = dry_run(x);
    if (e) {
        free(pairs);
        return e;
    }
    pt = kms_scratch((size_t)nbytes);
    if (!pt) {
        free(pairs);
        return KMS_ERR_NOMEM;
    }
    if (kms_random(pt, (size_t)nbytes)) {
        sodium_memzero(pt, (size_t)nbytes);
        free(pairs);
        return fail(x, KMS_ERR_INTERNAL, "no random bytes");
    }
    e = seal_blob(x, k, pt, (size_t)nbytes, &ectx, &blob);
    free(pairs);
    if (e) {
        sodium_memzero(pt, (size_t)nbytes);
        return e;
    }
    key_arn(x->core, k, arn, sizeof arn);
    *out = json_pack("{s:o, s:s}", "CiphertextBlob", blob, "KeyId", arn);
    if (with_plaintext)
        json_object_set_new(*out, "Plaintext", efs_json_base64(pt, (size_t)nbytes));
    sodium_memzero(pt, (size_t)nbytes);
    return KMS_OK;
}

kms_err kms_op_generate_data_key(struct op_ctx *x, json_t *in, json_t **out) { return data_key(x, in, out, true); }
kms_err kms_op_generate_data_key_without_plaintext(struct op_ctx *x, json_t *in, json_t **out)
{
    return data_key(x, in, out, false);
}

kms_err kms_op_decrypt(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *explicit_key = NULL, *used;
    const char *kid;
    uint8_t *blob = NULL, *pt;
    size_t blen, n;
    kms_ectx ectx;
    kms_ectx_pair *pairs = NULL;
    char arn[160];
    const char *alg = NULL;
    kms_err e = get_b64(x, in, "CiphertextBlob", true, KMS_BLOB_MAX, &blob, &blen);
    if (!e)
        e = get_str(x, in, "EncryptionAlgorithm", false, &alg);
    if (!e)
        e = get_ectx(x, in, "EncryptionContext", &ectx, &pairs);
    if (!e)
        e = get_str(x, in, "KeyId", false, &kid);
    if (!e && kid)
        e = resolve(x, kid, &explicit_key);
    if (!e && explicit_key && explicit_key->spec != KMS_SPEC_SYMMETRIC) {
        /* an asymmetric ciphertext names no key: Decrypt needs KeyId and EncryptionAlgorithm */
        e = kms_asym_decrypt(x, explicit_key, alg, &ectx, blob, blen, out);
        free(blob);
        free(pairs);
        return e;
    }
    if (!e)
        e = check_alg(x, in, "EncryptionAlgorithm");
    if (!e)
        e = open_blob(x, blob, blen, &ectx, explicit_key, &used, &pt, &n);
    if (!e && (e = dry_run(x)))
        sodium_memzero(pt, n);
    free(blob);
    free(pairs);
    if (e)
        return e;
    key_arn(x->core, used, arn, sizeof arn);
    *out = json_pack("{s:s, s:o, s:s}", "KeyId", arn, "Plaintext", efs_json_base64(pt, n), "EncryptionAlgorithm",
                     "SYMMETRIC_DEFAULT");
    sodium_memzero(pt, n);
    return KMS_OK;
}

kms_err kms_op_re_encrypt(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *src_key = NULL, *used, *dst;
    const char *sid, *did, *salg = NULL, *dalg = NULL;
    uint8_t *blob = NULL, *pt = NULL;
    size_t blen, n = 0;
    kms_ectx sctx, dctx;
    kms_ectx_pair *sp = NULL, *dp = NULL;
    json_t *nb = NULL;
    char sarn[160], darn[160];
    kms_err e = get_b64(x, in, "CiphertextBlob", true, KMS_BLOB_MAX, &blob, &blen);
    if (!e)
        e = get_str(x, in, "SourceEncryptionAlgorithm", false, &salg);
    if (!e)
        e = get_str(x, in, "DestinationEncryptionAlgorithm", false, &dalg);
    if (!e)
        e = get_ectx(x, in, "SourceEncryptionContext", &sctx, &sp);
    if (!e)
        e = get_ectx(x, in, "DestinationEncryptionContext", &dctx, &dp);
    if (!e)
        e = get_str(x, in, "SourceKeyId", false, &sid);
    if (!e)
        e = get_str(x, in, "DestinationKeyId", true, &did);
    x->action = "ReEncryptFrom";
    if (!e && sid)
        e = resolve(x, sid, &src_key);
    if (!e && src_key && src_key->spec != KMS_SPEC_SYMMETRIC) { /* an RSA ciphertext (asym.c) */
        e = kms_asym_open(x, src_key, salg, &sctx, blob, blen, &pt, &n, &salg);
        used = src_key;
    } else {
        if (!e)
            e = check_alg(x, in, "SourceEncryptionAlgorithm");
        if (!e)
            e = open_blob(x, blob, blen, &sctx, src_key, &used, &pt, &n);
        salg = "SYMMETRIC_DEFAULT";
    }
    if (!e) {
        key_arn(x->core, used, sarn, sizeof sarn);
        x->action = "ReEncryptTo";
        e = resolve(x, did, &dst);
    }
    if (!e)
        e = dry_run(x);
    if (!e)
        e = check_usable(x, dst);
    if (!e && dst->spec != KMS_SPEC_SYMMETRIC) {
        e = kms_asym_seal(x, dst, dalg, &dctx, pt, n, &nb, &dalg);
    } else {
        if (!e)
            e = check_alg(x, in, "DestinationEncryptionAlgorithm");
        if (!e)
            e = maybe_rotate(x, dst);
        if (!e)
            e = seal_blob(x, dst, pt, n, &dctx, &nb);
        dalg = "SYMMETRIC_DEFAULT";
    }
    if (pt)
        sodium_memzero(pt, n);
    free(blob);
    free(sp);
    free(dp);
    if (e)
        return e;
    key_arn(x->core, dst, darn, sizeof darn);
    *out = json_pack("{s:o, s:s, s:s, s:s, s:s}", "CiphertextBlob", nb, "SourceKeyId", sarn, "KeyId", darn,
                     "SourceEncryptionAlgorithm", salg, "DestinationEncryptionAlgorithm", dalg);
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}

kms_err kms_op_generate_random(struct op_ctx *x, json_t *in, json_t **out)
{
    bool has;
    long long n = 0;
    uint8_t *buf;
    kms_err e = get_int(x, in, "NumberOfBytes", &has, &n);
    if (e)
        return e;
    if (!has || n < 1 || n > 1024)
        return fail(x, KMS_ERR_VALIDATION,
                    "1 validation error detected: Value at 'numberOfBytes' failed to satisfy constraint: Member must "
                    "have value between 1 and 1024");
    if ((e = kms_authorize(x->core, x->caller, x->operation, NULL)))
        return e;
    buf = kms_scratch((size_t)n);
    if (!buf)
        return KMS_ERR_NOMEM;
    randombytes_buf(buf, (size_t)n);
    *out = json_pack("{s:o}", "Plaintext", efs_json_base64(buf, (size_t)n));
    sodium_memzero(buf, (size_t)n);
    return KMS_OK;
}

/* ---- shared with asym.c, mac.c and datakeypair.c (oputil.h) --------------------------------- */

kms_err kms_op_check_tags(struct op_ctx *x, json_t *tags) { return check_tags(x, tags); }

kms_err kms_op_get_str(struct op_ctx *x, json_t *in, const char *field, bool required, const char **out)
{
    return get_str(x, in, field, required, out);
}

kms_err kms_op_get_b64(struct op_ctx *x, json_t *in, const char *field, bool required, size_t max, uint8_t **out,
                       size_t *out_len)
{
    return get_b64(x, in, field, required, max, out, out_len);
}

kms_err kms_op_get_ectx(struct op_ctx *x, json_t *in, const char *field, kms_ectx *ctx, kms_ectx_pair **pairs)
{
    return get_ectx(x, in, field, ctx, pairs);
}

/* For the operations in other files (asym.c, mac.c, datakeypair.c): resolved, usable, authorised — and a
 * DryRun stops here. */
kms_err kms_op_resolve_usable(struct op_ctx *x, json_t *in, kms_key **k)
{
    kms_err e = resolve_usable(x, in, k);
    return e ? e : dry_run(x);
}
kms_err kms_op_resolve_any(struct op_ctx *x, json_t *in, kms_key **k) { return resolve_any(x, in, k); }
void kms_op_key_arn(kms_core *c, const kms_key *k, char *buf, size_t cap) { key_arn(c, k, buf, cap); }

kms_err kms_op_seal_blob(struct op_ctx *x, kms_key *k, const uint8_t *pt, size_t n, const kms_ectx *ectx,
                         json_t **blob_json)
{
    return seal_blob(x, k, pt, n, ectx, blob_json);
}

kms_err kms_op_wrong_usage(struct op_ctx *x, const kms_key *k)
{
    char arn[160];
    key_arn(x->core, k, arn, sizeof arn);
    return fail(x, KMS_ERR_INVALID_KEY_USAGE, "%s key usage is %s (key spec %s), which is not valid for %s.", arn,
                kms_usage_name(k->usage), kms_spec_name(k->spec), x->operation);
}

kms_err kms_op_paging(struct op_ctx *x, json_t *in, long long def, long long max, size_t total, size_t *start,
                      size_t *limit)
{
    return paging(x, in, def, max, total, start, limit);
}

void kms_op_page_end(json_t *o, size_t next, size_t total) { page_end(o, next, total); }
