/*
 * ops_access.c — the operations on who may use a key (PutKeyPolicy, GetKeyPolicy, ListKeyPolicies,
 * CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant) and the glue between the
 * operations of ops.c and the access decision of access.c: every use of a key resolved by ops.c is
 * authorized by kms_authorize_key with the request's encryption context as conditions see it.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "authz.h"
#include "oputil.h"

#define MAX_GRANTS_PER_KEY 50000
#define MAX_GRANT_TOKENS 10

/* ---- authorization of a key's use ----------------------------------------------------------- */

/* The request's encryption context for this action, as borrowed pairs (in pairs[cap], or malloc'd
 * into *heap when larger). false on OOM: the decision must not be made without it. */
static bool request_ectx(json_t *in, const char *action, kms_ectx *ectx, kms_ectx_pair *pairs, size_t cap,
                         kms_ectx_pair **heap)
{
    const char *field = !strcmp(action, "ReEncryptFrom") ? "SourceEncryptionContext"
                        : !strcmp(action, "ReEncryptTo") ? "DestinationEncryptionContext"
                                                         : "EncryptionContext";
    json_t *o = in ? json_object_get(in, field) : NULL, *v;
    const char *k;
    size_t n = 0;
    ectx->pairs = NULL;
    ectx->n = 0;
    *heap = NULL;
    if (!json_is_object(o) || !json_object_size(o))
        return true;
    if (json_object_size(o) > cap) {
        if (!(*heap = calloc(json_object_size(o), sizeof **heap)))
            return false;
        pairs = *heap;
    }
    json_object_foreach(o, k, v) {
        if (!json_is_string(v))
            continue; /* the operation refuses it */
        pairs[n].key = k;
        pairs[n].value = json_string_value(v);
        n++;
    }
    ectx->pairs = pairs;
    ectx->n = n;
    return true;
}

kms_err kms_authorize_key(struct op_ctx *x, kms_key *k, const char *alias)
{
    const char *action = x->action ? x->action : x->operation;
    kms_ectx_pair pairs[16], *heap = NULL;
    const char *ops[KMS_N_GRANT_OPS];
    kms_ectx ectx;
    kms_access_req r = {.action = action, .ectx = &ectx, .alias = alias, .new_grant = x->new_grant,
                        .grant_used = x->grant_used};
    kms_err e;
    if (!request_ectx(x->in, action, &ectx, pairs, sizeof pairs / sizeof pairs[0], &heap))
        return KMS_ERR_NOMEM;
    if (x->new_grant) {
        for (int i = 0; i < KMS_N_GRANT_OPS; i++)
            if (x->new_grant->ops & (1u << i))
                ops[r.n_grant_ops++] = KMS_GRANT_OPS[i];
        r.grant_ops = ops;
    }
    e = kms_access_check(x->core, x->caller, k, &r, x->msg);
    free(heap);
    return e;
}

static bool takes(const char *const *ops, size_t n, const char *op)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ops[i], op))
            return true;
    return false;
}

/* The grant operations' dry run (model.c has checked DryRun and set x->dry_run): right after the
 * authorization, so it tells whether the call would be allowed. */
kms_err kms_dry_run(struct op_ctx *x, const char *action)
{
    (void)action;
    return x->dry_run ? kms_op_fail(x, KMS_ERR_DRY_RUN, "The request would have succeeded, but the DryRun option is set.")
                      : KMS_OK;
}

/* ---- grant tokens --------------------------------------------------------------------------- */

static kms_grant *grant_by_token(kms_core *c, const char *token, kms_key **key)
{
    for (size_t i = 0; i < c->n_keys; i++)
        for (size_t j = 0; j < c->keys[i].n_grants; j++)
            if (!strcmp(c->keys[i].grants[j].token, token)) {
                if (key)
                    *key = &c->keys[i];
                return &c->keys[i].grants[j];
            }
    return NULL;
}

