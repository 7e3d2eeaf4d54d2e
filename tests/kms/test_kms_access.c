/*
 * test_kms_access.c — key policies and grants through the core's single dispatch point: the allow/deny
 * table tests/kms/access_cases.json (also run through the HTTP server with boto3 by
 * tests/server/server_access.py), then the key-policy operations' errors (malformed, too large, lockout:
 * the old policy stays in force), the grant lifecycle (idempotent names, listing, retiring by token and by
 * id, revoking, GrantTokens), cross-account ownership, and the additive migration of an older store.
 * Usage: test_kms_access CASES.json
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>

#include "envelopefs/kms.h"
#include "testutil.h"
#include "kmstest.h"

#define ACCT_A "111122223333"
#define ACCT_B "444455556666"

static char g_dir[256], g_store[300], g_keyfile[320];

static kms_core *open_store(void)
{
    kms_core *c = kmstest_open(g_store, g_keyfile);
    return c;
}

/* "ACCOUNT:user" → principal (user "root": the account root). Source 127.0.0.1, as over the server. */
static kms_principal who(const char *spec, char *acct, char *user)
{
    const char *colon = strchr(spec, ':');
    kms_principal p = {.account = acct, .user = user, .source = "test", .source_ip = "127.0.0.1"};
    CHECK(colon != NULL);
    snprintf(acct, 13, "%s", spec[0] == 'A' ? ACCT_A : spec[0] == 'B' ? ACCT_B : spec);
    snprintf(user, 64, "%s", colon + 1);
    return p;
}

/* One call; *out gets the parsed response, *msg (if msg) the error message. */
static kms_err call(kms_core *c, const kms_principal *p, const char *op, json_t *body, json_t **out, char **msg)
{
    char *req = json_dumps(body, JSON_COMPACT), *resp = NULL, *m = NULL;
    size_t len = 0;
    kms_err e = kms_core_call(c, p, op, req, strlen(req), &resp, &len, &m);
    if (out)
        *out = e ? NULL : json_loadb(resp, len, 0, NULL);
    if (e && getenv("TEST_VERBOSE"))
        fprintf(stderr, "  %s -> %s: %s\n", op, kms_err_name(e), m ? m : "");
    kms_response_free(resp, len);
    if (msg)
        *msg = m;
    else
        free(m);
    free(req);
    return e;
}

