/*
 * mrk_remote.c — multi-Region keys between servers: the replication protocol (docs/DESIGN.md "Replication
 * between servers"), both ends.
 *
 * The destination (kms_core_replication_call, reached through the server's EnvelopefsReplication.* target
 * only): GetReplicationParameters answers what this store holds of a key (Exists, Versions, KeyState,
 * PrimaryRegion) and, unless StatusOnly, a one-time RSA_3072 wrapping key: its public half and a
 * replication token carrying the private half sealed under this store's root key (the import token's format,
 * importtoken.h, under its own AAD, valid 15 minutes). PutReplica takes key-material versions wrapped for
 * that key — WrappedKey: an AES-256 key under RSA-OAEP SHA-256; each version's Material: AES key wrap with
 * padding (RFC 5649) under it, i.e. RSA_AES_KEY_WRAP_SHA_256 with one AES key per call — and creates the
 * replica (Create: same id, spec, usage, origin and versions; the request's own description, policy and
 * tags), or adds versions, rewrites the region list and, when PrimaryRegion names this region, takes the
 * primary role and its rotation schedule. The caller must be of the key's account (AWSAccountId); a
 * new replica is authorized as CreateKey, an update by the replica's key policy (kms:ReplicateKey,
 * kms:UpdatePrimaryRegion). A replica half made is destroyed before the call fails.
 *
 * The source (kms_mrk_remote_*): asks for parameters, wraps every version it sends (in the clear only in
 * locked memory, between the unseal from its root key and the wrap), sends PutReplica, and records the
 * replica in its own row only once the destination answered. The core lock is released during each call to
 * the other server, so a slow or dead region does not stall this one's other calls; keys are looked up again
 * afterwards.
 */
#include "mrk_remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "authz.h"
#include "common/jsonb64.h"
#include "common/jsondump.h"
#include "common/jsonparse.h"
#include "common/log.h"
#include "importtoken.h"
#include "keymat.h"
#include "oputil.h"

#define fail kms_op_fail
#define TOKEN_AAD "envelopefs-replication-token-v1"
#define TOKEN_VALIDITY 900
#define WRAP_SPEC KMS_SPEC_RSA_3072
#define CALL_TIMEOUT_MS 60000L  /* the other end makes an RSA_3072 key pair (a second; more under sanitizers) */
#define STATUS_TIMEOUT_MS 5000L /* a status question (ScheduleKeyDeletion's replica check) */
#define MAX_VERSIONS 400        /* a PutReplica body stays far below the server's 64 KiB */

static const char *const STATES[] = {"Enabled", "Disabled", "PendingDeletion", "PendingImport"};

/* ---- the destination --------------------------------------------------------------------------- */

static int parse_mrk_id(const char *id, uint8_t raw[16])
{
    size_t n = 0;
    if (!id || strlen(id) != KMS_KEY_ID_LEN || strncmp(id, KMS_MRK_PREFIX, 4) ||
        strspn(id + 4, "0123456789abcdef") != 32)
        return -1;
    return sodium_hex2bin(raw, 16, id + 4, 32, NULL, &n, NULL) || n != 16 ? -1 : 0;
}

static size_t token_aad(uint8_t *aad, const uint8_t *header)
{
    memcpy(aad, TOKEN_AAD, sizeof TOKEN_AAD - 1);
    memcpy(aad + sizeof TOKEN_AAD - 1, header, KMS_IMPORT_TOKEN_HEADER);
    return sizeof TOKEN_AAD - 1 + KMS_IMPORT_TOKEN_HEADER;
}

/* KeyId (a multi-Region id) and AWSAccountId (the caller's own account) of a request. */
static kms_err request_key(struct op_ctx *x, json_t *in, const char **id, uint8_t raw[16])
{
    const char *account;
    char arn[160];
    kms_err e;
    if ((e = kms_op_get_str(x, in, "KeyId", true, id)) || (e = kms_op_get_str(x, in, "AWSAccountId", true, &account)))
        return e;
    if (parse_mrk_id(*id, raw))
        return fail(x, KMS_ERR_VALIDATION, "KeyId must be a multi-Region key id (mrk- and 32 hex digits)");
    snprintf(x->key_id, KMS_KEY_ID_LEN + 1, "%s", *id);
    if (strcmp(account, kms_caller_account(x->core, x->caller))) {
        kms_caller_arn(x->core, x->caller, arn, sizeof arn);
        return fail(x, KMS_ERR_ACCESS_DENIED,
                    "%s may not replicate keys of account %.12s: replicas are made by a principal of the key's account",
                    arn, account);
    }
    return KMS_OK;
}

/* A commitment to k's first version, the same in every region holding the real key: HMAC-SHA256 keyed with
 * the material over CHECK_LABEL and the key id (64 hex digits + NUL; "" for a key without material). It
 * reveals nothing of the material, and tells a key of the same id made with other material — a "replica"
 * someone of the account built through PutReplica with material of their own — from the real one, so no
 * version of the real key is ever pushed into it. */
#define CHECK_LABEL "envelopefs-replica-check-v1"
static kms_err material_check(kms_core *c, kms_key *k, char out[65], char **msg)
{
    crypto_auth_hmacsha256_state st;
    uint8_t *m = NULL, mac[32];
    size_t n = 0;
    kms_err e;
    out[0] = 0;
    if (!k->n_versions)
        return KMS_OK;
    if ((e = kms_store_version_plain(c, k, k->versions[0].version, &m, &n, msg)))
        return e;
    crypto_auth_hmacsha256_init(&st, m, n);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)CHECK_LABEL, sizeof CHECK_LABEL - 1);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)k->id, strlen(k->id));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof st);
    sodium_free(m);
    sodium_bin2hex(out, 65, mac, sizeof mac);
    return KMS_OK;
}

/* What this store holds of key id. */
static json_t *replica_status(kms_core *c, const char *id)
{
    kms_key *k = kms_find_key(c, id);
    char primary[32], check[65], *m = NULL;
    json_t *regions = NULL, *o;
    if (!k)
        return json_pack("{s:b}", "Exists", 0);
    o = json_pack("{s:b, s:I, s:s}", "Exists", 1, "Versions", (json_int_t)k->n_versions, "KeyState", STATES[k->state]);
    if (o && kms_mrk_row_get(c->db, id, primary, &regions))
        json_object_set_new(o, "PrimaryRegion", json_string(primary));
    if (o && material_check(c, k, check, &m) == KMS_OK && check[0]) /* else absent: the source sends nothing */
        json_object_set_new(o, "MaterialCheck", json_string(check));
    free(m);
    json_decref(regions);
    return o;
}

