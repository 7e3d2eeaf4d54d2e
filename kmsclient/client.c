/*
 * client.c — the kmsclient front end: picks a backend from the URL, counts calls, and implements the
 * typed helpers (GenerateDataKey, Decrypt, ...) on top of the generic JSON call, so every helper works
 * on every backend. Plaintext from responses is decoded straight into locked memory and the JSON text
 * that carried it is wiped.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "backend.h"
#include "common/jsonb64.h"
#include "common/jsonwipe.h"

struct kmsc {
    void *impl;
    const kmsc_backend_ops *ops;
    atomic_uint_fast64_t calls;
};

static void set_err(kmsc_error *err, kms_err code, const char *msg)
{
    if (!err)
        return;
    err->code = code;
    snprintf(err->name, sizeof err->name, "%s", kms_err_name(code));
    snprintf(err->message, sizeof err->message, "%s", msg ? msg : "");
}

kms_err kmsc_new(const kmsc_opts *opts, kmsc **out, char **errmsg)
{
    kmsc *c;
    kms_err e;

    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    if (sodium_init() < 0)
        return KMS_ERR_INTERNAL;
    efs_json_wipe_on_free(); /* jansson's scratch buffers may hold plaintext: wipe them on free */
    if (!opts || !opts->url) {
        if (errmsg)
            *errmsg = strdup("no key-service URL given");
        return KMS_ERR_VALIDATION;
    }
    c = calloc(1, sizeof *c);
    if (!c)
        return KMS_ERR_NOMEM;
    if (!strncmp(opts->url, "local:", 6)) {
        e = kmsc_backend_local_new(opts, opts->url + 6, &c->impl, &c->ops, errmsg);
    } else if (!strncmp(opts->url, "http://", 7) || !strncmp(opts->url, "https://", 8) ||
               !strncmp(opts->url, "unix:", 5)) {
        e = kmsc_backend_http_new(opts, &c->impl, &c->ops, errmsg);
    } else {
        if (errmsg && asprintf(errmsg,
                               "unsupported key-service URL '%s' (use local:STORE_DIR, http(s)://HOST:PORT or "
                               "unix:/SOCKET)",
                               opts->url) < 0)
            *errmsg = NULL;
        e = KMS_ERR_VALIDATION;
    }
    if (e) {
        free(c);
        return e;
    }
    *out = c;
    return KMS_OK;
}

void kmsc_free(kmsc *c)
{
    if (!c)
        return;
    if (c->ops && c->ops->free)
        c->ops->free(c->impl);
    free(c);
}

kms_core *kmsc_embedded_core(kmsc *c)
{
    return c && c->ops && !strcmp(c->ops->name, "local") ? kmsc_backend_local_core(c->impl) : NULL;
}

void kmsc_defer_begin(kmsc *c)
{
    kms_core *core = kmsc_embedded_core(c);
    if (core)
        kms_core_defer_begin(core);
}

kms_err kmsc_defer_end(kmsc *c)
{
    kms_core *core = kmsc_embedded_core(c);
    return core ? kms_core_defer_end(core) : KMS_OK;
}

uint64_t kmsc_call_count(kmsc *c)
{
    return atomic_load(&c->calls);
}

kms_err kmsc_call(kmsc *c, const char *operation, const char *req, size_t req_len, char **resp, size_t *resp_len,
                  kmsc_error *err)
{
    kmsc_error local;
    if (!err)
        err = &local;
    memset(err, 0, sizeof *err);
    *resp = NULL;
    *resp_len = 0;
    atomic_fetch_add(&c->calls, 1);
    return c->ops->call(c->impl, operation, req, req_len, resp, resp_len, err);
}

void kmsc_response_free(char *resp, size_t resp_len)
{
    if (!resp)
        return;
    sodium_memzero(resp, resp_len);
    free(resp);
}

/* kmsc_secret_new / kmsc_secret_free: secret.c */

void kmsc_data_key_free(kmsc_data_key *dk)
{
    if (!dk)
        return;
    kmsc_secret_free(dk->plaintext);
    free(dk->ciphertext);
    free(dk->key_arn);
    free(dk);
}

/* ---- typed helpers -------------------------------------------------------------------------- */

