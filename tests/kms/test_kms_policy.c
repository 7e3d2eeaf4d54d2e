/*
 * test_kms_policy.c — the pure policy module (kms/policy.c) on its own: a table of policies × requests ×
 * expected decisions (the grammar's corners: wildcards, NotPrincipal/NotAction/NotResource, every condition
 * operator with IfExists and the set operators, absent keys, IPv4 and IPv6 blocks), and a table of
 * refused documents, each refusal naming what is wrong. Policies are written with ' for " .
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "testutil.h"

#define A "111122223333"
#define B "444455556666"

static const kms_ectx_pair P_DEPT[] = {{"dept", "eng"}, {"project", "alpha-7"}};
static const kms_ectx EC2 = {P_DEPT, 2}, EC1 = {P_DEPT, 1};
static const char *const OPS_D[] = {"Decrypt"};
static const char *const OPS_DC[] = {"Decrypt", "CreateGrant"};

/* The requests the table refers to by index. */
static const kms_policy_req R[] = {
    /* 0: A's root decrypts, no context, embedded (no address) */
    {.action = "Decrypt", .resource = "arn:aws:kms:us-east-1:" A ":key/k1", .principal_arn = "arn:aws:iam::" A ":root",
     .account = A, .grant_for_aws = -1},
    /* 1: B's bob encrypts with {dept, project} from 127.0.0.1 through alias/app */
    {.action = "Encrypt", .resource = "arn:aws:kms:us-east-1:" A ":key/k1",
     .principal_arn = "arn:aws:iam::" B ":user/bob", .account = B, .ectx = &EC2, .source_ip = "127.0.0.1",
     .request_alias = "alias/app", .grant_for_aws = -1},
    /* 2: B's carol creates a grant for Decrypt from ::1 */
    {.action = "CreateGrant", .resource = "arn:aws:kms:us-east-1:" A ":key/k2",
     .principal_arn = "arn:aws:iam::" B ":user/carol", .account = B, .grant_ops = OPS_D, .n_grant_ops = 1,
     .grant_for_aws = 0, .source_ip = "::1"},
    /* 3: B's carol creates a grant for Decrypt and CreateGrant via EC2, with {dept} */
    {.action = "CreateGrant", .resource = "arn:aws:kms:us-east-1:" A ":key/k2",
     .principal_arn = "arn:aws:iam::" B ":user/carol", .account = B, .grant_ops = OPS_DC, .n_grant_ops = 2,
     .grant_for_aws = 1, .via_service = "ec2.us-east-1.amazonaws.com", .ectx = &EC1, .source_ip = "2001:db8::5"},
    /* 4: A's root encrypts, the action named in lower case (matched through the action table, case-insensitively) */
    {.action = "encrypt", .resource = "arn:aws:kms:us-east-1:" A ":key/k1", .principal_arn = "arn:aws:iam::" A ":root",
     .account = A, .grant_for_aws = -1},
    /* 5: an action the table does not know (matched against the patterns themselves) */
    {.action = "FutureOperation", .resource = "arn:aws:kms:us-east-1:" A ":key/k1",
     .principal_arn = "arn:aws:iam::" A ":root", .account = A, .grant_for_aws = -1},
};

enum { N = KMS_POLICY_NO_MATCH, AL = KMS_POLICY_ALLOW, D = KMS_POLICY_DENY };

#define ST(body) "{'Statement':[" body "]}"
#define ALLOW(principal, action, extra)                                                                        \
    "{'Effect':'Allow','Principal':" principal ",'Action':" action ",'Resource':'*'" extra "}"
#define COND(c) ",'Condition':" c