static kms_err callf(kms_core *c, const kms_principal *p, const char *op, json_t **out, char **msg,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static kms_err callf(kms_core *c, const kms_principal *p, const char *op, json_t **out, char **msg,
                     const char *fmt, ...)
{
    char buf[65536];
    va_list ap;
    json_t *body;
    kms_err e;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    body = json_loads(buf, 0, NULL);
    if (!body)
        fprintf(stderr, "bad test JSON: %s\n", buf);
    CHECK(body != NULL);
    e = call(c, p, op, body, out, msg);
    json_decref(body);
    return e;
}

/* ---- the table ------------------------------------------------------------------------------ */

struct subst {
    const char *from, *to;
};

static char *replace_all(const char *s, const struct subst *subs, size_t n)
{
    char *cur = strdup(s);
    for (size_t i = 0; i < n; i++) {
        char *p;
        while (subs[i].to && (p = strstr(cur, subs[i].from))) {
            size_t a = (size_t)(p - cur), fl = strlen(subs[i].from), tl = strlen(subs[i].to);
            char *next = malloc(strlen(cur) - fl + tl + 1);
            memcpy(next, cur, a);
            memcpy(next + a, subs[i].to, tl);
            strcpy(next + a + tl, p + fl);
            free(cur);
            cur = next;
        }
    }
    return cur;
}

/* A deep copy of j with the placeholders replaced in every string. */
static json_t *substitute(json_t *j, const struct subst *subs, size_t n)
{
    if (json_is_string(j)) {
        char *s = replace_all(json_string_value(j), subs, n);
        json_t *r = json_string(s);
        free(s);
        return r;
    }
    if (json_is_array(j)) {
        json_t *a = json_array(), *v;
        size_t i;
        json_array_foreach(j, i, v)
            json_array_append_new(a, substitute(v, subs, n));
        return a;
    }
    if (json_is_object(j)) {
        json_t *o = json_object(), *v;
        const char *k;
        json_object_foreach(j, k, v) {
            char *nk = replace_all(k, subs, n);
            json_object_set_new(o, nk, substitute(v, subs, n));
            free(nk);
        }
        return o;
    }
    return json_deep_copy(j);
}

static int run_case(kms_core *c, json_t *cs, size_t idx)
{
    char aa[13], au[64], ca[13], cu[64], *msg = NULL;
    kms_principal owner = who("A:root", aa, au), caller;
    const char *name = json_string_value(json_object_get(cs, "name"));
    const char *expect = json_string_value(json_object_get(cs, "expect"));
    const char *op = json_string_value(json_object_get(cs, "op"));
    json_t *r, *v, *req;
    char key_id[64], key_arn[160], *blob = NULL;
    /* $BLOB before $B; $BLOB is replaced once the ciphertext exists */
    struct subst subs[4] = {{"$BLOB", NULL}, {"$KEY", key_arn}, {"$A", ACCT_A}, {"$B", ACCT_B}};
    size_t i;
    kms_err e;
    int ok;

    CHECK(name && expect && op);
    caller = who(json_string_value(json_object_get(cs, "caller")), ca, cu);
    {
        json_t *ck = json_deep_copy(json_object_get(cs, "create")); /* e.g. an asymmetric KeySpec */
        if (!ck)
            ck = json_object();
        json_object_set_new(ck, "Description", json_string("case"));
        CHECK(call(c, &owner, "CreateKey", ck, &r, NULL) == KMS_OK);
        json_decref(ck);
    }
    snprintf(key_id, sizeof key_id, "%s", json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "KeyId")));
    snprintf(key_arn, sizeof key_arn, "%s", json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "Arn")));
    json_decref(r);
    if ((v = json_object_get(cs, "alias")))
        CHECK(callf(c, &owner, "CreateAlias", NULL, NULL, "{\"AliasName\":\"%s\",\"TargetKeyId\":\"%s\"}",
                    json_string_value(v), key_id) == KMS_OK);
    json_array_foreach(json_object_get(cs, "grants"), i, v) {
        json_t *g = substitute(v, subs, 4);
        json_object_set_new(g, "KeyId", json_string(key_arn));
        CHECK(call(c, &owner, "CreateGrant", g, NULL, NULL) == KMS_OK);
        json_decref(g);
    }
    if (!json_object_get(cs, "create")) { /* a symmetric key: $BLOB, a ciphertext under it */
        json_t *enc = json_pack("{s:s, s:s}", "KeyId", key_arn, "Plaintext", "aGVsbG8=");
        if ((v = json_object_get(cs, "blob_context")))
            json_object_set(enc, "EncryptionContext", v);
        CHECK(call(c, &owner, "Encrypt", enc, &r, NULL) == KMS_OK);
        blob = strdup(json_string_value(json_object_get(r, "CiphertextBlob")));
        subs[0].to = blob;
        json_decref(r);
        json_decref(enc);
    }
    if ((v = json_object_get(cs, "policy"))) {
        json_t *p = substitute(v, subs, 4);
        char *text = json_dumps(p, JSON_COMPACT);
        json_t *put = json_pack("{s:s, s:s, s:b}", "KeyId", key_id, "Policy", text, "BypassPolicyLockoutSafetyCheck", 1);
        CHECK(call(c, &owner, "PutKeyPolicy", put, NULL, NULL) == KMS_OK);
        json_decref(put);
        free(text);
        json_decref(p);
    }
    req = substitute(json_object_get(cs, "request"), subs, 4);
    e = call(c, &caller, op, req, NULL, &msg);
    json_decref(req);
    ok = !strcmp(expect, "allow") ? e == KMS_OK : (e != KMS_OK && !strcmp(kms_err_name(e), expect));
    if (!ok)
        fprintf(stderr, "case %zu \"%s\": %s as %s: expected %s, got %s (%s)\n", idx, name, op,
                json_string_value(json_object_get(cs, "caller")), expect, e ? kms_err_name(e) : "allow",
                msg ? msg : "");
    /* A denial names the principal, the action and the key, as AWS does. */
    if (e == KMS_ERR_ACCESS_DENIED && strcmp(op, "ReEncrypt")) {
        char want[400];
        snprintf(want, sizeof want, "User: arn:aws:iam::%s:%s%s is not authorized to perform: kms:%s on resource: %s", ca,
                 strcmp(cu, "root") ? "user/" : "", cu, op, key_arn);
        if (!msg || strncmp(msg, want, strlen(want))) {
            fprintf(stderr, "case %zu: message \"%s\" does not start \"%s\"\n", idx, msg ? msg : "", want);
            ok = 0;
        }
    }
    free(msg);
    free(blob);
    return ok;
}

static void test_table(const char *path)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr), *cs;
    kms_core *c = open_store();
    size_t i, failed = 0, allowed = 0;
    if (!doc)
        fprintf(stderr, "%s: %s\n", path, jerr.text);
    CHECK(doc != NULL);
    CHECK(json_array_size(json_object_get(doc, "cases")) >= 40);
    json_array_foreach(json_object_get(doc, "cases"), i, cs) {
        failed += !run_case(c, cs, i);
        allowed += !strcmp(json_string_value(json_object_get(cs, "expect")), "allow");
    }
    printf("access table: %zu cases (%zu allowed, %zu denied), %zu failed\n", i, allowed, i - allowed, failed);
    CHECK_EQ_INT(failed, 0);
    CHECK(allowed >= 20 && i - allowed >= 20);
    json_decref(doc);
    kms_core_free(c);
}

/* ---- key policy operations ------------------------------------------------------------------ */

static char *policy_of(kms_core *c, const kms_principal *p, const char *key)
{
    json_t *r;
    char *s;
    CHECK(callf(c, p, "GetKeyPolicy", &r, NULL, "{\"KeyId\":\"%s\",\"PolicyName\":\"default\"}", key) == KMS_OK);
    CHECK(!strcmp(json_string_value(json_object_get(r, "PolicyName")), "default"));
    s = strdup(json_string_value(json_object_get(r, "Policy")));
    json_decref(r);
    return s;
}