kms_err kms_check_grant_tokens(struct op_ctx *x, json_t *in)
{
    static const char *const TAKES[] = {"CreateGrant", "Decrypt", "DeriveSharedSecret", "DescribeKey", "Encrypt",
                                        "GenerateDataKey", "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
                                        "GenerateDataKeyWithoutPlaintext", "GenerateMac", "GetPublicKey", "ReEncrypt",
                                        "Sign", "Verify", "VerifyMac"};
    json_t *t = json_object_get(in, "GrantTokens"), *v;
    size_t i;
    if (!t || json_is_null(t) || !takes(TAKES, sizeof TAKES / sizeof TAKES[0], x->operation))
        return KMS_OK; /* the common case costs one lookup in the request */
    if (!json_is_array(t))
        return kms_op_fail(x, KMS_ERR_SERIALIZATION, "GrantTokens must be a list of strings");
    if (json_array_size(t) > MAX_GRANT_TOKENS)
        return kms_op_fail(x, KMS_ERR_VALIDATION,
                           "1 validation error detected: Value at 'grantTokens' failed to satisfy constraint: Member "
                           "must have length less than or equal to %d", MAX_GRANT_TOKENS);
    json_array_foreach(t, i, v) {
        if (!json_is_string(v))
            return kms_op_fail(x, KMS_ERR_SERIALIZATION, "GrantTokens must be a list of strings");
        if (!json_string_length(v) || json_string_length(v) > 8192)
            return kms_op_fail(x, KMS_ERR_VALIDATION,
                               "1 validation error detected: Value at 'grantTokens' failed to satisfy constraint: "
                               "Member must have length between 1 and 8192");
    }
    /* Grants take effect at once here (no eventual consistency to bridge), so a token adds no rights;
     * it must still name a grant this store holds. */
    json_array_foreach(t, i, v) {
        if (!grant_by_token(x->core, json_string_value(v), NULL))
            return kms_op_fail(x, KMS_ERR_INVALID_GRANT_TOKEN, "Invalid grant token");
    }
    return KMS_OK;
}

/* ---- key policies --------------------------------------------------------------------------- */

static kms_err get_bool(struct op_ctx *x, json_t *in, const char *field, bool *out)
{
    json_t *v = json_object_get(in, field);
    *out = false;
    if (!v || json_is_null(v))
        return KMS_OK;
    if (!json_is_boolean(v))
        return kms_op_fail(x, KMS_ERR_SERIALIZATION, "%s must be a boolean", field);
    *out = json_is_true(v);
    return KMS_OK;
}

/* Parse and check a policy the caller wants on k: size, grammar, and — unless bypassed — that the caller
 * could still change it afterwards. On success *compiled owns the compiled form. */
static kms_err admit_policy(struct op_ctx *x, const char *text, bool bypass, const kms_key *k, kms_policy **compiled)
{
    kms_err e;
    *compiled = NULL;
    if (!*text)
        return kms_op_fail(x, KMS_ERR_VALIDATION, "1 validation error detected: Value at 'policy' failed to satisfy "
                                                  "constraint: Member must have length greater than or equal to 1");
    e = kms_policy_parse(text, strlen(text), compiled, x->msg);
    if (e)
        return e;
    if (!bypass && !kms_access_policy_allows_put(x->core, x->caller, k, *compiled)) {
        kms_policy_free(*compiled);
        *compiled = NULL;
        return kms_op_fail(x, KMS_ERR_MALFORMED_POLICY,
                           "The new key policy will not allow you to update the key policy in the future.");
    }
    return KMS_OK;
}

kms_err kms_new_key_policy(struct op_ctx *x, json_t *in, kms_key *k)
{
    const char *text;
    bool bypass;
    kms_policy *compiled;
    kms_err e = kms_op_get_str(x, in, "Policy", false, &text);
    if (!e)
        e = get_bool(x, in, "BypassPolicyLockoutSafetyCheck", &bypass);
    k->policy_text = NULL;
    k->policy = NULL;
    if (e || !text)
        return e;
    if ((e = admit_policy(x, text, bypass, k, &compiled)))
        return e;
    if (!(k->policy_text = strdup(text))) {
        kms_policy_free(compiled);
        return KMS_ERR_NOMEM;
    }
    k->policy = compiled;
    return KMS_OK;
}

static kms_err policy_name(struct op_ctx *x, json_t *in)
{
    const char *name;
    kms_err e = kms_op_get_str(x, in, "PolicyName", false, &name);
    if (e || !name)
        return e;
    if (!*name || strlen(name) > 128 || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") !=
                                             strlen(name))
        return kms_op_fail(x, KMS_ERR_VALIDATION,
                           "1 validation error detected: Value '%s' at 'policyName' failed to satisfy constraint: "
                           "Member must satisfy regular expression pattern: [\\w]+", name);
    if (strcmp(name, "default"))
        return kms_op_fail(x, KMS_ERR_NOT_FOUND, "No such policy: %s (a key has one policy, named default)", name);
    return KMS_OK;
}