static json_t *ectx_json(const kms_ectx *ectx)
{
    json_t *o = json_object();
    if (o && ectx)
        for (size_t i = 0; i < ectx->n; i++)
            json_object_set_new(o, ectx->pairs[i].key, json_string(ectx->pairs[i].value));
    return o;
}

/* Decode base64 field into malloc'd (secret=false) or locked (secret=true) memory. */
static kms_err unb64(json_t *resp, const char *field, bool secret, uint8_t **out, size_t *out_len,
                     kmsc_secret **sout, kmsc_error *err)
{
    const char *s = json_string_value(json_object_get(resp, field));
    size_t cap, n = 0;
    uint8_t *buf;
    if (!s) {
        set_err(err, KMS_ERR_SERIALIZATION, "response has no field");
        snprintf(err->message, sizeof err->message, "response has no %s field", field);
        return KMS_ERR_SERIALIZATION;
    }
    cap = strlen(s) / 4 * 3 + 3;
    if (secret) {
        /* decode straight into locked memory; the slack past len stays inside the secret's block */
        kmsc_secret *sec = kmsc_secret_new(cap);
        if (!sec)
            return KMS_ERR_NOMEM;
        if (efs_base64_decode(sec->data, cap, s, strlen(s), NULL, &n, sodium_base64_VARIANT_ORIGINAL)) {
            kmsc_secret_free(sec);
            set_err(err, KMS_ERR_SERIALIZATION, "response field is not valid base64");
            return KMS_ERR_SERIALIZATION;
        }
        sec->len = n;
        *sout = sec;
        return KMS_OK;
    }
    buf = malloc(cap);
    if (!buf)
        return KMS_ERR_NOMEM;
    if (efs_base64_decode(buf, cap, s, strlen(s), NULL, &n, sodium_base64_VARIANT_ORIGINAL)) {
        free(buf);
        set_err(err, KMS_ERR_SERIALIZATION, "response field is not valid base64");
        return KMS_ERR_SERIALIZATION;
    }
    *out = buf;
    *out_len = n;
    return KMS_OK;
}

static void wipe_json_string(json_t *o, const char *field)
{
    json_t *v = json_object_get(o, field);
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        sodium_memzero((char *)s, strlen(s));
    }
}

/* Send req (consumed), parse the response into *resp_json. */
static kms_err call_json(kmsc *c, const char *op, json_t *req, json_t **resp_json, kmsc_error *err)
{
    char *body, *resp = NULL;
    size_t resp_len = 0;
    json_error_t jerr;
    kms_err e;

    *resp_json = NULL;
    if (!req)
        return KMS_ERR_NOMEM;
    body = json_dumps(req, JSON_COMPACT);
    wipe_json_string(req, "Plaintext");
    json_decref(req);
    if (!body)
        return KMS_ERR_NOMEM;
    e = kmsc_call(c, op, body, strlen(body), &resp, &resp_len, err);
    sodium_memzero(body, strlen(body));
    free(body);
    if (e)
        return e;
    *resp_json = json_loadb(resp, resp_len, 0, &jerr);
    kmsc_response_free(resp, resp_len);
    if (!*resp_json) {
        set_err(err, KMS_ERR_SERIALIZATION, "the key service returned malformed JSON");
        return KMS_ERR_SERIALIZATION;
    }
    return KMS_OK;
}

static kms_err gen(kmsc *c, const char *op, const char *key_id, const kms_ectx *ectx, size_t nbytes,
                   bool plaintext, kmsc_data_key **out, kmsc_error *err)
{
    kmsc_error local;
    json_t *resp;
    kmsc_data_key *dk;
    kms_err e;
    const char *arn;

    if (!err)
        err = &local;
    *out = NULL;
    if (!key_id) {
        set_err(err, KMS_ERR_VALIDATION, "KeyId is required");
        return KMS_ERR_VALIDATION;
    }
    e = call_json(c, op,
                  json_pack("{s:s, s:I, s:o}", "KeyId", key_id, "NumberOfBytes", (json_int_t)nbytes,
                            "EncryptionContext", ectx_json(ectx)),
                  &resp, err);
    if (e)
        return e;
    dk = calloc(1, sizeof *dk);
    if (!dk) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    e = unb64(resp, "CiphertextBlob", false, &dk->ciphertext, &dk->ciphertext_len, NULL, err);
    if (!e && plaintext)
        e = unb64(resp, "Plaintext", true, NULL, NULL, &dk->plaintext, err);
    arn = json_string_value(json_object_get(resp, "KeyId"));
    if (!e && !(dk->key_arn = strdup(arn ? arn : key_id)))
        e = KMS_ERR_NOMEM;
    if (!e && plaintext && dk->plaintext->len != nbytes) {
        set_err(err, KMS_ERR_SERIALIZATION, "the key service returned a data key of the wrong length");
        e = KMS_ERR_SERIALIZATION;
    }
    if (e)
        kmsc_data_key_free(dk);
    else
        *out = dk;
out:
    wipe_json_string(resp, "Plaintext");
    json_decref(resp);
    return e;
}