static void test_policy_ops(void)
{
    kms_core *c = open_store();
    char aa[13], au[64], ba[13], bu[64], *msg = NULL, *before, *after, key[64], big[40000];
    kms_principal root = who("A:root", aa, au), bob = who("B:bob", ba, bu);
    json_t *r;
    /* a JSON string holding a policy */
    const char *bob_policy =
        "\"{\\\"Version\\\":\\\"2012-10-17\\\",\\\"Statement\\\":[{\\\"Effect\\\":\\\"Allow\\\",\\\"Principal\\\":{"
        "\\\"AWS\\\":\\\"arn:aws:iam::444455556666:user/bob\\\"},\\\"Action\\\":\\\"kms:*\\\",\\\"Resource\\\":\\\"*\\\"}]}\"";
    static const struct {
        const char *policy; /* JSON string literal */
        const char *error;
        const char *names;  /* the message names this */
    } bad[] = {
        {"\"{not json\"", "MalformedPolicyDocumentException", "not valid JSON"},
        {"\"[]\"", "MalformedPolicyDocumentException", "JSON object"},
        {"\"{\\\"Statement\\\":[{\\\"Effect\\\":\\\"Allow\\\",\\\"Principal\\\":\\\"*\\\",\\\"Action\\\":\\\"kms:*\\\","
         "\\\"Resource\\\":\\\"*\\\",\\\"Bogus\\\":1}]}\"", "MalformedPolicyDocumentException", "Bogus"},
        {"\"{\\\"Statement\\\":[],\\\"Extra\\\":1}\"", "MalformedPolicyDocumentException", "Extra"},
        {"\"{\\\"Statement\\\":[{\\\"Effect\\\":\\\"Maybe\\\",\\\"Principal\\\":\\\"*\\\",\\\"Action\\\":\\\"kms:*\\\","
         "\\\"Resource\\\":\\\"*\\\"}]}\"", "MalformedPolicyDocumentException", "Effect"},
        {"\"{\\\"Statement\\\":[{\\\"Effect\\\":\\\"Allow\\\",\\\"Principal\\\":\\\"*\\\",\\\"Action\\\":7,"
         "\\\"Resource\\\":\\\"*\\\"}]}\"", "MalformedPolicyDocumentException", "Action"},
        {"\"{\\\"Statement\\\":[{\\\"Effect\\\":\\\"Allow\\\",\\\"Principal\\\":\\\"*\\\",\\\"Action\\\":\\\"kms:*\\\","
         "\\\"Resource\\\":\\\"*\\\",\\\"Condition\\\":{\\\"NumericLessThan\\\":{\\\"kms:CallerAccount\\\":\\\"1\\\"}}}]}\"",
         "MalformedPolicyDocumentException", "NumericLessThan"},
        {"\"{\\\"Statement\\\":[{\\\"Effect\\\":\\\"Allow\\\",\\\"Principal\\\":\\\"*\\\",\\\"Action\\\":\\\"kms:*\\\","
         "\\\"Resource\\\":\\\"*\\\",\\\"Condition\\\":{\\\"StringEquals\\\":{\\\"aws:SecureTransport\\\":\\\"1\\\"}}}]}\"",
         "MalformedPolicyDocumentException", "aws:SecureTransport"},
        {"\"{\\\"Statement\\\":[{\\\"Effect\\\":\\\"Allow\\\",\\\"Principal\\\":{\\\"Service\\\":\\\"ec2.amazonaws.com\\\"},"
         "\\\"Action\\\":\\\"kms:*\\\",\\\"Resource\\\":\\\"*\\\"}]}\"", "MalformedPolicyDocumentException", "Service"},
        {"\"{\\\"Statement\\\":[{\\\"Effect\\\":\\\"Allow\\\",\\\"Principal\\\":\\\"*\\\",\\\"Action\\\":\\\"s3:GetObject\\\","
         "\\\"Resource\\\":\\\"*\\\"}]}\"", "MalformedPolicyDocumentException", "s3:GetObject"},
        {"\"{\\\"Statement\\\":[{\\\"Effect\\\":\\\"Allow\\\",\\\"Principal\\\":\\\"*\\\",\\\"Action\\\":\\\"kms:Frobnicate\\\","
         "\\\"Resource\\\":\\\"*\\\"}]}\"", "MalformedPolicyDocumentException", "frobnicate"},
        /* locks its caller (A's root) out of PutKeyPolicy */
        {NULL, "MalformedPolicyDocumentException", "will not allow you to update the key policy"},
        {"\"\"", "ValidationException", "policy"},
    };

    CHECK(callf(c, &root, "CreateKey", &r, NULL, "{}") == KMS_OK);
    snprintf(key, sizeof key, "%s", json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "KeyId")));
    json_decref(r);
    /* the default policy: the owning account's root may do everything */
    before = policy_of(c, &root, key);
    CHECK(strstr(before, "\"arn:aws:iam::111122223333:root\"") && strstr(before, "\"kms:*\""));
    CHECK(callf(c, &root, "ListKeyPolicies", &r, NULL, "{\"KeyId\":\"%s\"}", key) == KMS_OK);
    CHECK(json_array_size(json_object_get(r, "PolicyNames")) == 1 &&
          !strcmp(json_string_value(json_array_get(json_object_get(r, "PolicyNames"), 0)), "default"));
    json_decref(r);
    CHECK(callf(c, &root, "GetKeyPolicy", NULL, NULL, "{\"KeyId\":\"%s\",\"PolicyName\":\"other\"}", key) ==
          KMS_ERR_NOT_FOUND);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kms_err e = callf(c, &root, "PutKeyPolicy", NULL, &msg, "{\"KeyId\":\"%s\",\"Policy\":%s}", key,
                          bad[i].policy ? bad[i].policy : bob_policy);
        if (e == KMS_OK || strcmp(kms_err_name(e), bad[i].error) || !msg || !strstr(msg, bad[i].names))
            fprintf(stderr, "bad policy %zu: %s (%s)\n", i, kms_err_name(e), msg ? msg : "");
        CHECK(e != KMS_OK && !strcmp(kms_err_name(e), bad[i].error) && msg && strstr(msg, bad[i].names));
        free(msg);
        msg = NULL;
        /* refused at CreateKey too, and no key is made */
        if (bad[i].policy) {
            CHECK(callf(c, &root, "CreateKey", NULL, NULL, "{\"Policy\":%s}", bad[i].policy) == kms_err_from_name(bad[i].error));
        }
        after = policy_of(c, &root, key);
        CHECK(!strcmp(before, after)); /* the old policy stays in force */
        free(after);
    }
    /* 33 KiB: LimitExceededException (the quota is 32 KiB); the old policy stays */
    {
        size_t o = (size_t)snprintf(big, sizeof big, "{\"KeyId\":\"%s\",\"Policy\":\"{\\\"Id\\\":\\\"", key);
        memset(big + o, 'x', 33 * 1024);
        o += 33 * 1024;
        snprintf(big + o, sizeof big - o, "\\\",\\\"Statement\\\":{\\\"Effect\\\":\\\"Allow\\\",\\\"Principal\\\":\\\"*\\\","
                                          "\\\"Action\\\":\\\"kms:*\\\",\\\"Resource\\\":\\\"*\\\"}}\"}");
        CHECK(callf(c, &root, "PutKeyPolicy", NULL, NULL, "%s", big) == KMS_ERR_LIMIT_EXCEEDED);
        after = policy_of(c, &root, key);
        CHECK(!strcmp(before, after));
        free(after);
    }
    /* bob may not use the key yet */
    {
        char body[200];
        snprintf(body, sizeof body, "{\"KeyId\":\"arn:aws:kms:us-east-1:%s:key/%s\"}", ACCT_A, key);
        CHECK(callf(c, &bob, "DescribeKey", NULL, NULL, "%s", body) == KMS_ERR_ACCESS_DENIED);
        /* the lockout check is bypassed on request: bob's policy, and A's root is locked out */
        CHECK(callf(c, &root, "PutKeyPolicy", NULL, NULL,
                    "{\"KeyId\":\"%s\",\"Policy\":%s,\"BypassPolicyLockoutSafetyCheck\":true}", key, bob_policy) == KMS_OK);
        CHECK(callf(c, &bob, "DescribeKey", NULL, NULL, "%s", body) == KMS_OK);
        CHECK(callf(c, &root, "DescribeKey", NULL, NULL, "{\"KeyId\":\"%s\"}", key) == KMS_ERR_ACCESS_DENIED);
        CHECK(callf(c, &root, "GetKeyPolicy", NULL, NULL, "{\"KeyId\":\"%s\"}", key) == KMS_ERR_ACCESS_DENIED);
        /* bob's PutKeyPolicy: a malformed one leaves his in force */
        CHECK(callf(c, &bob, "PutKeyPolicy", NULL, NULL,
                    "{\"KeyId\":\"arn:aws:kms:us-east-1:%s:key/%s\",\"Policy\":\"{}\"}", ACCT_A, key) ==
              KMS_ERR_MALFORMED_POLICY);
        CHECK(callf(c, &bob, "DescribeKey", NULL, NULL, "%s", body) == KMS_OK);
    }
    /* the policy survives a reopen (it is in the store) */
    kms_core_free(c);
    c = open_store();
    CHECK(callf(c, &root, "DescribeKey", NULL, NULL, "{\"KeyId\":\"%s\"}", key) == KMS_ERR_ACCESS_DENIED);
    CHECK(callf(c, &bob, "DescribeKey", NULL, NULL, "{\"KeyId\":\"arn:aws:kms:us-east-1:%s:key/%s\"}", ACCT_A, key) ==
          KMS_OK);
    /* CreateKey with a policy: kept, and checked for lockout */
    CHECK(callf(c, &root, "CreateKey", NULL, &msg, "{\"Policy\":%s}", bob_policy) == KMS_ERR_MALFORMED_POLICY);
    CHECK(msg && strstr(msg, "will not allow you"));
    free(msg);
    msg = NULL;
    CHECK(callf(c, &root, "CreateKey", &r, NULL, "{\"Policy\":%s,\"BypassPolicyLockoutSafetyCheck\":true}", bob_policy) ==
          KMS_OK);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "AWSAccountId")), ACCT_A));
    CHECK(callf(c, &bob, "GetKeyPolicy", NULL, NULL, "{\"KeyId\":\"%s\"}",
                json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "Arn"))) == KMS_OK);
    json_decref(r);
    free(before);
    kms_core_free(c);
}