kms_err kms_op_put_key_policy(struct op_ctx *x, json_t *in, json_t **out)
{
    const char *text;
    bool bypass;
    kms_key *k;
    kms_policy *compiled;
    char *copy, *old_text;
    kms_err e = policy_name(x, in);
    if (!e)
        e = kms_op_get_str(x, in, "Policy", true, &text);
    if (!e)
        e = get_bool(x, in, "BypassPolicyLockoutSafetyCheck", &bypass);
    if (!e)
        e = kms_op_resolve_any(x, in, &k);
    if (!e)
        e = admit_policy(x, text, bypass, k, &compiled);
    if (e)
        return e;
    if (!(copy = strdup(text))) {
        kms_policy_free(compiled);
        return KMS_ERR_NOMEM;
    }
    old_text = k->policy_text;
    k->policy_text = copy;
    e = kms_store_write_policy(x->core, k, x->msg);
    k->policy_text = old_text;
    if (e) { /* the old policy stays in force */
        free(copy);
        kms_policy_free(compiled);
        return e;
    }
    kms_key_set_policy(k, copy, compiled);
    *out = json_object();
    return KMS_OK;
}

kms_err kms_op_get_key_policy(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    char *def = NULL;
    kms_err e = policy_name(x, in);
    if (!e)
        e = kms_op_resolve_any(x, in, &k);
    if (e)
        return e;
    if (!k->policy_text && !(def = kms_default_policy_text(k->owner)))
        return KMS_ERR_NOMEM;
    *out = json_pack("{s:s, s:s}", "Policy", k->policy_text ? k->policy_text : def, "PolicyName", "default");
    free(def);
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}

kms_err kms_op_list_key_policies(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    size_t start, limit;
    kms_err e = kms_op_resolve_any(x, in, &k);
    if (!e)
        e = kms_op_paging(x, in, 100, 1000, 1, &start, &limit);
    if (e)
        return e;
    *out = start == 0 ? json_pack("{s:[s]}", "PolicyNames", "default") : json_pack("{s:[]}", "PolicyNames");
    if (*out)
        kms_op_page_end(*out, 1, 1);
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}

/* ---- grants --------------------------------------------------------------------------------- */

/* A grantee or retiring principal: an IAM principal ARN or account id, or (retiring only, as EC2's is
 * for EBS volumes) a service principal NAME.amazonaws.com. */
static bool valid_principal(const char *s, bool service_ok)
{
    char acct[13];
    size_t n = strlen(s);
    if (kms_principal_parse(s, acct))
        return true;
    if (!service_ok || n > 256 || n <= 14 || strcmp(s + n - 14, ".amazonaws.com"))
        return false;
    for (const char *p = s; *p; p++)
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && !strchr(".-", *p))
            return false;
    return true;
}

/* Whether the caller is `principal` (an IAM principal, or a service calling on someone's behalf). */
static bool caller_is(struct op_ctx *x, const char *principal)
{
    char arn[160];
    if (x->caller && x->caller->via_service && !strcmp(x->caller->via_service, principal))
        return true;
    kms_caller_arn(x->core, x->caller, arn, sizeof arn);
    return kms_principal_matches(principal, arn, kms_caller_account(x->core, x->caller));
}

static kms_err grant_principal(struct op_ctx *x, json_t *in, const char *field, bool required, bool service_ok,
                               char **out)
{
    const char *s;
    kms_err e = kms_op_get_str(x, in, field, required, &s);
    *out = NULL;
    if (e || !s)
        return e;
    if (!valid_principal(s, service_ok))
        return kms_op_fail(x, KMS_ERR_VALIDATION,
                           "Invalid %s %s: an IAM principal ARN (arn:aws:iam::ACCOUNT:root|user/NAME|role/NAME) or a "
                           "12-digit account id", field, s);
    *out = strdup(s);
    return *out ? KMS_OK : KMS_ERR_NOMEM;
}

/* Constraints: accepted with any operations; they apply to those that take an encryption context
 * (access.c), and to grants made under this one (CreateGrant). */