static kms_err op_get_parameters(struct op_ctx *x, json_t *in, json_t **out)
{
    json_t *so = json_object_get(in, "StatusOnly"), *status;
    const char *id;
    uint8_t raw[16], *priv = NULL, *pub = NULL, *token = NULL, aad[64];
    size_t priv_len = 0, pub_len = 0, token_len = 0;
    EVP_PKEY *pk = NULL;
    char idc[KMS_KEY_ID_LEN + 1];
    kms_err e;

    if ((e = request_key(x, in, &id, raw)))
        return e;
    if (so && !json_is_boolean(so))
        return fail(x, KMS_ERR_SERIALIZATION, "StatusOnly must be a boolean");
    snprintf(idc, sizeof idc, "%s", id);
    if (!json_is_true(so)) {
        int64_t valid_to;
        if (!(pk = kms_op_keygen(x, WRAP_SPEC))) /* without the lock */
            return fail(x, KMS_ERR_INTERNAL, "could not generate a wrapping key");
        if (kms_keymat_from_pkey(pk, &priv, &priv_len) || !(pub = kms_keymat_public_der(pk, &pub_len))) {
            e = KMS_ERR_NOMEM;
            goto out;
        }
        valid_to = kms_now(x->core) + TOKEN_VALIDITY;
        token_len = KMS_IMPORT_TOKEN_HEADER + priv_len + KMS_SEAL_OVERHEAD;
        if (!(token = malloc(token_len))) {
            e = KMS_ERR_NOMEM;
            goto out;
        }
        kms_import_token_header(token, KMS_WRAP_RSA_AES_KEY_WRAP_SHA_256, WRAP_SPEC, raw, valid_to);
        kms_store_seal(x->core, aad, token_aad(aad, token), priv, priv_len, token + KMS_IMPORT_TOKEN_HEADER);
        *out = json_pack("{s:o, s:o, s:I, s:s}", "PublicKey", efs_json_base64(pub, pub_len), "ReplicationToken",
                         efs_json_base64(token, token_len), "ParametersValidTo", (json_int_t)valid_to,
                         "WrappingAlgorithm", "RSA_AES_KEY_WRAP_SHA_256");
    } else {
        *out = json_object();
    }
    status = replica_status(x->core, idc);
    if (!*out || !status || json_object_set_new(*out, "Replica", status)) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    e = KMS_OK;
out:
    if (e) {
        json_decref(*out);
        *out = NULL;
    }
    EVP_PKEY_free(pk);
    sodium_free(priv);
    free(pub);
    free(token);
    return e;
}

/* The AES key of a PutReplica: the token (for this key, unexpired, sealed by this store) opens WrappedKey.
 * *kek: 32 bytes in sodium_malloc'd memory. */
static kms_err open_wrapping(struct op_ctx *x, json_t *in, const uint8_t raw[16], uint8_t **kek)
{
    uint8_t *tok = NULL, *wk = NULL, *priv = NULL, aad[64];
    size_t tok_len = 0, wk_len = 0, kl = 512;
    kms_import_token t;
    EVP_PKEY *pk = NULL;
    kms_err e;

    *kek = NULL;
    if ((e = kms_op_get_b64(x, in, "ReplicationToken", true, KMS_IMPORT_TOKEN_MAX, &tok, &tok_len)) ||
        (e = kms_op_get_b64(x, in, "WrappedKey", true, 1024, &wk, &wk_len)))
        goto out;
    if (kms_import_token_parse(tok, tok_len, &t) || memcmp(t.key_id, raw, 16) ||
        t.wrap_alg != KMS_WRAP_RSA_AES_KEY_WRAP_SHA_256 || !(priv = sodium_malloc(t.sealed_len)) ||
        kms_store_unseal(x->core, aad, token_aad(aad, t.header), t.sealed, t.sealed_len, priv) ||
        kms_keymat_decode((enum kms_key_spec)t.wrap_spec, priv, t.sealed_len - KMS_SEAL_OVERHEAD, &pk)) {
        e = fail(x, KMS_ERR_INVALID_IMPORT_TOKEN, "The replication token is not valid for this key in this region.");
        goto out;
    }
    if (kms_now(x->core) >= t.valid_to) {
        e = fail(x, KMS_ERR_EXPIRED_IMPORT_TOKEN, "The replication token expired; ask for parameters again.");
        goto out;
    }
    if (!(*kek = sodium_malloc(512))) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    if (wk_len != (size_t)EVP_PKEY_get_size(pk) || kms_wrap_oaep_open(pk, EVP_sha256(), wk, wk_len, *kek, &kl) ||
        kl != 32) {
        sodium_free(*kek);
        *kek = NULL;
        e = fail(x, KMS_ERR_INVALID_CIPHERTEXT, "WrappedKey does not open with the replication token's key");
        goto out;
    }
out:
    EVP_PKEY_free(pk);
    sodium_free(priv);
    free(tok);
    free(wk);
    return e;
}

/* Versions[i] = {Version, CreationDate, Automatic, Material}: the material opened into *m (sodium_malloc'd,
 * *n bytes) and checked against the key's spec. */
static kms_err open_version(struct op_ctx *x, json_t *v, const uint8_t *kek, enum kms_key_spec spec, uint32_t *num,
                            int64_t *created, int *automatic, uint8_t **m, size_t *n)
{
    json_t *jv = json_object_get(v, "Version"), *jc = json_object_get(v, "CreationDate"),
           *ja = json_object_get(v, "Automatic");
    const char *b64 = json_string_value(json_object_get(v, "Material"));
    uint8_t *ct = NULL;
    size_t ct_len = 0, cap;
    EVP_PKEY *pk = NULL;
    *m = NULL;
    if (!json_is_object(v) || !json_is_integer(jv) || !json_is_integer(jc) || (ja && !json_is_boolean(ja)) || !b64 ||
        json_integer_value(jv) < 1 || json_integer_value(jv) > 100000)
        return fail(x, KMS_ERR_SERIALIZATION, "each of Versions is {Version, CreationDate, Automatic, Material}");
    *num = (uint32_t)json_integer_value(jv);
    *created = (int64_t)json_integer_value(jc);
    *automatic = json_is_true(ja);
    cap = strlen(b64) / 4 * 3 + 3;
    if (cap > 8192 || !(ct = malloc(cap)) ||
        efs_base64_decode(ct, cap, b64, strlen(b64), NULL, &ct_len, sodium_base64_VARIANT_ORIGINAL)) {
        free(ct);
        return fail(x, KMS_ERR_SERIALIZATION, "a version's Material is not base64 of at most 6 KiB");
    }
    if (!(*m = sodium_malloc(ct_len ? ct_len : 1))) {
        free(ct);
        return KMS_ERR_NOMEM;
    }
    if (kms_wrap_kwp_open(kek, ct, ct_len, *m, n) || !kms_keymat_len_ok(spec, *n) ||
        (kms_spec_is_asymmetric(spec) && kms_keymat_decode(spec, *m, *n, &pk))) {
        free(ct);
        sodium_free(*m);
        *m = NULL;
        return fail(x, KMS_ERR_INVALID_CIPHERTEXT, "version %u's Material does not open as %s key material", *num,
                    kms_spec_name(spec));
    }
    EVP_PKEY_free(pk);
    free(ct);
    return KMS_OK;
}