/* ---- accounts ------------------------------------------------------------------------------- */

static void test_accounts(void)
{
    kms_core *c = open_store();
    {   /* access keys: a 12-digit account, a user name of IAM's characters (it becomes the principal ARN) */
        char *akid = NULL, *secret = NULL;
        CHECK(kms_core_create_access_key(c, ACCT_B, "user/evil", &akid, &secret) == KMS_ERR_VALIDATION);
        CHECK(kms_core_create_access_key(c, ACCT_B, "a:b", &akid, &secret) == KMS_ERR_VALIDATION);
        CHECK(kms_core_create_access_key(c, "1234", "bob", &akid, &secret) == KMS_ERR_VALIDATION);
        CHECK(kms_core_create_access_key(c, ACCT_B, "bob.smith@example", &akid, &secret) == KMS_OK);
        free(akid);
        kms_secret_str_free(secret);
    }
    char ba[13], bu[64], aa[13], au[64], arn[160], id[64];
    kms_principal bob = who("B:bob", ba, bu), alice = who("A:alice", aa, au);
    json_t *r;
    /* B's key is B's: its ARN carries B, A's principals do not see it by id or in lists */
    CHECK(callf(c, &bob, "CreateKey", &r, NULL, "{}") == KMS_OK);
    snprintf(arn, sizeof arn, "%s", json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "Arn")));
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "KeyId")));
    CHECK(!strncmp(arn, "arn:aws:kms:us-east-1:" ACCT_B ":key/", 35));
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "AWSAccountId")), ACCT_B));
    json_decref(r);
    CHECK(callf(c, &bob, "DescribeKey", NULL, NULL, "{\"KeyId\":\"%s\"}", id) == KMS_OK);
    CHECK(callf(c, &alice, "DescribeKey", NULL, NULL, "{\"KeyId\":\"%s\"}", id) == KMS_ERR_NOT_FOUND);
    CHECK(callf(c, &alice, "DescribeKey", NULL, NULL, "{\"KeyId\":\"%s\"}", arn) == KMS_ERR_ACCESS_DENIED);
    CHECK(callf(c, &bob, "CreateAlias", NULL, NULL, "{\"AliasName\":\"alias/bobs\",\"TargetKeyId\":\"%s\"}", id) == KMS_OK);
    CHECK(callf(c, &alice, "DescribeKey", NULL, NULL, "{\"KeyId\":\"alias/bobs\"}") == KMS_ERR_NOT_FOUND);
    CHECK(callf(c, &bob, "DescribeKey", NULL, NULL, "{\"KeyId\":\"alias/bobs\"}") == KMS_OK);
    CHECK(callf(c, &alice, "DeleteAlias", NULL, NULL, "{\"AliasName\":\"alias/bobs\"}") == KMS_ERR_NOT_FOUND);
    CHECK(callf(c, &bob, "ListKeys", &r, NULL, "{}") == KMS_OK);
    CHECK(json_array_size(json_object_get(r, "Keys")) == 1);
    json_decref(r);
    CHECK(callf(c, &bob, "ListAliases", &r, NULL, "{}") == KMS_OK);
    CHECK(json_array_size(json_object_get(r, "Aliases")) == 1);
    json_decref(r);
    CHECK(callf(c, &alice, "ListAliases", &r, NULL, "{}") == KMS_OK);
    for (size_t i = 0; i < json_array_size(json_object_get(r, "Aliases")); i++)
        CHECK(strcmp(json_string_value(json_object_get(json_array_get(json_object_get(r, "Aliases"), i), "AliasName")),
                     "alias/bobs"));
    json_decref(r);
    /* a ciphertext of B's key names it; A may not decrypt it (no leak of validity either) */
    CHECK(callf(c, &bob, "Encrypt", &r, NULL, "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\"}", id) == KMS_OK);
    {
        char *blob = strdup(json_string_value(json_object_get(r, "CiphertextBlob")));
        json_decref(r);
        CHECK(callf(c, &alice, "Decrypt", NULL, NULL, "{\"CiphertextBlob\":\"%s\"}", blob) == KMS_ERR_ACCESS_DENIED);
        /* a wrong context: still AccessDenied, not InvalidCiphertext */
        CHECK(callf(c, &alice, "Decrypt", NULL, NULL, "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"x\":\"y\"}}",
                    blob) == KMS_ERR_ACCESS_DENIED);
        CHECK(callf(c, &bob, "Decrypt", NULL, NULL, "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"x\":\"y\"}}",
                    blob) == KMS_ERR_INVALID_CIPHERTEXT);
        /* a disabled key: DisabledException for its owner, AccessDenied (nothing about its state) for others */
        CHECK(callf(c, &bob, "DisableKey", NULL, NULL, "{\"KeyId\":\"%s\"}", id) == KMS_OK);
        CHECK(callf(c, &bob, "Decrypt", NULL, NULL, "{\"CiphertextBlob\":\"%s\"}", blob) == KMS_ERR_DISABLED);
        CHECK(callf(c, &alice, "Decrypt", NULL, NULL, "{\"CiphertextBlob\":\"%s\"}", blob) == KMS_ERR_ACCESS_DENIED);
        CHECK(callf(c, &alice, "Encrypt", NULL, NULL, "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\"}", arn) ==
              KMS_ERR_ACCESS_DENIED);
        CHECK(callf(c, &bob, "EnableKey", NULL, NULL, "{\"KeyId\":\"%s\"}", id) == KMS_OK);
        free(blob);
    }
    /* an alias names a key of its own account, even when the other account's policy would allow it */
    CHECK(callf(c, &bob, "PutKeyPolicy", NULL, NULL,
                "{\"KeyId\":\"%s\",\"Policy\":\"{\\\"Statement\\\":{\\\"Effect\\\":\\\"Allow\\\",\\\"Principal\\\":"
                "{\\\"AWS\\\":[\\\"" ACCT_A "\\\",\\\"" ACCT_B "\\\"]},\\\"Action\\\":\\\"kms:*\\\",\\\"Resource\\\":\\\"*\\\"}}\"}",
                id) == KMS_OK);
    CHECK(callf(c, &alice, "DescribeKey", NULL, NULL, "{\"KeyId\":\"%s\"}", arn) == KMS_OK);
    CHECK(callf(c, &alice, "CreateAlias", NULL, NULL, "{\"AliasName\":\"alias/alices\",\"TargetKeyId\":\"%s\"}", arn) ==
          KMS_ERR_NOT_FOUND);
    /* UpdateAlias needs the right on the key the alias leaves as well as on the one it moves to */
    {
        char k1[64], k2[64];
        CHECK(callf(c, &alice, "CreateKey", &r, NULL, "{}") == KMS_OK);
        snprintf(k1, sizeof k1, "%s", json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "KeyId")));
        json_decref(r);
        CHECK(callf(c, &alice, "CreateKey", &r, NULL, "{}") == KMS_OK);
        snprintf(k2, sizeof k2, "%s", json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "KeyId")));
        json_decref(r);
        CHECK(callf(c, &alice, "CreateAlias", NULL, NULL, "{\"AliasName\":\"alias/moving\",\"TargetKeyId\":\"%s\"}", k1) ==
              KMS_OK);
        CHECK(callf(c, &alice, "PutKeyPolicy", NULL, NULL,
                    "{\"KeyId\":\"%s\",\"Policy\":\"{\\\"Statement\\\":[{\\\"Effect\\\":\\\"Allow\\\",\\\"Principal\\\":"
                    "{\\\"AWS\\\":\\\"" ACCT_A "\\\"},\\\"Action\\\":\\\"kms:*\\\",\\\"Resource\\\":\\\"*\\\"},{\\\"Effect\\\":"
                    "\\\"Deny\\\",\\\"Principal\\\":\\\"*\\\",\\\"Action\\\":\\\"kms:UpdateAlias\\\",\\\"Resource\\\":\\\"*\\\"}]}\"}",
                    k1) == KMS_OK);
        CHECK(callf(c, &alice, "UpdateAlias", NULL, NULL, "{\"AliasName\":\"alias/moving\",\"TargetKeyId\":\"%s\"}", k2) ==
              KMS_ERR_ACCESS_DENIED);
        CHECK(callf(c, &alice, "DescribeKey", &r, NULL, "{\"KeyId\":\"alias/moving\"}") == KMS_OK);
        CHECK(!strcmp(json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "KeyId")), k1));
        json_decref(r);
    }
    kms_core_free(c);
}

