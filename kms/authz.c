/*
 * authz.c — who may do what with which key (authz.h). For one use of one key: an explicit Deny in the
 * key policy, else an Allow in it, else a grant whose grantee, operations and constraint admit the
 * request, else denied with AWS's AccessDeniedException message. The policy is compiled once per text
 * (kms/policy.c) and cached on the key; a call evaluates only compiled arrays.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "authz.h"

kms_err kms_authorize(kms_core *c, const kms_principal *caller, const char *operation, const char *key_id)
{
    (void)c;
    (void)caller;
    (void)operation;
    (void)key_id;
    return KMS_OK;
}

const char *const KMS_GRANT_OPS[KMS_N_GRANT_OPS] = {
    "Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo",
    "Sign", "Verify", "GetPublicKey", "CreateGrant", "RetireGrant", "DescribeKey", "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext", "GenerateMac", "VerifyMac", "DeriveSharedSecret",
};

int kms_grant_op_index(const char *name)
{
    for (int i = 0; i < KMS_N_GRANT_OPS; i++)
        if (!strcmp(KMS_GRANT_OPS[i], name))
            return i;
    return -1;
}

char *kms_default_policy_text(const char *account)
{
    char *s;
    return asprintf(&s, "{\"Version\":\"2012-10-17\",\"Id\":\"key-default-1\",\"Statement\":[{\"Sid\":\"Enable IAM User "
                       "Permissions\",\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::%s:root\"},"
                       "\"Action\":\"kms:*\",\"Resource\":\"*\"}]}",
                    account) < 0 ? NULL : s;
}

const char *kms_caller_account(const kms_core *c, const kms_principal *p)
{
    return p && p->account ? p->account : c->account;
}

/* Joined by hand: this runs on every call. */
static void join(char *buf, size_t cap, const char *const *parts, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && cap; i++) {
        size_t l = strlen(parts[i]);
        if (l > cap - 1 - o)
            l = cap - 1 - o;
        memcpy(buf + o, parts[i], l);
        o += l;
    }
    if (cap)
        buf[o] = 0;
}

void kms_caller_arn(const kms_core *c, const kms_principal *p, char *buf, size_t cap)
{
    const char *user = p ? p->user : NULL;
    if (!user || !strcmp(user, "root"))
        join(buf, cap, (const char *const[]){"arn:aws:iam::", kms_caller_account(c, p), ":root"}, 3);
    else
        join(buf, cap, (const char *const[]){"arn:aws:iam::", kms_caller_account(c, p), ":user/", user}, 4);
}