kms_err kmsc_generate_data_key(kmsc *c, const char *key_id, const kms_ectx *ectx, size_t nbytes,
                               kmsc_data_key **out, kmsc_error *err)
{
    return gen(c, "GenerateDataKey", key_id, ectx, nbytes, true, out, err);
}

kms_err kmsc_generate_data_key_without_plaintext(kmsc *c, const char *key_id, const kms_ectx *ectx, size_t nbytes,
                                                 kmsc_data_key **out, kmsc_error *err)
{
    return gen(c, "GenerateDataKeyWithoutPlaintext", key_id, ectx, nbytes, false, out, err);
}

kms_err kmsc_decrypt(kmsc *c, const char *key_id, const uint8_t *blob, size_t blob_len, const kms_ectx *ectx,
                     kmsc_secret **out, kmsc_error *err)
{
    return kmsc_decrypt_with_grant(c, key_id, blob, blob_len, ectx, NULL, out, err);
}

kms_err kmsc_decrypt_with_grant(kmsc *c, const char *key_id, const uint8_t *blob, size_t blob_len,
                                const kms_ectx *ectx, const char *grant_token, kmsc_secret **out, kmsc_error *err)
{
    kmsc_error local;
    json_t *req, *resp;
    kms_err e;
    if (!err)
        err = &local;
    *out = NULL;
    req = json_pack("{s:o, s:o}", "CiphertextBlob", efs_json_base64(blob, blob_len), "EncryptionContext", ectx_json(ectx));
    if (req && key_id)
        json_object_set_new(req, "KeyId", json_string(key_id));
    if (req && grant_token)
        json_object_set_new(req, "GrantTokens", json_pack("[s]", grant_token));
    e = call_json(c, "Decrypt", req, &resp, err);
    if (e)
        return e;
    e = unb64(resp, "Plaintext", true, NULL, NULL, out, err);
    wipe_json_string(resp, "Plaintext");
    json_decref(resp);
    return e;
}

kms_err kmsc_create_grant(kmsc *c, const char *key_id, const char *grantee, const char *retiring,
                          const char *const *ops, size_t n_ops, const kms_ectx *subset, const char *name,
                          char **grant_id, char **grant_token, kmsc_error *err)
{
    kmsc_error local;
    json_t *req, *resp, *a = json_array();
    const char *id, *tok;
    kms_err e;
    if (!err)
        err = &local;
    *grant_id = *grant_token = NULL;
    for (size_t i = 0; a && i < n_ops; i++)
        json_array_append_new(a, json_string(ops[i]));
    req = json_pack("{s:s, s:s, s:o}", "KeyId", key_id, "GranteePrincipal", grantee, "Operations", a);
    if (req && retiring)
        json_object_set_new(req, "RetiringPrincipal", json_string(retiring));
    if (req && subset)
        json_object_set_new(req, "Constraints", json_pack("{s:o}", "EncryptionContextSubset", ectx_json(subset)));
    if (req && name)
        json_object_set_new(req, "Name", json_string(name));
    e = call_json(c, "CreateGrant", req, &resp, err);
    if (e)
        return e;
    id = json_string_value(json_object_get(resp, "GrantId"));
    tok = json_string_value(json_object_get(resp, "GrantToken"));
    if (!id || !tok) {
        json_decref(resp);
        set_err(err, KMS_ERR_SERIALIZATION, "CreateGrant: no GrantId or GrantToken in the response");
        return KMS_ERR_SERIALIZATION;
    }
    *grant_id = strdup(id);
    *grant_token = strdup(tok);
    json_decref(resp);
    if (!*grant_id || !*grant_token) {
        free(*grant_id);
        free(*grant_token);
        *grant_id = *grant_token = NULL;
        return KMS_ERR_NOMEM;
    }
    return KMS_OK;
}