/* PrimaryRegion and Regions of a PutReplica: the list names the primary and this region. */
static kms_err request_regions(struct op_ctx *x, json_t *in, const char **primary, json_t **regions)
{
    size_t i;
    json_t *v;
    kms_err e = kms_op_get_str(x, in, "PrimaryRegion", true, primary);
    if (e)
        return e;
    *regions = json_object_get(in, "Regions");
    if (!json_is_array(*regions) || json_array_size(*regions) > 64)
        return fail(x, KMS_ERR_SERIALIZATION, "Regions must be a list of region names");
    json_array_foreach(*regions, i, v) if (!json_is_string(v) || !json_string_length(v) || json_string_length(v) > 31)
        return fail(x, KMS_ERR_VALIDATION, "Regions must be region names of 1 to 31 characters");
    if (strlen(*primary) > 31 || !kms_mrk_in_list(*regions, *primary) || !kms_mrk_in_list(*regions, x->core->region))
        return fail(x, KMS_ERR_VALIDATION, "Regions must name the primary region and %s", x->core->region);
    return KMS_OK;
}

static kms_err create_replica(struct op_ctx *x, json_t *in, const char *id, const uint8_t raw[16], json_t **out)
{
    kms_core *c = x->core;
    json_t *versions = json_object_get(in, "Versions"), *tags = json_object_get(in, "Tags"), *regions, *rp, *vt;
    const char *primary, *spec_name, *usage_name, *origin, *desc, *model;
    uint8_t *kek = NULL, *m = NULL;
    size_t n = 0, i;
    int spec, usage, automatic;
    uint32_t num;
    int64_t created;
    kms_key nk, *rk;
    bool inserted = false;
    char *def = NULL;
    kms_err e;

    if ((e = request_regions(x, in, &primary, &regions)))
        return e;
    if (!strcmp(primary, c->region))
        return fail(x, KMS_ERR_VALIDATION, "a new replica's PrimaryRegion is another region");
    if (kms_find_key(c, id))
        return fail(x, KMS_ERR_ALREADY_EXISTS, "Replica key %s already exists in region %s", id, c->region);
    if ((e = kms_authorize(c, x->caller, "CreateKey", NULL)))
        return e;
    if ((e = kms_op_get_str(x, in, "KeySpec", true, &spec_name)) ||
        (e = kms_op_get_str(x, in, "KeyUsage", true, &usage_name)) ||
        (e = kms_op_get_str(x, in, "Origin", true, &origin)) || (e = kms_op_get_str(x, in, "Description", false, &desc)) ||
        (e = kms_op_get_str(x, in, "ExpirationModel", false, &model)))
        return e;
    spec = kms_spec_parse(spec_name);
    usage = kms_usage_parse(usage_name);
    if (spec < 0 || usage < 0 || !kms_spec_usage_valid((enum kms_key_spec)spec, (enum kms_key_usage)usage) ||
        (strcmp(origin, "AWS_KMS") && strcmp(origin, "EXTERNAL")))
        return fail(x, KMS_ERR_VALIDATION, "KeySpec %s, KeyUsage %s, Origin %s: not a key this region can hold",
                    spec_name, usage_name, origin);
    if (!json_is_array(versions) || !json_array_size(versions) || json_array_size(versions) > MAX_VERSIONS)
        return fail(x, KMS_ERR_VALIDATION, "a new replica takes 1 to %d Versions", MAX_VERSIONS);
    if (tags && (!json_is_array(tags) || (e = kms_op_check_tags(x, tags))))
        return e ? e : fail(x, KMS_ERR_SERIALIZATION, "Tags must be a list");
    rp = json_object_get(in, "RotationPeriodInDays");
    vt = json_object_get(in, "ValidTo");
    if ((rp && (!json_is_integer(rp) || json_integer_value(rp) < 90 || json_integer_value(rp) > 2560)) ||
        (vt && !json_is_integer(vt)))
        return fail(x, KMS_ERR_SERIALIZATION, "RotationPeriodInDays and ValidTo are integers");

    memset(&nk, 0, sizeof nk);
    snprintf(nk.id, sizeof nk.id, "%s", id);
    memcpy(nk.raw_id, raw, 16);
    snprintf(nk.owner, sizeof nk.owner, "%s", kms_caller_account(c, x->caller));
    nk.spec = (enum kms_key_spec)spec;
    nk.usage = (enum kms_key_usage)usage;
    nk.external = !strcmp(origin, "EXTERNAL");
    nk.expires = nk.external && model && !strcmp(model, "KEY_MATERIAL_EXPIRES");
    nk.valid_to = nk.expires && vt ? (int64_t)json_integer_value(vt) : 0;
    nk.created = kms_now(c);
    nk.description = (char *)desc;
    nk.state = KS_ENABLED;
    nk.rotation_period = rp ? (int)json_integer_value(rp) : 365; /* rotation runs at the primary */
    if ((e = kms_new_key_policy(x, in, &nk)))
        return e;
    if ((e = open_wrapping(x, in, raw, &kek)))
        goto out;
    if ((e = open_version(x, json_array_get(versions, 0), kek, nk.spec, &num, &created, &automatic, &m, &n)))
        goto out;
    if (num != 1) {
        e = fail(x, KMS_ERR_VALIDATION, "a new replica's Versions start at version 1");
        goto out;
    }
    if (nk.external) { /* a reimport must be this material: the keyed digest under this store's root key */
        nk.has_digest = true;
        kms_store_material_digest(c, m, n, nk.material_digest);
    }
    e = kms_store_insert_key(c, &nk, m, n, x->msg);
    sodium_free(m);
    m = NULL;
    if (e)
        goto out;
    inserted = true;
    if (!(rk = kms_find_key(c, id))) {
        e = KMS_ERR_INTERNAL;
        goto out;
    }
    for (i = 1; !e && i < json_array_size(versions); i++) {
        e = open_version(x, json_array_get(versions, i), kek, rk->spec, &num, &created, &automatic, &m, &n);
        if (!e && num != rk->n_versions + 1)
            e = fail(x, KMS_ERR_VALIDATION, "Versions must be consecutive (version %u after %zu)", num, rk->n_versions);
        if (!e)
            e = kms_store_put_version(c, rk, created, automatic, m, n, x->msg);
        sodium_free(m);
        m = NULL;
    }
    if (!e && tags) {
        json_t *t;
        json_array_foreach(tags, i, t) if (!e) e = kms_store_set_tag(c, id, json_string_value(json_object_get(t, "TagKey")),
                                                                     json_string_value(json_object_get(t, "TagValue")), x->msg);
    }
    if (!e)
        e = kms_mrk_row_put(c, id, primary, regions, x->msg);
    if (!e) {
        if (!rk->policy_text && !(def = kms_default_policy_text(rk->owner)))
            e = KMS_ERR_NOMEM;
        else
            *out = json_pack("{s:o, s:s, s:o}", "ReplicaKeyMetadata", kms_op_key_metadata(c, rk), "ReplicaPolicy",
                             rk->policy_text ? rk->policy_text : def, "ReplicaTags",
                             tags ? json_incref(tags) : json_array());
        if (!e && !*out)
            e = KMS_ERR_NOMEM;
    }
out:
    if (e && inserted) { /* no half-made replica */
        char *m2 = NULL;
        if (kms_store_destroy_key(c, id, &m2))
            EFS_WARN("replication: the half-made replica %s could not be removed: %s", id, m2 ? m2 : "");
        free(m2);
    }
    free(def);
    if (kek)
        sodium_free(kek);
    kms_key_access_free(&nk);
    return e;
}