static const struct {
    const char *policy;
    int req;
    int want;
} CASES[] = {
    {ST(ALLOW("{'AWS':'arn:aws:iam::" A ":root'}", "'kms:*'", "")), 0, AL},
    {ST(ALLOW("{'AWS':'arn:aws:iam::" A ":root'}", "'kms:*'", "")), 1, N},
    {ST(ALLOW("{'AWS':'" B "'}", "'kms:*'", "")), 1, AL},
    {ST(ALLOW("'*'", "'*'", "")), 2, AL},
    {ST(ALLOW("{'AWS':'*'}", "'kms:Encrypt'", "")), 1, AL},
    {ST(ALLOW("{'AWS':['arn:aws:iam::" B ":user/alice','arn:aws:iam::" B ":user/bob']}", "'kms:Encrypt'", "")), 1, AL},
    {ST(ALLOW("{'AWS':'arn:aws:iam::" B ":user/bobby'}", "'kms:Encrypt'", "")), 1, N},
    {ST(ALLOW("{'AWS':'arn:aws:iam::" B ":role/bob'}", "'kms:Encrypt'", "")), 1, N},
    {ST(ALLOW("'*'", "'kms:En*'", "")), 1, AL},
    {ST(ALLOW("'*'", "'kms:?ncrypt'", "")), 1, AL},
    {ST(ALLOW("'*'", "'kms:*crypt'", "")), 0, AL},
    {ST(ALLOW("'*'", "'kms:Encrypt'", "")), 4, AL},
    {ST(ALLOW("'*'", "'kms:*CRYPT'", "")), 4, AL},
    {ST("{'Effect':'Allow','Principal':'*','NotAction':['kms:Encrypt'],'Resource':'*'}"), 4, N},
    {ST(ALLOW("'*'", "'kms:Future*'", "")), 5, AL},
    {ST(ALLOW("'*'", "'kms:Gen*'", "")), 5, N},
    {ST("{'Effect':'Allow','Principal':'*','NotAction':['kms:Gen*'],'Resource':'*'}"), 5, AL},
    {ST(ALLOW("'*'", "'kms:*crypt'", "")), 2, N},
    {ST(ALLOW("'*'", "['kms:describekey','KMS:CREATEGRANT']", "")), 2, AL},
    {ST("{'Effect':'Allow','Principal':'*','NotAction':['kms:Encrypt'],'Resource':'*'}"), 1, N},
    {ST("{'Effect':'Allow','Principal':'*','NotAction':['kms:Encrypt'],'Resource':'*'}"), 0, AL},
    {ST("{'Effect':'Allow','Principal':'*','NotAction':'*','Resource':'*'}"), 0, N},
    {ST("{'Effect':'Allow','Principal':'*','Action':'*','Resource':'arn:aws:kms:us-east-1:" A ":key/k2'}"), 2, AL},
    {ST("{'Effect':'Allow','Principal':'*','Action':'*','Resource':'arn:aws:kms:us-east-1:" A ":key/k2'}"), 0, N},
    {ST("{'Effect':'Allow','Principal':'*','Action':'*','Resource':'arn:aws:kms:*:" A ":key/*'}"), 0, AL},
    {ST("{'Effect':'Allow','Principal':'*','Action':'*','NotResource':'arn:aws:kms:*:*:key/k2'}"), 0, AL},
    {ST("{'Effect':'Allow','Principal':'*','Action':'*','NotResource':'arn:aws:kms:*:*:key/k2'}"), 2, N},
    {ST("{'Effect':'Allow','NotPrincipal':{'AWS':'" A "'},'Action':'*','Resource':'*'}"), 0, N},
    {ST("{'Effect':'Allow','NotPrincipal':{'AWS':'" A "'},'Action':'*','Resource':'*'}"), 1, AL},
    /* deny wins, wherever it is */
    {ST(ALLOW("'*'", "'*'", "") ",{'Effect':'Deny','Principal':'*','Action':'kms:Encrypt','Resource':'*'}"), 1, D},
    {ST("{'Effect':'Deny','Principal':'*','Action':'kms:Encrypt','Resource':'*'}," ALLOW("'*'", "'*'", "")), 1, D},
    {ST("{'Effect':'Deny','Principal':'*','Action':'kms:Encrypt','Resource':'*'}"), 0, N},
    {"{'Statement':" ALLOW("'*'", "'*'", "") "}", 0, AL},
    /* conditions */
    {ST(ALLOW("'*'", "'*'", COND("{'StringEquals':{'kms:EncryptionContext:dept':['ops','eng']}}"))), 1, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEquals':{'kms:EncryptionContext:dept':'ENG'}}"))), 1, N},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEqualsIgnoreCase':{'KMS:ENCRYPTIONCONTEXT:Dept':'ENG'}}"))), 1, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'StringNotEquals':{'kms:EncryptionContext:dept':'eng'}}"))), 1, N},
    {ST(ALLOW("'*'", "'*'", COND("{'StringNotEquals':{'kms:EncryptionContext:dept':'eng'}}"))), 0, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEquals':{'kms:EncryptionContext:dept':'eng'}}"))), 0, N},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEqualsIfExists':{'kms:EncryptionContext:dept':'ops'}}"))), 0, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEqualsIfExists':{'kms:EncryptionContext:dept':'ops'}}"))), 1, N},
    {ST(ALLOW("'*'", "'*'", COND("{'StringLike':{'kms:EncryptionContext:project':'alpha-?'}}"))), 1, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'StringNotLike':{'kms:EncryptionContext:project':'alpha-*'}}"))), 1, N},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEquals':{'kms:EncryptionContext:dept':'eng','kms:CallerAccount':'" A "'}}"))), 1, N},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEquals':{'kms:EncryptionContext:dept':'eng'},'StringLike':{'kms:RequestAlias':'alias/a*'}}"))), 1, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'StringLike':{'kms:RequestAlias':'alias/*'}}"))), 0, N},
    {ST(ALLOW("'*'", "'*'", COND("{'ForAllValues:StringEquals':{'kms:EncryptionContextKeys':['dept','project']}}"))), 1, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'ForAllValues:StringEquals':{'kms:EncryptionContextKeys':['dept']}}"))), 1, N},
    {ST(ALLOW("'*'", "'*'", COND("{'ForAllValues:StringEquals':{'kms:EncryptionContextKeys':['dept']}}"))), 0, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'ForAnyValue:StringEquals':{'kms:EncryptionContextKeys':'project'}}"))), 1, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'ForAnyValue:StringEquals':{'kms:EncryptionContextKeys':'project'}}"))), 0, N},
    {ST(ALLOW("'*'", "'*'", COND("{'ForAnyValue:StringEqualsIfExists':{'kms:EncryptionContextKeys':'x'}}"))), 0, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'ForAllValues:StringNotEquals':{'kms:EncryptionContextKeys':['secret']}}"))), 1, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'ForAnyValue:StringNotEquals':{'kms:EncryptionContextKeys':['dept']}}"))), 1, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'ForAnyValue:StringNotEquals':{'kms:EncryptionContextKeys':['dept','project']}}"))), 1, N},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEquals':{'kms:EncryptionContextKeys':'dept'}}"))), 1, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'StringNotEquals':{'kms:EncryptionContextKeys':'dept'}}"))), 1, N},
    {ST(ALLOW("'*'", "'*'", COND("{'ForAllValues:StringEquals':{'kms:GrantOperations':['Decrypt','Encrypt']}}"))), 2, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'ForAllValues:StringEquals':{'kms:GrantOperations':['Decrypt','Encrypt']}}"))), 3, N},
    {ST(ALLOW("'*'", "'*'", COND("{'Bool':{'kms:GrantIsForAWSResource':true}}"))), 3, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'Bool':{'kms:GrantIsForAWSResource':'true'}}"))), 2, N},
    {ST(ALLOW("'*'", "'*'", COND("{'Bool':{'kms:GrantIsForAWSResource':'false'}}"))), 0, N},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEquals':{'kms:ViaService':'ec2.us-east-1.amazonaws.com'}}"))), 3, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'Null':{'kms:ViaService':'true'}}"))), 2, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'Null':{'kms:ViaService':'true'}}"))), 3, N},
    {ST(ALLOW("'*'", "'*'", COND("{'Null':{'kms:EncryptionContextKeys':false}}"))), 0, N},
    {ST(ALLOW("'*'", "'*'", COND("{'Null':{'kms:EncryptionContext:dept':'false'}}"))), 1, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEquals':{'kms:CallerAccount':[" B "]}}"))), 1, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'ArnLike':{'aws:PrincipalArn':'arn:aws:iam::*:user/c*'}}"))), 2, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'ArnNotEquals':{'aws:PrincipalArn':'arn:aws:iam::" A ":root'}}"))), 0, N},
    {ST(ALLOW("'*'", "'*'", COND("{'IpAddress':{'aws:SourceIp':'127.0.0.1'}}"))), 1, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'IpAddress':{'aws:SourceIp':'127.0.0.0/31'}}"))), 1, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'IpAddress':{'aws:SourceIp':'128.0.0.0/1'}}"))), 1, N},
    {ST(ALLOW("'*'", "'*'", COND("{'IpAddress':{'aws:SourceIp':'127.0.0.0/8'}}"))), 0, N},
    {ST(ALLOW("'*'", "'*'", COND("{'NotIpAddress':{'aws:SourceIp':'127.0.0.0/8'}}"))), 0, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'IpAddress':{'aws:SourceIp':'::1/128'}}"))), 2, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'IpAddress':{'aws:SourceIp':'2001:db8::/33'}}"))), 3, AL},
    {ST(ALLOW("'*'", "'*'", COND("{'IpAddress':{'aws:SourceIp':'2001:db8::/33'}}"))), 2, N},
    {ST(ALLOW("'*'", "'*'", COND("{'IpAddress':{'aws:SourceIp':'0.0.0.0/0'}}"))), 3, N},
};

static const struct {
    const char *policy;
    const char *names;
} BAD[] = {
    {"", "not valid JSON"},
    {"{'Statement':[]}", "Statement"},
    {"{}", "Statement"},
    {"{'Version':'2013-01-01','Statement':" ALLOW("'*'", "'*'", "") "}", "Version"},
    {"{'Id':5,'Statement':" ALLOW("'*'", "'*'", "") "}", "Id"},
    {"{'Statement':" ALLOW("'*'", "'*'", "") ",'Statement':[]}", "not valid JSON"}, /* duplicate key */
    {ST("{'Effect':'Allow','Action':'*','Resource':'*'}"), "Principal"},
    {ST("{'Effect':'Allow','Principal':'*','NotPrincipal':'*','Action':'*','Resource':'*'}"), "Principal"},
    {ST("{'Effect':'Allow','Principal':'*','Resource':'*'}"), "Action"},
    {ST("{'Effect':'Allow','Principal':'*','Action':'*'}"), "Resource"},
    {ST("{'Effect':'allow','Principal':'*','Action':'*','Resource':'*'}"), "Effect"},
    {ST(ALLOW("'someone'", "'*'", "")), "Principal"},
    {ST(ALLOW("{'AWS':'arn:aws:iam::12345:root'}", "'*'", "")), "invalid principal"},
    {ST(ALLOW("{'AWS':'arn:aws:iam::" A ":group/g'}", "'*'", "")), "invalid principal"},
    {ST(ALLOW("{'CanonicalUser':'x'}", "'*'", "")), "CanonicalUser"},
    {ST(ALLOW("{'AWS':[]}", "'*'", "")), "empty"},
    {ST(ALLOW("'*'", "'kms:Decrypt!'", "")), "invalid action"},
    {ST(ALLOW("'*'", "['kms:Decrypt',7]", "")), "Action"}, /* a list cut short (fuzz_policy found its cleanup) */
    {ST(ALLOW("{'AWS':['" A "',{}]}", "'*'", "")), "Principal.AWS"},
    {ST(ALLOW("'*'", "'iam:PassRole'", "")), "iam:PassRole"},
    {ST(ALLOW("'*'", "'kms:NoSuchThing'", "")), "nosuchthing"},
    {ST("{'Effect':'Allow','Principal':'*','Action':'*','Resource':'arn:aws:s3:::b'}"), "arn:aws:s3:::b"},
    {ST(ALLOW("'*'", "'*'", ",'Sid':3")), "Sid"},
    {ST(ALLOW("'*'", "'*'", ",'Resources':'*'")), "Resources"},
    {ST(ALLOW("'*'", "'*'", COND("[]"))), "Condition"},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEquals':{}}"))), "StringEquals"},
    {ST(ALLOW("'*'", "'*'", COND("{'DateGreaterThan':{'aws:CurrentTime':'2020-01-01'}}"))), "DateGreaterThan"},
    {ST(ALLOW("'*'", "'*'", COND("{'ForSomeValues:StringEquals':{'kms:CallerAccount':'1'}}"))), "ForSomeValues"},
    {ST(ALLOW("'*'", "'*'", COND("{'NullIfExists':{'kms:ViaService':'true'}}"))), "NullIfExists"},
    {ST(ALLOW("'*'", "'*'", COND("{'Null':{'kms:ViaService':'maybe'}}"))), "maybe"},
    {ST(ALLOW("'*'", "'*'", COND("{'Bool':{'kms:GrantIsForAWSResource':'yes'}}"))), "yes"},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEquals':{'aws:username':'bob'}}"))), "aws:username"},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEquals':{'kms:EncryptionContext:':'x'}}"))), "empty encryption context key"},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEquals':{'kms:CallerAccount':{'a':1}}}"))), "values"},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEquals':{'kms:CallerAccount':[]}}"))), "empty list"},
    {ST(ALLOW("'*'", "'*'", COND("{'StringEquals':{'aws:PrincipalArn':'${aws:PrincipalArn}'}}"))), "policy variables"},
    {ST(ALLOW("'*'", "'*'", COND("{'IpAddress':{'aws:SourceIp':'300.1.1.1'}}"))), "300.1.1.1"},
    {ST(ALLOW("'*'", "'*'", COND("{'IpAddress':{'aws:SourceIp':'10.0.0.0/33'}}"))), "10.0.0.0/33"},
    {ST(ALLOW("'*'", "'*'", COND("{'IpAddress':{'kms:CallerAccount':'10.0.0.0/8'}}"))), "aws:SourceIp"},
};