kms_err kmsc_retire_grant(kmsc *c, const char *key_arn, const char *grant_id, kmsc_error *err)
{
    json_t *resp;
    kms_err e = call_json(c, "RetireGrant", json_pack("{s:s, s:s}", "KeyId", key_arn, "GrantId", grant_id), &resp, err);
    json_decref(resp);
    return e;
}

kms_err kmsc_revoke_grant(kmsc *c, const char *key_arn, const char *grant_id, kmsc_error *err)
{
    json_t *resp;
    kms_err e = call_json(c, "RevokeGrant", json_pack("{s:s, s:s}", "KeyId", key_arn, "GrantId", grant_id), &resp, err);
    json_decref(resp);
    return e;
}

kms_err kmsc_audit_service_event(kmsc *c, const kms_service_event *ev)
{
    kms_core *core = kmsc_embedded_core(c);
    if (!core)
        return KMS_ERR_UNSUPPORTED_OPERATION;
    return kms_core_audit_service_event(core, kmsc_backend_local_principal(c->impl), ev);
}

const char *kmsc_access_key_id(kmsc *c)
{
    return c && c->ops->access_key ? c->ops->access_key(c->impl) : NULL;
}

const char *kmsc_region(kmsc *c)
{
    return c && c->ops->region ? c->ops->region(c->impl) : NULL;
}

kms_err kmsc_caller_arn(kmsc *c, char *buf, size_t cap)
{
    const kms_principal *p;
    int n;
    if (!kmsc_embedded_core(c))
        return KMS_ERR_UNSUPPORTED_OPERATION;
    p = kmsc_backend_local_principal(c->impl);
    if (!p->user || !strcmp(p->user, "root"))
        n = snprintf(buf, cap, "arn:aws:iam::%s:root", p->account);
    else
        n = snprintf(buf, cap, "arn:aws:iam::%s:user/%s", p->account, p->user);
    return n < 0 || (size_t)n >= cap ? KMS_ERR_VALIDATION : KMS_OK;
}

kms_err kmsc_encrypt(kmsc *c, const char *key_id, const uint8_t *pt, size_t pt_len, const kms_ectx *ectx,
                     uint8_t **blob, size_t *blob_len, kmsc_error *err)
{
    kmsc_error local;
    json_t *resp;
    kms_err e;
    if (!err)
        err = &local;
    *blob = NULL;
    if (!key_id) {
        set_err(err, KMS_ERR_VALIDATION, "KeyId is required");
        return KMS_ERR_VALIDATION;
    }
    e = call_json(c, "Encrypt",
                  json_pack("{s:s, s:o, s:o}", "KeyId", key_id, "Plaintext", efs_json_base64(pt, pt_len), "EncryptionContext",
                            ectx_json(ectx)),
                  &resp, err);
    if (e)
        return e;
    e = unb64(resp, "CiphertextBlob", false, blob, blob_len, NULL, err);
    json_decref(resp);
    return e;
}

kms_err kmsc_re_encrypt(kmsc *c, const char *src_key_id, const uint8_t *blob, size_t blob_len,
                        const kms_ectx *src_ectx, const char *dst_key_id, const kms_ectx *dst_ectx,
                        uint8_t **out_blob, size_t *out_len, kmsc_error *err)
{
    kmsc_error local;
    json_t *req, *resp;
    kms_err e;
    if (!err)
        err = &local;
    *out_blob = NULL;
    if (!dst_key_id) {
        set_err(err, KMS_ERR_VALIDATION, "DestinationKeyId is required");
        return KMS_ERR_VALIDATION;
    }
    req = json_pack("{s:o, s:s, s:o, s:o}", "CiphertextBlob", efs_json_base64(blob, blob_len), "DestinationKeyId", dst_key_id,
                    "SourceEncryptionContext", ectx_json(src_ectx), "DestinationEncryptionContext",
                    ectx_json(dst_ectx));
    if (req && src_key_id)
        json_object_set_new(req, "SourceKeyId", json_string(src_key_id));
    e = call_json(c, "ReEncrypt", req, &resp, err);
    if (e)
        return e;
    e = unb64(resp, "CiphertextBlob", false, out_blob, out_len, NULL, err);
    json_decref(resp);
    return e;
}