int kms_principal_split(const char *arn, char account[13], char *user, size_t user_cap)
{
    const char *rest;
    if (strncmp(arn, "arn:aws:iam::", 13) || strlen(arn) < 27 || strspn(arn + 13, "0123456789") != 12 ||
        arn[25] != ':')
        return -1;
    rest = arn + 26;
    if (strcmp(rest, "root")) {
        if (strncmp(rest, "user/", 5) || !rest[5])
            return -1;
        rest += 5;
        if (strspn(rest, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+=,.@_-") != strlen(rest))
            return -1;
    }
    if (strlen(rest) >= user_cap)
        return -1;
    memcpy(account, arn + 13, 12);
    account[12] = 0;
    memcpy(user, rest, strlen(rest) + 1);
    return 0;
}

void kms_key_arn_of(const kms_core *c, const kms_key *k, char *buf, size_t cap)
{
    join(buf, cap, (const char *const[]){"arn:aws:kms:", c->region, ":", k->owner, ":key/", k->id}, 6);
}

const kms_policy *kms_key_policy(kms_key *k)
{
    if (!k->policy) {
        char *def = k->policy_text ? NULL : kms_default_policy_text(k->owner);
        const char *text = k->policy_text ? k->policy_text : def;
        if (text && kms_policy_parse(text, strlen(text), &k->policy, NULL))
            k->policy = NULL;
        free(def);
    }
    return k->policy;
}

void kms_key_set_policy(kms_key *k, char *text, kms_policy *compiled)
{
    kms_policy_free(k->policy);
    free(k->policy_text);
    k->policy_text = text;
    k->policy = compiled;
}

/* In a grant constraint the key of a pair is case-insensitive, its value case-sensitive (AWS's rule). */
static bool ctx_has(const kms_ectx *ectx, const char *key, const char *value)
{
    for (size_t i = 0; ectx && i < ectx->n; i++)
        if (!strcasecmp(ectx->pairs[i].key, key) && !strcmp(ectx->pairs[i].value, value))
            return true;
    return false;
}

/* The operations a grant's constraint applies to: those that take an encryption context. AWS applies
 * none to the others (DescribeKey, RetireGrant, GetPublicKey, Sign, Verify, the MAC operations); we do
 * the same. (AWS also skips the constraint for asymmetric keys' Encrypt and Decrypt, which take no
 * context; here the constraint still applies, so such a grant allows nothing there: stricter, not looser.) */
static bool takes_context(const char *action)
{
    static const char *const OPS[] = {"Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
                                      "ReEncryptFrom", "ReEncryptTo", "GenerateDataKeyPair",
                                      "GenerateDataKeyPairWithoutPlaintext"};
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
        if (!strcmp(OPS[i], action))
            return true;
    return false;
}

bool kms_grant_admits(const kms_grant *g, const kms_ectx *ectx)
{
    if (g->constraint == KMS_GC_NONE)
        return true;
    if (g->constraint == KMS_GC_EQUALS && (ectx ? ectx->n : 0) != g->n_pairs)
        return false;
    for (size_t i = 0; i < g->n_pairs; i++)
        if (!ctx_has(ectx, g->pairs[i].key, g->pairs[i].value))
            return false;
    return true;
}

/* A grant made under the authority of `parent` may not allow more than it: its operations are a subset
 * and its constraint at least as strict. */
static bool within(const kms_grant *parent, const kms_grant *child)
{
    kms_ectx cc = {child->pairs, child->n_pairs};
    if ((child->ops & ~parent->ops) != 0)
        return false;
    if (parent->constraint == KMS_GC_NONE)
        return true;
    if (child->constraint == KMS_GC_NONE)
        return false;
    if (parent->constraint == KMS_GC_EQUALS)
        return child->constraint == KMS_GC_EQUALS && kms_grant_admits(parent, &cc);
    return kms_grant_admits(parent, &cc); /* parent Subset: the child's pairs include the parent's */
}

static bool grant_allows(const kms_key *k, const char *arn, const char *account, const kms_access_req *r)
{
    int op = kms_grant_op_index(r->action);
    if (op < 0)
        return false;
    for (size_t i = 0; i < k->n_grants; i++) {
        const kms_grant *g = &k->grants[i];
        if (!(g->ops & (1u << op)) || !kms_principal_matches(g->grantee, arn, account))
            continue;
        if (r->new_grant ? within(g, r->new_grant) : !takes_context(r->action) || kms_grant_admits(g, r->ectx)) {
            if (r->grant_used)
                snprintf(r->grant_used, KMS_GRANT_ID_BUF, "%s", g->id);
            return true;
        }
    }
    return false;
}

static void fill_req(kms_core *c, const kms_principal *p, const kms_key *k, const kms_access_req *r,
                     kms_policy_req *pr, char *arn, size_t arn_cap, char *key_arn, size_t key_cap)
{
    kms_caller_arn(c, p, arn, arn_cap);
    kms_key_arn_of(c, k, key_arn, key_cap);
    memset(pr, 0, sizeof *pr);
    pr->action = r->action;
    pr->resource = key_arn;
    pr->principal_arn = arn;
    pr->account = kms_caller_account(c, p);
    pr->ectx = r->ectx;
    pr->via_service = p ? p->via_service : NULL;
    pr->grant_ops = r->grant_ops;
    pr->n_grant_ops = r->n_grant_ops;
    pr->grant_for_aws = !strcmp(r->action, "CreateGrant") || !strcmp(r->action, "ListGrants") ||
                                !strcmp(r->action, "RevokeGrant")
                            ? (p && p->via_service ? 1 : 0)
                            : -1;
    pr->request_alias = r->alias;
    pr->source_ip = p ? p->source_ip : NULL;
}

kms_err kms_access_check(kms_core *c, const kms_principal *p, kms_key *k, const kms_access_req *r, char **msg)
{
    char arn[160], key_arn[160];
    kms_policy_req pr;
    const kms_policy *pol = kms_key_policy(k);
    kms_policy_decision d;
    fill_req(c, p, k, r, &pr, arn, sizeof arn, key_arn, sizeof key_arn);
    /* A policy that cannot be compiled (out of memory, a damaged store) denies everything: its Deny
     * statements cannot be weighed, so neither can the grants. */
    d = pol ? kms_policy_eval(pol, &pr) : KMS_POLICY_DENY;
    if (d == KMS_POLICY_ALLOW || (d == KMS_POLICY_NO_MATCH && !r->policy_only && grant_allows(k, arn, pr.account, r)))
        return KMS_OK;
    if (d == KMS_POLICY_DENY)
        kms_set_msg(msg, "User: %s is not authorized to perform: kms:%s on resource: %s with an explicit deny in a "
                         "resource-based policy", arn, r->action, key_arn);
    else
        kms_set_msg(msg, "User: %s is not authorized to perform: kms:%s on resource: %s because no resource-based "
                         "policy allows the kms:%s action", arn, r->action, key_arn, r->action);
    return KMS_ERR_ACCESS_DENIED;
}

bool kms_access_policy_allows_put(kms_core *c, const kms_principal *p, const kms_key *k, const kms_policy *policy)
{
    char arn[160], key_arn[160];
    kms_policy_req pr;
    kms_access_req r = {.action = "PutKeyPolicy"};
    fill_req(c, p, k, &r, &pr, arn, sizeof arn, key_arn, sizeof key_arn);
    return kms_policy_eval(policy, &pr) == KMS_POLICY_ALLOW;
}