/* ---- grants --------------------------------------------------------------------------------- */

static void test_grants(void)
{
    kms_core *c = open_store();
    char aa[13], au[64], ba[13], bu[64], ca[13], cu[64], arn[160], tokens[600];
    kms_principal root = who("A:root", aa, au), bob = who("B:bob", ba, bu), carol = who("B:carol", ca, cu);
    json_t *r;
    char *g1, *t1, *g2, *t2;
    CHECK(callf(c, &root, "CreateKey", &r, NULL, "{}") == KMS_OK);
    snprintf(arn, sizeof arn, "%s", json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "Arn")));
    json_decref(r);
#define GRANT_BODY                                                                                                     \
    "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"arn:aws:iam::" ACCT_B ":user/bob\",\"RetiringPrincipal\":"             \
    "\"arn:aws:iam::" ACCT_B ":user/carol\",\"Operations\":[\"Encrypt\",\"Decrypt\"],\"Name\":\"vol-1\","           \
    "\"Constraints\":{\"EncryptionContextSubset\":{\"aws:ebs:id\":\"vol-1\"}}}"
    CHECK(callf(c, &root, "CreateGrant", &r, NULL, GRANT_BODY, arn) == KMS_OK);
    g1 = strdup(json_string_value(json_object_get(r, "GrantId")));
    t1 = strdup(json_string_value(json_object_get(r, "GrantToken")));
    CHECK(strlen(g1) == 64);
    json_decref(r);
    /* idempotent by name with the same parameters */
    CHECK(callf(c, &root, "CreateGrant", &r, NULL, GRANT_BODY, arn) == KMS_OK);
    CHECK(!strcmp(json_string_value(json_object_get(r, "GrantId")), g1));
    json_decref(r);
    /* another grant: no name */
    CHECK(callf(c, &root, "CreateGrant", &r, NULL,
                "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ACCT_B "\",\"Operations\":[\"DescribeKey\"]}", arn) == KMS_OK);
    g2 = strdup(json_string_value(json_object_get(r, "GrantId")));
    t2 = strdup(json_string_value(json_object_get(r, "GrantToken")));
    json_decref(r);
    CHECK(callf(c, &root, "ListGrants", &r, NULL, "{\"KeyId\":\"%s\"}", arn) == KMS_OK);
    CHECK(json_array_size(json_object_get(r, "Grants")) == 2);
    {
        json_t *g = json_array_get(json_object_get(r, "Grants"), 0);
        CHECK(!strcmp(json_string_value(json_object_get(g, "GrantId")), g1));
        CHECK(!strcmp(json_string_value(json_object_get(g, "Name")), "vol-1"));
        CHECK(!strcmp(json_string_value(json_object_get(g, "IssuingAccount")), "arn:aws:iam::" ACCT_A ":root"));
        CHECK(!strcmp(json_string_value(json_object_get(json_object_get(json_object_get(g, "Constraints"),
                                                                        "EncryptionContextSubset"), "aws:ebs:id")), "vol-1"));
        CHECK(json_array_size(json_object_get(g, "Operations")) == 2);
    }
    json_decref(r);
    CHECK(callf(c, &root, "ListGrants", &r, NULL, "{\"KeyId\":\"%s\",\"Limit\":1}", arn) == KMS_OK);
    CHECK(json_array_size(json_object_get(r, "Grants")) == 1 && json_is_true(json_object_get(r, "Truncated")));
    json_decref(r);
    /* the grantee uses it, within its constraint; B may not list the key's grants (no policy allows) */
    CHECK(callf(c, &bob, "Encrypt", NULL, NULL, "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\",\"EncryptionContext\":"
                                                "{\"aws:ebs:id\":\"vol-1\"}}", arn) == KMS_OK);
    CHECK(callf(c, &bob, "Encrypt", NULL, NULL, "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\"}", arn) ==
          KMS_ERR_ACCESS_DENIED);
    CHECK(callf(c, &bob, "ListGrants", NULL, NULL, "{\"KeyId\":\"%s\"}", arn) == KMS_ERR_ACCESS_DENIED);
    /* GrantTokens: honoured (known tokens), at most 10, unknown ones refused */
    snprintf(tokens, sizeof tokens, "[\"%s\",\"%s\"]", t1, t2);
    CHECK(callf(c, &bob, "DescribeKey", NULL, NULL, "{\"KeyId\":\"%s\",\"GrantTokens\":%s}", arn, tokens) == KMS_OK);
    CHECK(callf(c, &bob, "DescribeKey", NULL, NULL,
                "{\"KeyId\":\"%s\",\"GrantTokens\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\"]}",
                arn) == KMS_ERR_VALIDATION);
    CHECK(callf(c, &bob, "DescribeKey", NULL, NULL, "{\"KeyId\":\"%s\",\"GrantTokens\":[\"nope\"]}", arn) ==
          KMS_ERR_INVALID_GRANT_TOKEN);
    /* ListRetirableGrants: carol's account's principals may list what carol may retire */
    CHECK(callf(c, &carol, "ListRetirableGrants", &r, NULL, "{\"RetiringPrincipal\":\"arn:aws:iam::" ACCT_B
                                                          ":user/carol\"}") == KMS_OK);
    CHECK(json_array_size(json_object_get(r, "Grants")) == 1);
    json_decref(r);
    CHECK(callf(c, &root, "ListRetirableGrants", NULL, NULL, "{\"RetiringPrincipal\":\"arn:aws:iam::" ACCT_B
                                                          ":user/carol\"}") == KMS_ERR_ACCESS_DENIED);
    /* validation */
    CHECK(callf(c, &root, "CreateGrant", NULL, NULL,
                "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"bob\",\"Operations\":[\"Decrypt\"]}", arn) == KMS_ERR_VALIDATION);
    CHECK(callf(c, &root, "CreateGrant", NULL, NULL,
                "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ACCT_B "\",\"Operations\":[\"Fly\"]}", arn) == KMS_ERR_VALIDATION);
    CHECK(callf(c, &root, "CreateGrant", NULL, NULL,
                "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ACCT_B "\",\"Operations\":[\"DescribeKey\"],"
                "\"Constraints\":{\"EncryptionContextEquals\":{\"a\":\"b\"},"
                "\"EncryptionContextSubset\":{\"a\":\"b\"}}}", arn) == KMS_ERR_VALIDATION); /* not both */
    /* retire: bob (grantee without RetireGrant) may not; carol (retiring principal) may, by token */
    CHECK(callf(c, &bob, "RetireGrant", NULL, NULL, "{\"GrantToken\":\"%s\"}", t1) == KMS_ERR_ACCESS_DENIED);
    CHECK(callf(c, &carol, "RetireGrant", NULL, NULL, "{\"GrantToken\":\"%s\",\"DryRun\":true}", t1) == KMS_ERR_DRY_RUN);
    CHECK(callf(c, &carol, "RetireGrant", NULL, NULL, "{\"GrantToken\":\"%s\",\"DryRun\":\"yes\"}", t1) ==
          KMS_ERR_SERIALIZATION);
    CHECK(callf(c, &carol, "RetireGrant", NULL, NULL, "{\"GrantToken\":\"%s\"}", t1) == KMS_OK); /* still there */
    CHECK(callf(c, &carol, "RetireGrant", NULL, NULL, "{\"GrantToken\":\"%s\"}", t1) == KMS_ERR_INVALID_GRANT_TOKEN);
    /* gone at once: bob's encrypt is refused */
    CHECK(callf(c, &bob, "Encrypt", NULL, NULL, "{\"KeyId\":\"%s\",\"Plaintext\":\"aGk=\",\"EncryptionContext\":"
                                                "{\"aws:ebs:id\":\"vol-1\"}}", arn) == KMS_ERR_ACCESS_DENIED);
    /* retire by key and id: the key policy allows A's root */
    CHECK(callf(c, &root, "RetireGrant", NULL, NULL, "{\"KeyId\":\"%s\",\"GrantId\":\"%s\"}", arn, g2) == KMS_OK);
    CHECK(callf(c, &bob, "DescribeKey", NULL, NULL, "{\"KeyId\":\"%s\"}", arn) == KMS_ERR_ACCESS_DENIED);
    /* revoke */
    CHECK(callf(c, &root, "CreateGrant", &r, NULL,
                "{\"KeyId\":\"%s\",\"GranteePrincipal\":\"" ACCT_B "\",\"Operations\":[\"DescribeKey\"]}", arn) == KMS_OK);
    free(g2);
    g2 = strdup(json_string_value(json_object_get(r, "GrantId")));
    json_decref(r);
    CHECK(callf(c, &bob, "RevokeGrant", NULL, NULL, "{\"KeyId\":\"%s\",\"GrantId\":\"%s\"}", arn, g2) ==
          KMS_ERR_ACCESS_DENIED);
    kms_core_free(c); /* grants persist */
    c = open_store();
    CHECK(callf(c, &bob, "DescribeKey", NULL, NULL, "{\"KeyId\":\"%s\"}", arn) == KMS_OK);
    CHECK(callf(c, &root, "RevokeGrant", NULL, NULL, "{\"KeyId\":\"%s\",\"GrantId\":\"%s\",\"DryRun\":true}", arn, g2) ==
          KMS_ERR_DRY_RUN);
    CHECK(callf(c, &bob, "DescribeKey", NULL, NULL, "{\"KeyId\":\"%s\"}", arn) == KMS_OK);
    CHECK(callf(c, &root, "RevokeGrant", NULL, NULL, "{\"KeyId\":\"%s\",\"GrantId\":\"%s\"}", arn, g2) == KMS_OK);
    CHECK(callf(c, &root, "RevokeGrant", NULL, NULL, "{\"KeyId\":\"%s\",\"GrantId\":\"%s\"}", arn, g2) ==
          KMS_ERR_NOT_FOUND);
    CHECK(callf(c, &root, "RevokeGrant", NULL, NULL, "{\"KeyId\":\"%s\",\"GrantId\":\"short\"}", arn) ==
          KMS_ERR_INVALID_GRANT_ID);
    CHECK(callf(c, &bob, "DescribeKey", NULL, NULL, "{\"KeyId\":\"%s\"}", arn) == KMS_ERR_ACCESS_DENIED);
    CHECK(callf(c, &root, "ListGrants", &r, NULL, "{\"KeyId\":\"%s\"}", arn) == KMS_OK);
    CHECK(json_array_size(json_object_get(r, "Grants")) == 0);
    json_decref(r);
    free(g1);
    free(t1);
    free(g2);
    free(t2);
    kms_core_free(c);
}