static kms_err sync_replica(struct op_ctx *x, json_t *in, const char *id, const uint8_t raw[16], const char **record,
                            json_t **out)
{
    kms_core *c = x->core;
    json_t *versions = json_object_get(in, "Versions"), *regions, *held = NULL;
    const char *primary;
    char cur[32], arn[160];
    uint8_t *kek = NULL, *m = NULL;
    size_t n = 0, i;
    kms_key *rk;
    bool moving;
    kms_err e;

    if ((e = request_regions(x, in, &primary, &regions)))
        return e;
    moving = !strcmp(primary, c->region);
    *record = moving ? "UpdatePrimaryRegion" : "SynchronizeMultiRegionKey";
    rk = kms_find_key(c, id);
    if (!rk || strcmp(rk->owner, kms_caller_account(c, x->caller)) || !kms_mrk_row_get(c->db, id, cur, &held))
        return fail(x, KMS_ERR_NOT_FOUND, "region %s holds no replica of %s", c->region, id);
    json_decref(held);
    kms_op_key_arn(c, rk, arn, sizeof arn);
    if (!strcmp(cur, c->region))
        return fail(x, KMS_ERR_INVALID_STATE, "%s is the primary key: only its replicas take versions from another region",
                    arn);
    {
        kms_access_req r = {.action = moving ? "UpdatePrimaryRegion" : "ReplicateKey"};
        if ((e = kms_access_check(c, x->caller, rk, &r, x->msg)))
            return e;
    }
    if (moving && rk->state != KS_ENABLED)
        return fail(x, rk->state == KS_DISABLED ? KMS_ERR_DISABLED : KMS_ERR_INVALID_STATE,
                    "the replica %s is not enabled", arn);
    if (versions && (!json_is_array(versions) || json_array_size(versions) > MAX_VERSIONS))
        return fail(x, KMS_ERR_SERIALIZATION, "Versions must be a list of at most %d", MAX_VERSIONS);
    if (moving) {
        json_t *re = json_object_get(in, "RotationEnabled"), *rp = json_object_get(in, "RotationPeriodInDays"),
               *nr = json_object_get(in, "NextRotation");
        if ((re && !json_is_boolean(re)) || (rp && !json_is_integer(rp)) || (nr && !json_is_integer(nr)))
            return fail(x, KMS_ERR_SERIALIZATION,
                        "RotationEnabled is a boolean, RotationPeriodInDays and NextRotation integers");
    }
    if (json_array_size(versions) && (e = open_wrapping(x, in, raw, &kek)))
        return e;
    for (i = 0; !e && i < json_array_size(versions); i++) {
        uint32_t num;
        int64_t created;
        int automatic;
        e = open_version(x, json_array_get(versions, i), kek, rk->spec, &num, &created, &automatic, &m, &n);
        if (!e && num > rk->n_versions + 1)
            e = fail(x, KMS_ERR_VALIDATION, "Versions must be consecutive (version %u after %zu)", num, rk->n_versions);
        if (!e && num == rk->n_versions + 1) /* older ones it has already */
            e = kms_store_put_version(c, rk, created, automatic, m, n, x->msg);
        sodium_free(m);
        m = NULL;
    }
    if (kek)
        sodium_free(kek);
    if (!e && moving) { /* the rotation schedule moves with the primary role */
        json_t *re = json_object_get(in, "RotationEnabled"), *rp = json_object_get(in, "RotationPeriodInDays"),
               *nr = json_object_get(in, "NextRotation");
        rk->rotation_enabled = json_is_true(re);
        if (rp)
            rk->rotation_period = (int)json_integer_value(rp);
        rk->next_rotation = nr ? (int64_t)json_integer_value(nr) : 0;
        e = kms_store_update_key(c, rk, x->msg);
    }
    if (!e)
        e = kms_mrk_row_put(c, id, primary, regions, x->msg);
    if (!e && !(*out = json_pack("{s:s, s:I}", "KeyId", id, "Versions", (json_int_t)rk->n_versions)))
        e = KMS_ERR_NOMEM;
    return e;
}

