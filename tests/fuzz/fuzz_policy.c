/*
 * fuzz_policy.c — kms_policy_parse and kms_policy_eval (kms/policy.c), the parser of key policies callers
 * send (CreateKey, PutKeyPolicy). Invariants: no crash, leak or unbounded work on any input; a refusal
 * always comes with a message (the element at fault) and is MalformedPolicyDocument, or LimitExceeded
 * exactly when the input is over 32 KiB; an accepted policy evaluates every request of a fixed set to a
 * decision, the same decision when the same text is parsed again (the compiled form is all there is).
 */
#include <string.h>

#include "fuzz.h"
#include "policy.h"

static const kms_ectx_pair PAIRS[] = {{"dept", "eng"}, {"aws:ebs:id", "vol-1"}, {"Project", "alpha-1"}};
static const kms_ectx ECTX = {PAIRS, 3}, ONE = {PAIRS, 1};
static const char *const GOPS[] = {"Decrypt", "CreateGrant"};

static const kms_policy_req REQS[] = {
    {.action = "Decrypt", .resource = "arn:aws:kms:us-east-1:111122223333:key/k1",
     .principal_arn = "arn:aws:iam::111122223333:root", .account = "111122223333", .grant_for_aws = -1},
    {.action = "Encrypt", .resource = "arn:aws:kms:us-east-1:111122223333:key/k1",
     .principal_arn = "arn:aws:iam::444455556666:user/bob", .account = "444455556666", .ectx = &ECTX,
     .source_ip = "127.0.0.1", .request_alias = "alias/ok-1", .grant_for_aws = -1},
    {.action = "CreateGrant", .resource = "arn:aws:kms:us-east-1:111122223333:key/k2",
     .principal_arn = "arn:aws:iam::444455556666:user/carol", .account = "444455556666", .ectx = &ONE,
     .grant_ops = GOPS, .n_grant_ops = 2, .grant_for_aws = 0, .source_ip = "::1",
     .via_service = "ec2.us-east-1.amazonaws.com"},
    {.action = "PutKeyPolicy", .resource = "arn:aws:kms:us-east-1:111122223333:key/k1",
     .principal_arn = "arn:aws:iam::111122223333:user/alice", .account = "111122223333", .grant_for_aws = -1,
     .source_ip = "10.1.2.3"},
};
#define NREQ (sizeof REQS / sizeof REQS[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kms_policy *p = NULL, *q = NULL;
    char *msg = NULL;
    kms_err e = kms_policy_parse((const char *)data, size, &p, &msg);
    if (size > KMS_POLICY_MAX_BYTES) {
        FUZZ_CHECK(e == KMS_ERR_LIMIT_EXCEEDED && !p);
    } else if (e) {
        FUZZ_CHECK(e == KMS_ERR_MALFORMED_POLICY || e == KMS_ERR_NOMEM);
        FUZZ_CHECK(!p && (e == KMS_ERR_NOMEM || (msg && *msg)));
    } else {
        kms_policy_decision d[NREQ];
        FUZZ_CHECK(p != NULL);
        for (size_t i = 0; i < NREQ; i++) {
            d[i] = kms_policy_eval(p, &REQS[i]);
            FUZZ_CHECK(d[i] == KMS_POLICY_NO_MATCH || d[i] == KMS_POLICY_ALLOW || d[i] == KMS_POLICY_DENY);
        }
        FUZZ_CHECK(kms_policy_parse((const char *)data, size, &q, NULL) == KMS_OK && q);
        for (size_t i = 0; i < NREQ; i++)
            FUZZ_CHECK(kms_policy_eval(q, &REQS[i]) == d[i]);
    }
    kms_policy_free(p);
    kms_policy_free(q);
    free(msg);
    return 0;
}