static kms_err grant_constraints(struct op_ctx *x, json_t *in, kms_grant *g)
{
    json_t *c = json_object_get(in, "Constraints"), *sub, *eq, *ctx, *v;
    const char *k;
    size_t i = 0;
    if (!c || json_is_null(c))
        return KMS_OK;
    if (!json_is_object(c))
        return kms_op_fail(x, KMS_ERR_SERIALIZATION, "Constraints must be an object");
    json_object_foreach(c, k, v) {
        if (strcmp(k, "EncryptionContextSubset") && strcmp(k, "EncryptionContextEquals"))
            return kms_op_fail(x, KMS_ERR_SERIALIZATION, "Constraints: unknown member %s", k);
    }
    sub = json_object_get(c, "EncryptionContextSubset");
    eq = json_object_get(c, "EncryptionContextEquals");
    if (json_is_null(sub))
        sub = NULL;
    if (json_is_null(eq))
        eq = NULL;
    if (sub && eq)
        return kms_op_fail(x, KMS_ERR_VALIDATION,
                           "A grant may have an EncryptionContextEquals or an EncryptionContextSubset constraint, "
                           "not both");
    if (!sub && !eq)
        return KMS_OK;
    ctx = sub ? sub : eq;
    if (!json_is_object(ctx))
        return kms_op_fail(x, KMS_ERR_SERIALIZATION, "%s must be an object of strings",
                           sub ? "EncryptionContextSubset" : "EncryptionContextEquals");
    g->constraint = sub ? KMS_GC_SUBSET : KMS_GC_EQUALS;
    g->pairs = calloc(json_object_size(ctx) ? json_object_size(ctx) : 1, sizeof *g->pairs);
    if (!g->pairs)
        return KMS_ERR_NOMEM;
    json_object_foreach(ctx, k, v) {
        if (!json_is_string(v))
            return kms_op_fail(x, KMS_ERR_SERIALIZATION, "encryption context values must be strings");
        if (!*k)
            return kms_op_fail(x, KMS_ERR_VALIDATION, "encryption context keys must not be empty");
        g->pairs[i].key = strdup(k);
        g->pairs[i].value = strdup(json_string_value(v));
        g->n_pairs = ++i;
        if (!g->pairs[i - 1].key || !g->pairs[i - 1].value)
            return KMS_ERR_NOMEM;
    }
    return KMS_OK;
}

static kms_err grant_operations(struct op_ctx *x, json_t *in, uint32_t *ops)
{
    json_t *a = json_object_get(in, "Operations"), *v;
    size_t i;
    *ops = 0;
    if (!a || json_is_null(a))
        return kms_op_fail(x, KMS_ERR_VALIDATION, "1 validation error detected: Value at 'operations' failed to "
                                                  "satisfy constraint: Member must not be null");
    if (!json_is_array(a))
        return kms_op_fail(x, KMS_ERR_SERIALIZATION, "Operations must be a list of strings");
    if (!json_array_size(a))
        return kms_op_fail(x, KMS_ERR_VALIDATION, "a grant needs at least one operation");
    json_array_foreach(a, i, v) {
        int op = json_is_string(v) ? kms_grant_op_index(json_string_value(v)) : -1;
        if (op < 0)
            return kms_op_fail(x, KMS_ERR_VALIDATION,
                               "1 validation error detected: Value at 'operations' failed to satisfy constraint: "
                               "Member must satisfy enum value set: [Decrypt, Encrypt, GenerateDataKey, "
                               "GenerateDataKeyWithoutPlaintext, ReEncryptFrom, ReEncryptTo, Sign, Verify, "
                               "GetPublicKey, CreateGrant, RetireGrant, DescribeKey, GenerateDataKeyPair, "
                               "GenerateDataKeyPairWithoutPlaintext, GenerateMac, VerifyMac, DeriveSharedSecret]");
        *ops |= 1u << op;
    }
    return KMS_OK;
}

static bool same_str(const char *a, const char *b)
{
    return a ? b && !strcmp(a, b) : !b;
}

static bool same_grant(const kms_grant *a, const kms_grant *b)
{
    kms_ectx bc = {b->pairs, b->n_pairs};
    return same_str(a->name, b->name) && same_str(a->grantee, b->grantee) && same_str(a->retiring, b->retiring) &&
           a->ops == b->ops && a->constraint == b->constraint && a->n_pairs == b->n_pairs &&
           (a->constraint == KMS_GC_NONE ||
            kms_grant_admits(&(kms_grant){.constraint = KMS_GC_EQUALS, .pairs = a->pairs, .n_pairs = a->n_pairs}, &bc));
}