kms_err kmsc_describe_key(kmsc *c, const char *key_id, char **arn, bool *enabled, kmsc_error *err)
{
    kmsc_error local;
    json_t *resp, *md;
    kms_err e;
    if (!err)
        err = &local;
    if (arn)
        *arn = NULL;
    if (!key_id) {
        set_err(err, KMS_ERR_VALIDATION, "KeyId is required");
        return KMS_ERR_VALIDATION;
    }
    e = call_json(c, "DescribeKey", json_pack("{s:s}", "KeyId", key_id), &resp, err);
    if (e)
        return e;
    md = json_object_get(resp, "KeyMetadata");
    if (!json_is_object(md) || !json_is_string(json_object_get(md, "Arn"))) {
        json_decref(resp);
        set_err(err, KMS_ERR_SERIALIZATION, "DescribeKey response has no KeyMetadata.Arn");
        return KMS_ERR_SERIALIZATION;
    }
    if (arn && !(*arn = strdup(json_string_value(json_object_get(md, "Arn"))))) {
        json_decref(resp);
        return KMS_ERR_NOMEM;
    }
    if (enabled) {
        const char *st = json_string_value(json_object_get(md, "KeyState"));
        *enabled = st && !strcmp(st, "Enabled");
    }
    json_decref(resp);
    return KMS_OK;
}

/* The account field of an ARN (arn:aws:SERVICE:REGION:ACCOUNT:...) when it is 12 digits. */
static bool arn_account(const char *arn, char account[16])
{
    const char *p = arn;
    size_t n;
    if (!p || strncmp(p, "arn:", 4))
        return false;
    for (int i = 0; i < 4 && p; i++)
        p = strchr(p, ':') ? strchr(p, ':') + 1 : NULL;
    if (!p || (n = strcspn(p, ":")) != 12 || strspn(p, "0123456789") < 12)
        return false;
    memcpy(account, p, 12);
    account[12] = 0;
    return true;
}

kms_err kmsc_caller_account(kmsc *c, char account[16], kmsc_error *err)
{
    kmsc_error local;
    const char *known = c->ops->account ? c->ops->account(c->impl) : NULL;
    char *arn = NULL;
    kms_err e;
    if (!err)
        err = &local;
    account[0] = 0;
    if (known) {
        snprintf(account, 16, "%s", known);
        return KMS_OK;
    }
    memset(err, 0, sizeof *err);
    e = kmsc_describe_key(c, "alias/aws/ebs", &arn, NULL, err);
    if (!e) {
        bool ok = arn_account(arn, account);
        free(arn);
        if (ok) {
            if (c->ops->remember_account)
                c->ops->remember_account(c->impl, account);
            return KMS_OK;
        }
        set_err(err, KMS_ERR_SERIALIZATION, "DescribeKey returned a key ARN without an account");
        return KMS_ERR_SERIALIZATION;
    }
    if (e == KMS_ERR_NOT_FOUND || e == KMS_ERR_ACCESS_DENIED) {
        /* NotFound names the alias ARN in the caller's account; AccessDenied ("User: PRINCIPAL-ARN is not
           authorized ...", AWS's shape) names the caller first */
        const char *p = strstr(err->message, "arn:aws");
        char a[256];
        snprintf(a, sizeof a, "%.*s", p ? (int)strcspn(p, " ") : 0, p ? p : "");
        if (arn_account(a, account)) {
            memset(err, 0, sizeof *err);
            if (c->ops->remember_account)
                c->ops->remember_account(c->impl, account);
            return KMS_OK;
        }
        set_err(err, KMS_ERR_SERIALIZATION, "the key service did not name the caller's account");
        return KMS_ERR_SERIALIZATION;
    }
    return e;
}
