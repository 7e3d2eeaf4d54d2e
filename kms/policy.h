/*
 * policy.h — KMS key policies: the IAM policy grammar a key policy uses, parsed once into a compiled
 * form and evaluated against one request. Pure: no store, no core, no locks; the compiled policy is
 * immutable and may be evaluated from many threads at once.
 *
 * Grammar (everything else a document holds is refused with MalformedPolicyDocumentException naming
 * it, never ignored):
 *   { "Version": "2012-10-17" | "2008-10-17", "Id": string, "Statement": statement | [statement, ...] }
 *   statement: Sid (string), Effect ("Allow" | "Deny"), exactly one of Principal / NotPrincipal
 *   ("*" or {"AWS": ARN | account id | "*" | [..]}), exactly one of Action / NotAction ("*", "kms:Name",
 *   "kms:Gen*" — names case-insensitive, * and ? wildcards), exactly one of Resource / NotResource
 *   ("*" or KMS key ARN patterns), optional Condition.
 *   Condition operators: StringEquals, StringNotEquals, StringEqualsIgnoreCase,
 *   StringNotEqualsIgnoreCase, StringLike, StringNotLike, ArnEquals, ArnNotEquals, ArnLike, ArnNotLike,
 *   Bool, Null, IpAddress, NotIpAddress; an "IfExists" suffix (not on Null); a "ForAnyValue:" or
 *   "ForAllValues:" prefix. Keys: kms:EncryptionContext:<key>, kms:EncryptionContextKeys,
 *   kms:CallerAccount, kms:ViaService, kms:GrantOperations, kms:GrantIsForAWSResource,
 *   kms:RequestAlias, aws:PrincipalArn, aws:SourceIp (key names case-insensitive, as in IAM).
 *   Policy variables (${...}) are refused.
 *
 * Principals: "arn:aws:iam::ACCOUNT:root" and a bare account id name the whole account (this service
 * has no IAM, so delegating to the account means trusting every principal of it); user ARNs match that
 * user exactly; "*" matches everyone.
 *
 * Evaluation: an explicit Deny wins; otherwise an Allow allows; otherwise no statement applies
 * (KMS_POLICY_NO_MATCH: the caller may still be allowed by a grant, else denied).
 * Condition semantics: several values of one key are ORed; keys of one operator, and operators, are
 * ANDed. A key absent from the request fails a positive operator and satisfies a negated one; with
 * IfExists an absent key satisfies the condition; ForAnyValue over no values is false, ForAllValues over
 * no values true. A multi-valued key (EncryptionContextKeys, GrantOperations) under a plain operator
 * behaves as ForAnyValue for positive operators and as its negation for negated ones.
 */
#ifndef ENVELOPEFS_KMS_POLICY_H
#define ENVELOPEFS_KMS_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "envelopefs/kms_types.h"

#define KMS_POLICY_MAX_BYTES 32768

typedef struct kms_policy kms_policy;

/* What a request offers to the conditions. Every string is borrowed; NULL means absent. */
typedef struct kms_policy_req {
    const char *action;        /* operation's action name without "kms:", e.g. "Decrypt"; required */
    const char *resource;      /* the key's ARN; required */
    const char *principal_arn; /* "arn:aws:iam::ACCOUNT:root" or "...:user/NAME"; required */
    const char *account;       /* the caller's account id; required */
    const kms_ectx *ectx;      /* the request's encryption context, or NULL */
    const char *via_service;   /* kms:ViaService */
    const char *const *grant_ops; /* kms:GrantOperations (CreateGrant), n_grant_ops of them */
    size_t n_grant_ops;
    int grant_for_aws;         /* kms:GrantIsForAWSResource: -1 absent, 0 false, 1 true */
    const char *request_alias; /* kms:RequestAlias: the alias name the request used */
    const char *source_ip;     /* aws:SourceIp: the caller's address (IPv4 or IPv6 text) */
} kms_policy_req;

typedef enum kms_policy_decision {
    KMS_POLICY_NO_MATCH = 0,
    KMS_POLICY_ALLOW,
    KMS_POLICY_DENY,
} kms_policy_decision;

/* Parse and compile a policy document of len bytes. On success *out owns the compiled policy
 * (kms_policy_free). Errors: KMS_ERR_LIMIT_EXCEEDED when len > KMS_POLICY_MAX_BYTES, otherwise
 * KMS_ERR_MALFORMED_POLICY; *msg (if msg non-NULL) then receives a malloc'd message naming the element
 * at fault. */
kms_err kms_policy_parse(const char *text, size_t len, kms_policy **out, char **msg) KMS_WUR;

/* The policy's decision for one request. */
kms_policy_decision kms_policy_eval(const kms_policy *p, const kms_policy_req *r);

void kms_policy_free(kms_policy *p);

/* A principal ARN as the grammar above takes it (user, role or root ARN, or a 12-digit account id):
 * true if well-formed; *account (12 bytes + NUL) receives its account. */
bool kms_principal_parse(const char *s, char account[13]);

/* Whether a caller (principal_arn, account) is named by principal (an ARN or account id as above). */
bool kms_principal_matches(const char *principal, const char *principal_arn, const char *account);

#endif