static kms_err op_put_replica(struct op_ctx *x, json_t *in, json_t **out, const char **record)
{
    json_t *create = json_object_get(in, "Create");
    const char *id;
    char idc[KMS_KEY_ID_LEN + 1];
    uint8_t raw[16];
    kms_err e = request_key(x, in, &id, raw);
    if (e)
        return e;
    if (create && !json_is_boolean(create))
        return fail(x, KMS_ERR_SERIALIZATION, "Create must be a boolean");
    snprintf(idc, sizeof idc, "%s", id);
    if (json_is_true(create)) {
        *record = "ReplicateKey";
        return create_replica(x, in, idc, raw, out);
    }
    return sync_replica(x, in, idc, raw, record, out);
}

kms_err kms_core_replication_call(kms_core *c, const kms_principal *caller, const char *operation, const char *req,
                                  size_t req_len, char **resp, size_t *resp_len, char **message)
{
    json_t *in = NULL, *out = NULL;
    char jerr[128], *msg = NULL, key_id[KMS_KEY_ID_LEN + 1] = "", name[48];
    const char *record;
    bool params, put;
    uint64_t ticket;
    kms_err e = KMS_OK;

    *resp = NULL;
    *resp_len = 0;
    if (message)
        *message = NULL;
    params = operation && !strcmp(operation, "GetReplicationParameters");
    put = operation && !strcmp(operation, "PutReplica");
    snprintf(name, sizeof name, "%s", operation ? operation : "(none)");
    record = put ? "ReplicateKey" : name;
    if (!params && !put) {
        e = KMS_ERR_UNKNOWN_OPERATION;
        kms_set_msg(&msg, "unknown replication operation %s", name);
    } else if (!caller || !caller->access_key) {
        e = KMS_ERR_ACCESS_DENIED;
        kms_set_msg(&msg, "the replication protocol takes requests signed with an access key only");
    } else {
        in = efs_json_parse(req && req_len ? req : "{}", req && req_len ? req_len : 2, jerr, sizeof jerr);
        if (!json_is_object(in)) {
            e = KMS_ERR_SERIALIZATION;
            kms_set_msg(&msg, "request body is not a JSON object: %s", in ? "not an object" : jerr);
        }
    }
    pthread_mutex_lock(&c->lock);
    if (!e)
        e = kms_store_reload_if_changed(c, &msg);
    if (!e) {
        kms_sweep_deletions(c);
        struct op_ctx x = {.core = c, .caller = caller, .operation = record, .key_id = key_id, .msg = &msg, .in = in};
        e = params ? op_get_parameters(&x, in, &out) : op_put_replica(&x, in, &out, &record);
    }
    {
        json_t *trail_out = put && !e ? json_pack("{s:s}", "KeyId", key_id) : NULL; /* no metadata, no material */
        ticket = kms_trail_append(c, caller, record, in, trail_out, key_id, e, msg);
        json_decref(trail_out);
    }
    pthread_mutex_unlock(&c->lock);
    json_decref(in);
    if ((!ticket || kms_trail_commit(c, ticket)) && !e) {
        e = KMS_ERR_INTERNAL;
        kms_set_msg(&msg, "the audit trail cannot be written; the call is refused");
    }
    if (!e && efs_json_dump_compact(out, resp, resp_len)) {
        *resp = json_dumps(out, JSON_COMPACT);
        *resp_len = *resp ? strlen(*resp) : 0;
        if (!*resp)
            e = KMS_ERR_NOMEM;
    }
    json_decref(out);
    if (e && message)
        *message = msg;
    else
        free(msg);
    return e;
}

/* ---- the source ---------------------------------------------------------------------------------- */

static int oaep_seal(EVP_PKEY *pk, const uint8_t *pt, size_t n, uint8_t *ct, size_t *cl)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    int ok = pc && EVP_PKEY_encrypt_init(pc) == 1 && EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_oaep_md(pc, EVP_sha256()) == 1 && EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()) == 1 &&
             EVP_PKEY_encrypt(pc, ct, cl, pt, n) == 1;
    EVP_PKEY_CTX_free(pc);
    return ok ? 0 : -1;
}