static kms_err random_text(char *hex, size_t nbytes, bool base64)
{
    uint8_t raw[48];
    if (nbytes > sizeof raw || kms_random(raw, nbytes))
        return KMS_ERR_INTERNAL;
    if (base64)
        sodium_bin2base64(hex, sodium_base64_ENCODED_LEN(nbytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING), raw, nbytes,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    else
        sodium_bin2hex(hex, 2 * nbytes + 1, raw, nbytes);
    return KMS_OK;
}

kms_err kms_op_create_grant(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_grant g = {0};
    const char *name;
    kms_key *k;
    char token[80];
    kms_err e = grant_principal(x, in, "GranteePrincipal", true, false, &g.grantee);
    if (!e)
        e = grant_principal(x, in, "RetiringPrincipal", false, true, &g.retiring);
    if (!e)
        e = grant_operations(x, in, &g.ops);
    if (!e)
        e = grant_constraints(x, in, &g);
    if (!e)
        e = kms_op_get_str(x, in, "Name", false, &name);
    if (!e && name &&
        (!*name || strlen(name) > 256 ||
         strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:/_-") != strlen(name)))
        e = kms_op_fail(x, KMS_ERR_VALIDATION,
                        "1 validation error detected: Value '%s' at 'name' failed to satisfy constraint: Member must "
                        "satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$", name);
    if (!e && name && !(g.name = strdup(name)))
        e = KMS_ERR_NOMEM;
    if (e)
        goto out;
    x->new_grant = &g;
    e = kms_op_resolve_any(x, in, &k);
    x->new_grant = NULL;
    if (!e)
        e = kms_dry_run(x, "CreateGrant");
    if (e)
        goto out;
    if (k->state == KS_PENDING_DELETION) {
        e = kms_op_fail(x, KMS_ERR_INVALID_STATE, "Key '%s' is pending deletion.", k->id);
        goto out;
    }
    if (g.name) /* idempotent: the same name and parameters give the same grant */
        for (size_t i = 0; i < k->n_grants; i++)
            if (same_grant(&k->grants[i], &g)) {
                *out = json_pack("{s:s, s:s}", "GrantToken", k->grants[i].token, "GrantId", k->grants[i].id);
                e = *out ? KMS_OK : KMS_ERR_NOMEM;
                goto out;
            }
    if (k->n_grants >= MAX_GRANTS_PER_KEY) {
        e = kms_op_fail(x, KMS_ERR_LIMIT_EXCEEDED, "a key may have at most %d grants", MAX_GRANTS_PER_KEY);
        goto out;
    }
    if ((e = random_text(g.id, 32, false)) || (e = random_text(token, 48, true)))
        goto out;
    if (!(g.token = strdup(token))) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    snprintf(g.issuing_account, sizeof g.issuing_account, "%s", kms_caller_account(x->core, x->caller));
    g.created = kms_now(x->core);
    if ((e = kms_store_insert_grant(x->core, k, &g, x->msg)))
        goto out;
    {
        const kms_grant *ng = &k->grants[k->n_grants - 1];
        *out = json_pack("{s:s, s:s}", "GrantToken", ng->token, "GrantId", ng->id);
        e = *out ? KMS_OK : KMS_ERR_NOMEM;
    }
out:
    kms_grant_clear(&g);
    return e;
}

static json_t *grant_entry(kms_core *c, const kms_key *k, const kms_grant *g)
{
    char arn[160], issuer[64];
    json_t *ops = json_array(), *o;
    kms_key_arn_of(c, k, arn, sizeof arn);
    snprintf(issuer, sizeof issuer, "arn:aws:iam::%s:root", g->issuing_account);
    for (int i = 0; ops && i < KMS_N_GRANT_OPS; i++)
        if (g->ops & (1u << i))
            json_array_append_new(ops, json_string(KMS_GRANT_OPS[i]));
    o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:o}", "KeyId", arn, "GrantId", g->id, "CreationDate",
                  (json_int_t)g->created, "GranteePrincipal", g->grantee, "IssuingAccount", issuer, "Operations", ops);
    if (!o)
        return NULL;
    if (g->name)
        json_object_set_new(o, "Name", json_string(g->name));
    if (g->retiring)
        json_object_set_new(o, "RetiringPrincipal", json_string(g->retiring));
    if (g->constraint != KMS_GC_NONE) {
        json_t *ctx = json_object();
        for (size_t i = 0; i < g->n_pairs; i++)
            json_object_set_new(ctx, g->pairs[i].key, json_string(g->pairs[i].value));
        json_object_set_new(o, "Constraints",
                            json_pack("{s:o}", g->constraint == KMS_GC_EQUALS ? "EncryptionContextEquals"
                                                                               : "EncryptionContextSubset", ctx));
    }
    return o;
}

kms_err kms_op_list_grants(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_key *k;
    const char *gid, *grantee;
    size_t start, limit, total = 0, seen = 0, next;
    json_t *arr;
    kms_err e = kms_op_get_str(x, in, "GrantId", false, &gid);
    if (!e)
        e = kms_op_get_str(x, in, "GranteePrincipal", false, &grantee);
    if (!e)
        e = kms_op_resolve_any(x, in, &k);
    if (e)
        return e;
#define LISTED(g) ((!gid || !strcmp((g)->id, gid)) && (!grantee || !strcmp((g)->grantee, grantee)))
    for (size_t i = 0; i < k->n_grants; i++)
        total += LISTED(&k->grants[i]);
    if ((e = kms_op_paging(x, in, 50, 100, total, &start, &limit)))
        return e;
    arr = json_array();
    next = start;
    for (size_t i = 0; arr && i < k->n_grants && next < start + limit; i++) {
        if (!LISTED(&k->grants[i]) || seen++ < start)
            continue;
        json_array_append_new(arr, grant_entry(x->core, k, &k->grants[i]));
        next++;
    }
#undef LISTED
    *out = json_pack("{s:o}", "Grants", arr);
    if (!*out)
        return KMS_ERR_NOMEM;
    kms_op_page_end(*out, next, total);
    return KMS_OK;
}

/* ListRetirableGrants is an IAM permission in AWS; with no IAM here, a principal may list the grants
 * retirable by principals of its own account (or by the service it calls through). */
kms_err kms_op_list_retirable_grants(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_core *c = x->core;
    char *who = NULL, acct[13], arn[160];
    size_t start, limit, total = 0, seen = 0, next;
    json_t *arr;
    kms_err e = grant_principal(x, in, "RetiringPrincipal", true, true, &who);
    if (e)
        return e;
    if (kms_principal_parse(who, acct) ? strcmp(acct, kms_caller_account(c, x->caller)) != 0
                                       : !(x->caller && x->caller->via_service &&
                                           !strcmp(x->caller->via_service, who))) {
        kms_caller_arn(c, x->caller, arn, sizeof arn);
        e = kms_op_fail(x, KMS_ERR_ACCESS_DENIED,
                        "User: %s is not authorized to perform: kms:ListRetirableGrants on resource: %s because no "
                        "identity-based policy allows the kms:ListRetirableGrants action", arn, who);
        free(who);
        return e;
    }
    for (size_t i = 0; i < c->n_keys; i++)
        for (size_t j = 0; j < c->keys[i].n_grants; j++)
            total += same_str(c->keys[i].grants[j].retiring, who);
    if ((e = kms_op_paging(x, in, 50, 100, total, &start, &limit))) {
        free(who);
        return e;
    }
    arr = json_array();
    next = start;
    for (size_t i = 0; arr && i < c->n_keys; i++)
        for (size_t j = 0; j < c->keys[i].n_grants && next < start + limit; j++) {
            if (!same_str(c->keys[i].grants[j].retiring, who) || seen++ < start)
                continue;
            json_array_append_new(arr, grant_entry(c, &c->keys[i], &c->keys[i].grants[j]));
            next++;
        }
    free(who);
    *out = json_pack("{s:o}", "Grants", arr);
    if (!*out)
        return KMS_ERR_NOMEM;
    kms_op_page_end(*out, next, total);
    return KMS_OK;
}

/* A key named by RetireGrant's KeyId (its ARN, or an id of the caller's account), without authorizing
 * a use of it: retiring is decided by the grant. */
static kms_key *key_named(struct op_ctx *x, const char *id)
{
    kms_core *c = x->core;
    const char *acct = kms_caller_account(c, x->caller), *slash = strrchr(id, '/');
    char acct_buf[13];
    kms_key *k;
    if (!strncmp(id, "arn:aws:kms:", 12)) {
        size_t rl = strlen(c->region);
        const char *a;
        if (strlen(id) < 13 + rl + 12 + 5 || strncmp(id + 12, c->region, rl) || id[12 + rl] != ':')
            return NULL;
        a = id + 13 + rl;
        if (strspn(a, "0123456789") != 12 || strncmp(a + 12, ":key/", 5))
            return NULL;
        memcpy(acct_buf, a, 12);
        acct_buf[12] = 0;
        acct = acct_buf;
        id = slash + 1;
    }
    k = kms_find_key(c, id);
    return k && !strcmp(k->owner, acct) ? k : NULL;
}

/* Who may retire a grant: its retiring principal, its grantee when it allows RetireGrant, and whoever
 * the key policy allows kms:RetireGrant. */
kms_err kms_op_retire_grant(struct op_ctx *x, json_t *in, json_t **out)
{
    const char *token, *kid, *gid;
    kms_key *k = NULL;
    kms_grant *g = NULL;
    size_t idx;
    kms_err e = kms_op_get_str(x, in, "GrantToken", false, &token);
    if (!e)
        e = kms_op_get_str(x, in, "KeyId", false, &kid);
    if (!e)
        e = kms_op_get_str(x, in, "GrantId", false, &gid);
    if (e)
        return e;
    if (token) {
        if (!*token || strlen(token) > 8192)
            return kms_op_fail(x, KMS_ERR_VALIDATION, "1 validation error detected: Value at 'grantToken' failed to "
                                                      "satisfy constraint: Member must have length between 1 and 8192");
        if (!(g = grant_by_token(x->core, token, &k)))
            return kms_op_fail(x, KMS_ERR_INVALID_GRANT_TOKEN, "Invalid grant token");
    } else {
        if (!kid || !gid)
            return kms_op_fail(x, KMS_ERR_VALIDATION, "RetireGrant needs a GrantToken, or a KeyId and a GrantId");
        if (!(k = key_named(x, kid)))
            return kms_op_fail(x, KMS_ERR_NOT_FOUND, "Key '%s' does not exist", kid);
        for (size_t i = 0; i < k->n_grants && !g; i++)
            if (!strcmp(k->grants[i].id, gid))
                g = &k->grants[i];
        if (!g)
            return kms_op_fail(x, strlen(gid) == 64 && strspn(gid, "0123456789abcdef") == 64 ? KMS_ERR_NOT_FOUND
                                                                                              : KMS_ERR_INVALID_GRANT_ID,
                               "Grant %s does not exist on this key", gid);
    }
    snprintf(x->key_id, KMS_KEY_ID_LEN + 1, "%s", k->id);
    if (!(g->retiring && caller_is(x, g->retiring)) &&
        !((g->ops & (1u << kms_grant_op_index("RetireGrant"))) && caller_is(x, g->grantee))) {
        kms_access_req r = {.action = "RetireGrant", .policy_only = true};
        if ((e = kms_access_check(x->core, x->caller, k, &r, x->msg)))
            return e;
    }
    if ((e = kms_dry_run(x, "RetireGrant")))
        return e;
    idx = (size_t)(g - k->grants);
    if ((e = kms_store_delete_grant(x->core, k, idx, x->msg)))
        return e;
    *out = json_object();
    return KMS_OK;
}

kms_err kms_op_revoke_grant(struct op_ctx *x, json_t *in, json_t **out)
{
    const char *gid;
    kms_key *k;
    kms_err e = kms_op_get_str(x, in, "GrantId", true, &gid);
    if (!e)
        e = kms_op_resolve_any(x, in, &k);
    if (!e)
        e = kms_dry_run(x, "RevokeGrant");
    if (e)
        return e;
    for (size_t i = 0; i < k->n_grants; i++)
        if (!strcmp(k->grants[i].id, gid)) {
            if ((e = kms_store_delete_grant(x->core, k, i, x->msg)))
                return e;
            *out = json_object();
            return KMS_OK;
        }
    return kms_op_fail(x, strlen(gid) == 64 && strspn(gid, "0123456789abcdef") == 64 ? KMS_ERR_NOT_FOUND
                                                                                      : KMS_ERR_INVALID_GRANT_ID,
                       "Grant %s does not exist on this key", gid);
}