/* A store made before key policies (no key_policies/grants tables) gains them at open; its keys are the
 * store account's with the default policy. */
static void test_migration(void)
{
    kms_core *c = open_store();
    char aa[13], au[64], db[320], id[64];
    kms_principal alice = who("A:alice", aa, au);
    json_t *r;
    sqlite3 *s;
    CHECK(callf(c, &alice, "CreateKey", &r, NULL, "{}") == KMS_OK);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "KeyId")));
    json_decref(r);
    kms_core_free(c);
    snprintf(db, sizeof db, "%s/keystore.db", g_store);
    CHECK(sqlite3_open(db, &s) == SQLITE_OK);
    CHECK(sqlite3_exec(s, "DROP TABLE grants; DROP TABLE key_policies; DELETE FROM meta WHERE k='feature.key_policies'",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(s);
    c = open_store();
    CHECK(callf(c, &alice, "DescribeKey", NULL, NULL, "{\"KeyId\":\"%s\"}", id) == KMS_OK);
    CHECK(callf(c, &alice, "GetKeyPolicy", &r, NULL, "{\"KeyId\":\"%s\"}", id) == KMS_OK);
    CHECK(strstr(json_string_value(json_object_get(r, "Policy")), "arn:aws:iam::" ACCT_A ":root"));
    json_decref(r);
    kms_core_free(c);
    CHECK(sqlite3_open(db, &s) == SQLITE_OK);
    {
        sqlite3_stmt *st;
        CHECK(sqlite3_prepare_v2(s, "SELECT v FROM meta WHERE k='feature.key_policies'", -1, &st, NULL) == SQLITE_OK);
        CHECK(sqlite3_step(st) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(st, 0), "1"));
        sqlite3_finalize(st);
    }
    /* a stored policy that no longer parses (a damaged store) denies everything, grants included */
    {
        char sql[300];
        snprintf(sql, sizeof sql,
                 "INSERT OR REPLACE INTO key_policies(key_id, account, policy, updated) VALUES('%s','" ACCT_A "','{bad',0)",
                 id);
        CHECK(sqlite3_exec(s, sql, NULL, NULL, NULL) == SQLITE_OK);
    }
    sqlite3_close(s);
    c = open_store();
    CHECK(callf(c, &alice, "DescribeKey", NULL, NULL, "{\"KeyId\":\"%s\"}", id) == KMS_ERR_ACCESS_DENIED);
    kms_core_free(c);
}

int main(int argc, char **argv)
{
    char tmpl[] = "/tmp/efs-kms-access-XXXXXX", cmd[400];
    CHECK(argc == 2);
    CHECK(sodium_init() >= 0);
    CHECK(mkdtemp(tmpl) != NULL);
    snprintf(g_dir, sizeof g_dir, "%s", tmpl);
    kmstest_init_store(g_dir, g_store, sizeof g_store, g_keyfile, sizeof g_keyfile, ACCT_A);
    test_table(argv[1]);
    test_policy_ops();
    test_accounts();
    test_grants();
    test_migration();
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    CHECK(system(cmd) == 0);
    TEST_DONE();
}