static int kwp_seal(const uint8_t kek[32], const uint8_t *pt, size_t n, uint8_t *ct, size_t *cl)
{
    EVP_CIPHER *ciph = EVP_CIPHER_fetch(NULL, "AES-256-WRAP-PAD", NULL);
    EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0, ok;
    if (cc)
        EVP_CIPHER_CTX_set_flags(cc, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    ok = ciph && cc && n && n <= 4096 && EVP_EncryptInit_ex(cc, ciph, NULL, kek, NULL) == 1 &&
         EVP_EncryptUpdate(cc, ct, &l1, pt, (int)n) == 1 && EVP_EncryptFinal_ex(cc, ct + l1, &l2) == 1;
    EVP_CIPHER_CTX_free(cc);
    EVP_CIPHER_free(ciph);
    if (!ok)
        return -1;
    *cl = (size_t)(l1 + l2);
    return 0;
}

/* A status question's timeout: STATUS_TIMEOUT_MS, or ENVELOPEFS_TEST_REPLICATION_STATUS_TIMEOUT_MS (tests
 * only: tests/server/server_mrk_endpoint.sh; 0: none, so a stopped peer holds the question until it runs on). */
static long status_timeout_ms(void)
{
    const char *v = getenv("ENVELOPEFS_TEST_REPLICATION_STATUS_TIMEOUT_MS");
    char *end;
    long ms;
    if (!v || !*v)
        return STATUS_TIMEOUT_MS;
    ms = strtol(v, &end, 10);
    return *end || ms < 0 ? STATUS_TIMEOUT_MS : ms;
}

/* Ask ep for its status of key id (and a wrapping key unless status_only); the core lock is released for
 * the call unless keep_lock. id and owner must not point into a kms_key. */
static kms_err ask_parameters(kms_core *c, const kms_endpoint *ep, const char *id, const char *owner, bool status_only,
                              bool keep_lock, json_t **resp, char **msg)
{
    json_t *req = json_pack("{s:s, s:s, s:b}", "KeyId", id, "AWSAccountId", owner, "StatusOnly", status_only);
    kms_err e;
    if (!req)
        return KMS_ERR_NOMEM;
    if (!keep_lock)
        pthread_mutex_unlock(&c->lock);
    e = kms_remote_call(ep, "GetReplicationParameters", req, status_only ? status_timeout_ms() : CALL_TIMEOUT_MS, resp,
                        msg);
    if (!keep_lock)
        pthread_mutex_lock(&c->lock);
    json_decref(req);
    if (!e && (!json_is_object(json_object_get(*resp, "Replica")) ||
               (!status_only && (!json_is_string(json_object_get(*resp, "PublicKey")) ||
                                 !json_is_string(json_object_get(*resp, "ReplicationToken")))))) {
        json_decref(*resp);
        *resp = NULL;
        kms_set_msg(msg, "region %s: a malformed answer to GetReplicationParameters", ep->region);
        e = KMS_ERR_INTERNAL;
    }
    return e;
}

/* k's versions from index `from` on into req (Versions, WrappedKey, ReplicationToken), wrapped for the
 * destination's one-time key in params: one fresh AES-256 key under RSA-OAEP SHA-256, each version under it
 * with AES key wrap with padding. The material is in the clear only in locked memory, one version at a time. */
static kms_err wrap_versions(kms_core *c, kms_key *k, size_t from, json_t *params, json_t *req, const char *region,
                             char **msg)
{
    const char *pub_b64 = json_string_value(json_object_get(params, "PublicKey"));
    uint8_t *der = NULL, *kek = NULL, wk[1024];
    const uint8_t *p = NULL;
    size_t der_len = 0, wk_len = sizeof wk, cap = strlen(pub_b64) / 4 * 3 + 3;
    EVP_PKEY *pk = NULL;
    json_t *arr = NULL;
    kms_err e = KMS_ERR_INTERNAL;

    if (k->n_versions - from > MAX_VERSIONS) {
        kms_set_msg(msg, "%s has more versions than one replication call carries (%d)", k->id, MAX_VERSIONS);
        return KMS_ERR_LIMIT_EXCEEDED;
    }
    if ((der = malloc(cap)) &&
        !efs_base64_decode(der, cap, pub_b64, strlen(pub_b64), NULL, &der_len, sodium_base64_VARIANT_ORIGINAL)) {
        p = der;
        pk = d2i_PUBKEY(NULL, &p, (long)der_len);
    }
    if (!pk || p != der + der_len ||
        EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA || EVP_PKEY_get_bits(pk) < 3072 ||
        (size_t)EVP_PKEY_get_size(pk) > sizeof wk) {
        kms_set_msg(msg, "region %s: the wrapping key is not an RSA key of 3072 bits or more", region);
        goto out;
    }
    if (!(kek = sodium_malloc(32)) || kms_random(kek, 32) || oaep_seal(pk, kek, 32, wk, &wk_len) ||
        !(arr = json_array())) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    for (size_t i = from; i < k->n_versions; i++) {
        const kms_version *v = &k->versions[i];
        uint8_t *m = NULL, *ct;
        size_t n = 0, cl = 0;
        json_t *b64;
        if ((e = kms_store_version_plain(c, k, v->version, &m, &n, msg)))
            goto out;
        ct = malloc(n + 16);
        if (!ct || kwp_seal(kek, m, n, ct, &cl)) {
            sodium_free(m);
            free(ct);
            e = KMS_ERR_INTERNAL;
            kms_set_msg(msg, "cannot wrap version %u of %s", v->version, k->id);
            goto out;
        }
        sodium_free(m);
        b64 = efs_json_base64(ct, cl);
        free(ct);
        if (!b64 || json_array_append_new(arr, json_pack("{s:I, s:I, s:b, s:o}", "Version", (json_int_t)v->version,
                                                         "CreationDate", (json_int_t)v->created, "Automatic",
                                                         v->automatic != 0, "Material", b64))) {
            e = KMS_ERR_NOMEM;
            goto out;
        }
    }
    if (json_object_set_new(req, "Versions", arr) ||
        json_object_set_new(req, "WrappedKey", efs_json_base64(wk, wk_len)) ||
        json_object_set(req, "ReplicationToken", json_object_get(params, "ReplicationToken"))) {
        arr = NULL;
        e = KMS_ERR_NOMEM;
        goto out;
    }
    arr = NULL;
    e = KMS_OK;
out:
    json_decref(arr);
    if (kek)
        sodium_free(kek);
    sodium_memzero(wk, sizeof wk);
    EVP_PKEY_free(pk);
    free(der);
    return e;
}

/* Whether ep's replica (rep, its status) holds k's own key material: KMSInvalidStateException otherwise. */
static kms_err same_material(kms_core *c, kms_key *k, json_t *rep, const char *region, char **msg)
{
    const char *theirs = json_string_value(json_object_get(rep, "MaterialCheck"));
    char ours[65];
    kms_err e = material_check(c, k, ours, msg);
    if (e)
        return e;
    if (!theirs || strlen(theirs) != 64 || sodium_memcmp(ours, theirs, 64)) {
        kms_set_msg(msg, "region %s holds a key %s whose key material is not this key's: nothing is sent to it",
                    region, k->id);
        return KMS_ERR_INVALID_STATE;
    }
    return KMS_OK;
}

/* Send PutReplica with the core lock released. */
static kms_err put(kms_core *c, const kms_endpoint *ep, json_t *req, json_t **resp, char **msg)
{
    kms_err e;
    pthread_mutex_unlock(&c->lock);
    e = kms_remote_call(ep, "PutReplica", req, CALL_TIMEOUT_MS, resp, msg);
    pthread_mutex_lock(&c->lock);
    return e;
}

/* Bring ep's replica of key id (this region's primary) up to date: the versions it lacks, the primary region
 * and the region list. params: ep's answer to GetReplicationParameters, or NULL to ask here. Lock held on entry
 * and return, released during the calls. */
static kms_err push_one(kms_core *c, const char *id, const char *owner, const kms_endpoint *ep, json_t *params,
                        char **msg)
{
    json_t *pr = params ? json_incref(params) : NULL, *rep, *req = NULL, *resp = NULL, *regions = NULL;
    char primary[32];
    json_int_t have;
    kms_key *k;
    kms_err e = KMS_OK;

    if (!pr && (e = ask_parameters(c, ep, id, owner, false, false, &pr, msg)))
        return e;
    rep = json_object_get(pr, "Replica");
    have = json_integer_value(json_object_get(rep, "Versions"));
    if (!json_is_true(json_object_get(rep, "Exists"))) {
        kms_set_msg(msg, "region %s no longer holds key %s", ep->region, id);
        e = KMS_ERR_NOT_FOUND;
        goto out;
    }
    k = kms_find_key(c, id);
    if (!k || !kms_mrk_row_get(c->db, id, primary, &regions) || strcmp(primary, c->region))
        goto out; /* no longer this region's primary: nothing to push */
    if ((e = same_material(c, k, rep, ep->region, msg)))
        goto out;
    if (!(req = json_pack("{s:s, s:s, s:s, s:O}", "KeyId", id, "AWSAccountId", owner, "PrimaryRegion", primary,
                          "Regions", regions))) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    if (have >= 0 && (size_t)have < k->n_versions && (e = wrap_versions(c, k, (size_t)have, pr, req, ep->region, msg)))
        goto out;
    e = put(c, ep, req, &resp, msg);
out:
    json_decref(resp);
    json_decref(req);
    json_decref(regions);
    json_decref(pr);
    return e;
}

kms_err kms_mrk_remote_replicate(struct op_ctx *x, kms_key *k, const kms_endpoint *ep, json_t *in, const char *desc,
                                 json_t *tags, json_t **out)
{
    kms_core *c = x->core;
    char id[KMS_KEY_ID_LEN + 1], owner[16], primary[32];
    json_t *pr = NULL, *rep, *req = NULL, *resp = NULL, *regions = NULL, *md;
    kms_err e;

    snprintf(id, sizeof id, "%s", k->id);
    snprintf(owner, sizeof owner, "%s", k->owner);
    kms_mrk_busy_enter(c, id); /* (k is stale from here) */
    if ((e = ask_parameters(c, ep, id, owner, false, false, &pr, x->msg)))
        goto out;
    k = kms_find_key(c, id);
    if (!k || k->state != KS_ENABLED || !kms_mrk_row_get(c->db, id, primary, &regions) || strcmp(primary, c->region)) {
        e = fail(x, KMS_ERR_INVALID_STATE, "%s changed while its replica was being made; try again", id);
        goto out;
    }
    rep = json_object_get(pr, "Replica");
    if (json_is_true(json_object_get(rep, "Exists"))) {
        /* Made before (an answer lost on the way?): when it names this region as its primary, this region lists
         * it again and brings it up to date; the answer is AlreadyExistsException either way. */
        const char *rp = json_string_value(json_object_get(rep, "PrimaryRegion"));
        char *m0 = NULL;
        if (rp && !strcmp(rp, c->region) && same_material(c, k, rep, ep->region, &m0) == KMS_OK) {
            char *m = NULL;
            if (!kms_mrk_in_list(regions, ep->region) &&
                (json_array_append_new(regions, json_string(ep->region)) ||
                 kms_mrk_row_put(c, id, primary, regions, &m)))
                EFS_WARN("multi-Region key %s: cannot list region %s again: %s", id, ep->region, m ? m : "");
            free(m);
            m = NULL;
            if (push_one(c, id, owner, ep, pr, &m))
                EFS_WARN("multi-Region key %s: bringing region %s up to date failed: %s", id, ep->region, m ? m : "");
            free(m);
        }
        free(m0);
        e = fail(x, KMS_ERR_ALREADY_EXISTS, "Replica key %s already exists in region %s", id, ep->region);
        goto out;
    }
    if (!kms_mrk_in_list(regions, ep->region) && json_array_append_new(regions, json_string(ep->region))) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    req = json_pack("{s:s, s:s, s:b, s:s, s:O, s:s, s:s, s:s, s:i}", "KeyId", id, "AWSAccountId", owner, "Create", 1,
                    "PrimaryRegion", c->region, "Regions", regions, "KeySpec", kms_spec_name(k->spec), "KeyUsage",
                    kms_usage_name(k->usage), "Origin", k->external ? "EXTERNAL" : "AWS_KMS", "RotationPeriodInDays",
                    k->rotation_period);
    if (!req) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    if (desc || k->description)
        json_object_set_new(req, "Description", json_string(desc ? desc : k->description));
    if (k->external) {
        json_object_set_new(req, "ExpirationModel",
                            json_string(k->expires ? "KEY_MATERIAL_EXPIRES" : "KEY_MATERIAL_DOES_NOT_EXPIRE"));
        if (k->expires)
            json_object_set_new(req, "ValidTo", json_integer(k->valid_to));
    }
    if (json_object_get(in, "Policy"))
        json_object_set(req, "Policy", json_object_get(in, "Policy"));
    if (json_object_get(in, "BypassPolicyLockoutSafetyCheck"))
        json_object_set(req, "BypassPolicyLockoutSafetyCheck", json_object_get(in, "BypassPolicyLockoutSafetyCheck"));
    if (tags)
        json_object_set(req, "Tags", tags);
    if ((e = wrap_versions(c, k, 0, pr, req, ep->region, x->msg)))
        goto out;
    if ((e = put(c, ep, req, &resp, x->msg)))
        goto out; /* nothing recorded here: the destination made no replica, or removed what it made */
    json_decref(regions);
    regions = NULL;
    md = json_object_get(resp, "ReplicaKeyMetadata");
    if (!json_is_object(md) || !kms_mrk_row_get(c->db, id, primary, &regions)) {
        e = fail(x, KMS_ERR_INTERNAL, "region %s made the replica of %s but the answer is malformed", ep->region, id);
        goto out;
    }
    if (!kms_mrk_in_list(regions, ep->region) &&
        (json_array_append_new(regions, json_string(ep->region)) || (e = kms_mrk_row_put(c, id, primary, regions, x->msg))))
        goto out;
    *out = json_pack("{s:O, s:O?, s:O}", "ReplicaKeyMetadata", md, "ReplicaPolicy", json_object_get(resp, "ReplicaPolicy"),
                     "ReplicaTags", tags ? tags : json_object_get(resp, "ReplicaTags"));
    if (!*out)
        e = KMS_ERR_NOMEM;
out:
    kms_mrk_busy_leave(c, id);
    json_decref(resp);
    json_decref(req);
    json_decref(regions);
    json_decref(pr);
    return e;
}

kms_err kms_mrk_remote_update_primary(struct op_ctx *x, kms_key *k, const kms_endpoint *ep)
{
    kms_core *c = x->core;
    char id[KMS_KEY_ID_LEN + 1], owner[16], primary[32];
    json_t *pr = NULL, *rep, *req = NULL, *resp = NULL, *regions = NULL;
    const char *state;
    json_int_t have;
    kms_err e;

    snprintf(id, sizeof id, "%s", k->id);
    snprintf(owner, sizeof owner, "%s", k->owner);
    kms_mrk_busy_enter(c, id); /* (k is stale from here) */
    if ((e = ask_parameters(c, ep, id, owner, false, false, &pr, x->msg)))
        goto out;
    rep = json_object_get(pr, "Replica");
    state = json_string_value(json_object_get(rep, "KeyState"));
    have = json_integer_value(json_object_get(rep, "Versions"));
    if (!json_is_true(json_object_get(rep, "Exists"))) {
        e = fail(x, KMS_ERR_NOT_FOUND, "region %s no longer holds key %s", ep->region, id);
        goto out;
    }
    if (!state || strcmp(state, "Enabled")) {
        e = fail(x, state && !strcmp(state, "Disabled") ? KMS_ERR_DISABLED : KMS_ERR_INVALID_STATE,
                 "the replica of %s in %s is not enabled", id, ep->region);
        goto out;
    }
    k = kms_find_key(c, id);
    if (!k || k->state != KS_ENABLED || !kms_mrk_row_get(c->db, id, primary, &regions) || strcmp(primary, c->region)) {
        e = fail(x, KMS_ERR_INVALID_STATE, "%s changed meanwhile; try again", id);
        goto out;
    }
    if ((e = same_material(c, k, rep, ep->region, x->msg))) /* the primary role only to the real key */
        goto out;
    req = json_pack("{s:s, s:s, s:s, s:O, s:b, s:i, s:I}", "KeyId", id, "AWSAccountId", owner, "PrimaryRegion",
                    ep->region, "Regions", regions, "RotationEnabled", k->rotation_enabled, "RotationPeriodInDays",
                    k->rotation_period, "NextRotation", (json_int_t)k->next_rotation);
    if (!req) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    if (have >= 0 && (size_t)have < k->n_versions && (e = wrap_versions(c, k, (size_t)have, pr, req, ep->region, x->msg)))
        goto out;
    if ((e = put(c, ep, req, &resp, x->msg)))
        goto out;
    /* the other region is primary now: this one follows */
    k = kms_find_key(c, id);
    if ((e = kms_mrk_row_put(c, id, ep->region, regions, x->msg)))
        goto out;
    if (k && k->rotation_enabled) {
        k->rotation_enabled = false;
        e = kms_store_update_key(c, k, x->msg);
    }
out:
    kms_mrk_busy_leave(c, id);
    json_decref(resp);
    json_decref(req);
    json_decref(regions);
    json_decref(pr);
    return e;
}

kms_err kms_mrk_remote_exists(kms_core *c, const char *id, const char *owner, const kms_endpoint *ep, bool *exists,
                              char **msg)
{
    json_t *pr = NULL;
    kms_err e = ask_parameters(c, ep, id, owner, true, true, &pr, msg); /* (keep_lock: the caller holds none) */
    if (!e)
        *exists = json_is_true(json_object_get(json_object_get(pr, "Replica"), "Exists"));
    json_decref(pr);
    return e;
}

void kms_mrk_busy_enter(kms_core *c, const char *id)
{
    for (;;) {
        int slot = -1;
        bool taken = false;
        for (int i = 0; i < KMS_MRK_BUSY_MAX; i++) {
            if (!c->mrk_busy[i][0])
                slot = slot < 0 ? i : slot;
            else if (!strcmp(c->mrk_busy[i], id))
                taken = true;
        }
        if (!taken && slot >= 0) {
            snprintf(c->mrk_busy[slot], sizeof c->mrk_busy[slot], "%s", id);
            return;
        }
        pthread_cond_wait(&c->mrk_cv, &c->lock); /* (other calls run meanwhile) */
    }
}

void kms_mrk_busy_leave(kms_core *c, const char *id)
{
    for (int i = 0; i < KMS_MRK_BUSY_MAX; i++)
        if (!strcmp(c->mrk_busy[i], id))
            c->mrk_busy[i][0] = 0;
    pthread_cond_broadcast(&c->mrk_cv);
}

/* Keys whose new versions wait for their endpoint replicas: this thread's, for the call it is making. */
#define MAX_PENDING 8
static _Thread_local struct {
    kms_core *core;
    int n;
    char ids[MAX_PENDING][KMS_KEY_ID_LEN + 1];
} pending;

void kms_mrk_queue_push(kms_core *c, const char *key_id)
{
    if (pending.core != c) {
        pending.core = c;
        pending.n = 0;
    }
    for (int i = 0; i < pending.n; i++)
        if (!strcmp(pending.ids[i], key_id))
            return;
    if (pending.n < MAX_PENDING)
        snprintf(pending.ids[pending.n++], KMS_KEY_ID_LEN + 1, "%s", key_id);
}

void kms_mrk_flush_pushes(kms_core *c)
{
    char ids[MAX_PENDING][KMS_KEY_ID_LEN + 1];
    int n;
    if (pending.core != c || !pending.n)
        return;
    n = pending.n;
    memcpy(ids, pending.ids, sizeof ids);
    pending.n = 0;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < n; i++) {
        char primary[32], owner[16];
        json_t *regions = NULL, *v;
        size_t j;
        kms_key *k;
        kms_mrk_busy_enter(c, ids[i]);
        k = kms_find_key(c, ids[i]);
        if (!k || !kms_mrk_row_get(c->db, ids[i], primary, &regions) || strcmp(primary, c->region)) {
            kms_mrk_busy_leave(c, ids[i]);
            json_decref(regions);
            continue;
        }
        snprintf(owner, sizeof owner, "%s", k->owner);
        json_array_foreach(regions, j, v) {
            kms_endpoint ep; /* a store region was pushed to by kms_mrk_push itself */
            char *m = NULL;
            memset(&ep, 0, sizeof ep);
            if (!json_is_string(v) || !strcmp(json_string_value(v), c->region))
                continue;
            if (kms_mrk_open_region(c, json_string_value(v), NULL, &ep, &m) == KMS_OK && ep.url) {
                kms_err e = push_one(c, ids[i], owner, &ep, NULL, &m);
                if (e) /* its next push (rotation, UpdatePrimaryRegion, ReplicateKey again) sends them */
                    EFS_WARN("multi-Region key %s: the new key material did not reach region %s (%s: %s)", ids[i],
                             json_string_value(v), kms_err_name(e), m ? m : "");
            }
            kms_endpoint_clear(&ep);
            free(m);
        }
        kms_mrk_busy_leave(c, ids[i]);
        json_decref(regions);
    }
    pthread_mutex_unlock(&c->lock);
}