static char *dq(const char *s)
{
    char *r = strdup(s);
    for (char *p = r; *p; p++)
        if (*p == '\'')
            *p = '"';
    return r;
}

int main(void)
{
    size_t fails = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char *text = dq(CASES[i].policy), *msg = NULL;
        kms_policy *p = NULL;
        kms_err e = kms_policy_parse(text, strlen(text), &p, &msg);
        int got = e ? -1 : (int)kms_policy_eval(p, &R[CASES[i].req]);
        if (got != CASES[i].want) {
            fprintf(stderr, "case %zu (request %d): %s\n  want %d, got %d (%s)\n", i, CASES[i].req, text,
                    CASES[i].want, got, msg ? msg : "");
            fails++;
        }
        kms_policy_free(p);
        free(msg);
        free(text);
    }
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        char *text = dq(BAD[i].policy), *msg = NULL;
        kms_policy *p = NULL;
        kms_err e = kms_policy_parse(text, strlen(text), &p, &msg);
        if (e != KMS_ERR_MALFORMED_POLICY || p || !msg || !strstr(msg, BAD[i].names)) {
            fprintf(stderr, "bad %zu: %s\n  got %s (%s), want a refusal naming %s\n", i, text, kms_err_name(e),
                    msg ? msg : "", BAD[i].names);
            fails++;
        }
        kms_policy_free(p);
        free(msg);
        free(text);
    }
    { /* the size limit counts bytes: 32768 is parsed, 32769 is LimitExceeded */
        char *big = malloc(KMS_POLICY_MAX_BYTES + 2), *msg = NULL;
        const char *head = "{\"Id\":\"", *tail = "\",\"Statement\":{\"Effect\":\"Allow\",\"Principal\":\"*\","
                                                "\"Action\":\"*\",\"Resource\":\"*\"}}";
        kms_policy *p = NULL;
        size_t fill = KMS_POLICY_MAX_BYTES - strlen(head) - strlen(tail);
        strcpy(big, head);
        memset(big + strlen(head), 'x', fill);
        strcpy(big + strlen(head) + fill, tail);
        CHECK(strlen(big) == KMS_POLICY_MAX_BYTES);
        CHECK(kms_policy_parse(big, strlen(big), &p, &msg) == KMS_OK && p);
        kms_policy_free(p);
        memmove(big + 1, big, KMS_POLICY_MAX_BYTES + 1);
        big[0] = ' ';
        CHECK(kms_policy_parse(big, strlen(big), &p, &msg) == KMS_ERR_LIMIT_EXCEEDED && !p && msg);
        free(msg);
        free(big);
    }
    /* principals */
    CHECK(kms_principal_matches("arn:aws:iam::" B ":root", "arn:aws:iam::" B ":user/x", B));
    CHECK(kms_principal_matches(B, "arn:aws:iam::" B ":user/x", B));
    CHECK(!kms_principal_matches("arn:aws:iam::" B ":user/y", "arn:aws:iam::" B ":user/x", B));
    CHECK(!kms_principal_matches("arn:aws:iam::" A ":root", "arn:aws:iam::" B ":root", B));
    CHECK(!kms_principal_matches("ec2.amazonaws.com", "arn:aws:iam::" B ":root", B));
    printf("policy table: %zu decisions, %zu refusals, %zu failed\n", sizeof CASES / sizeof CASES[0],
           sizeof BAD / sizeof BAD[0], fails);
    CHECK_EQ_INT(fails, 0);
    CHECK(sizeof CASES / sizeof CASES[0] >= 40);
    TEST_DONE();
}
