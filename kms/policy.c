/*
 * policy.c — parse a KMS key policy (JSON, jansson) into a compiled form and evaluate it against a
 * request (policy.h has the grammar and the semantics). Parsing happens once per policy text; evaluation
 * touches only the compiled arrays: no JSON, no allocation.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "policy.h"

enum ckey {
    CK_EC, CK_EC_KEYS, CK_CALLER_ACCOUNT, CK_VIA_SERVICE, CK_GRANT_OPS, CK_GRANT_AWS, CK_REQUEST_ALIAS,
    CK_PRINCIPAL_ARN, CK_SOURCE_IP
};
enum cop { OP_EQ, OP_LIKE, OP_BOOL, OP_NULL, OP_IP };
enum cset { SET_NONE, SET_ANY, SET_ALL };

struct ipnet {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int bits;
};

struct cond {
    enum cop op;
    bool neg, icase, if_exists;
    enum cset set;
    enum ckey key;
    char *ec_key;       /* CK_EC: the context key (compared case-insensitively) */
    char **vals;
    size_t n_vals;
    struct ipnet *nets; /* OP_IP: n_vals of them */
};

/* A principal entry: the whole account (arn NULL), one ARN, or anyone (any). */
struct princ {
    bool any;
    char account[13];
    char *arn;
};

struct stmt {
    bool deny, not_principal, not_action, not_resource;
    bool all_actions;   /* Action "*" / "kms:*": skip matching */
    bool all_resources; /* Resource "*" */
    struct princ *princ;
    size_t n_princ;
    char **actions;     /* lowercased, without "kms:" */
    size_t n_actions;
    uint64_t action_mask; /* bit i: the patterns match ACTIONS[i] (a request's action is one of them) */
    char **resources;
    size_t n_resources;
    struct cond *conds;
    size_t n_conds;
};

struct kms_policy {
    struct stmt *stmts;
    size_t n;
};

/* The actions of this service a policy may name (KMS's, lowercased: action names are case-insensitive).
 * Sorted (looked up by binary search), at most 64 (a statement keeps the ones it names as a bit mask). */
static const char *const ACTIONS[] = {
    "cancelkeydeletion", "connectcustomkeystore", "createalias", "createcustomkeystore", "creategrant",
    "createkey", "decrypt", "deletealias", "deletecustomkeystore", "deleteimportedkeymaterial",
    "derivesharedsecret", "describecustomkeystores", "describekey", "disablekey", "disablekeyrotation",
    "disconnectcustomkeystore", "enablekey", "enablekeyrotation", "encrypt", "generatedatakey",
    "generatedatakeypair", "generatedatakeypairwithoutplaintext", "generatedatakeywithoutplaintext",
    "generatemac", "generaterandom", "getkeypolicy", "getkeyrotationstatus", "getparametersforimport",
    "getpublickey", "importkeymaterial", "listaliases", "listgrants", "listkeypolicies", "listkeyrotations",
    "listkeys", "listresourcetags", "listretirablegrants", "putkeypolicy", "reencryptfrom", "reencryptto",
    "replicatekey", "retiregrant", "revokegrant", "rotatekeyondemand", "schedulekeydeletion", "sign",
    "synchronizemultiregionkey", "tagresource", "untagresource", "updatealias", "updatecustomkeystore",
    "updatekeydescription", "updateprimaryregion", "verify", "verifymac",
};

#define N_ACTIONS (sizeof ACTIONS / sizeof ACTIONS[0])
_Static_assert(N_ACTIONS <= 64, "a statement's action mask has 64 bits");

/* ACTIONS' index of an action name (case-insensitive), -1 if it is none of them. */
static int action_index(const char *action)
{
    size_t lo = 0, hi = N_ACTIONS;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcasecmp(action, ACTIONS[mid]);
        if (!c)
            return (int)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

static kms_err bad(char **msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static kms_err bad(char **msg, const char *fmt, ...)
{
    va_list ap;
    if (msg) {
        char *s = NULL;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
            s = NULL;
        va_end(ap);
        free(*msg);
        *msg = s;
    }
    return KMS_ERR_MALFORMED_POLICY;
}

/* Glob with * and ? (icase: ASCII case-insensitive). Iterative with one backtrack point: linear in
 * practice, never exponential. */
static bool glob(const char *pat, const char *s, bool icase)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*pat == '*') {
            star = pat++;
            resume = s;
        } else if (*pat == '?' ||
                   (icase ? tolower((unsigned char)*pat) == tolower((unsigned char)*s) : *pat == *s)) {
            if (!*pat)
                return false;
            pat++;
            s++;
        } else if (star) {
            pat = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*pat == '*')
        pat++;
    return !*pat;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

bool kms_principal_parse(const char *s, char account[13])
{
    const char *rest;
    if (strlen(s) == 12 && all_digits(s, 12)) {
        memcpy(account, s, 13);
        return true;
    }
    if (strncmp(s, "arn:aws:iam::", 13) || strlen(s) < 13 + 12 + 1 || !all_digits(s + 13, 12) || s[25] != ':')
        return false;
    rest = s + 26;
    if (strcmp(rest, "root") && !((!strncmp(rest, "user/", 5) && rest[5]) || (!strncmp(rest, "role/", 5) && rest[5])))
        return false;
    for (const char *p = rest; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("+=,.@_-/", *p))
            return false;
    memcpy(account, s + 13, 12);
    account[12] = 0;
    return true;
}

/* A principal as written (ARN or account id) against the caller. */
bool kms_principal_matches(const char *principal, const char *principal_arn, const char *account)
{
    char acct[13];
    if (!strcmp(principal, "*"))
        return true;
    if (!kms_principal_parse(principal, acct))
        return false;
    if (strlen(principal) == 12 || !strcmp(principal + 26, "root"))
        return !strcmp(acct, account);
    return !strcmp(principal, principal_arn);
}

/* ---- parsing -------------------------------------------------------------------------------- */

static void free_strs(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* A string or a non-empty list of strings → malloc'd array. */
static kms_err str_list(json_t *j, const char *what, char ***out, size_t *n, char **msg)
{
    size_t cnt = json_is_array(j) ? json_array_size(j) : 1;
    *out = NULL;
    *n = 0;
    if (!json_is_string(j) && !json_is_array(j))
        return bad(msg, "%s must be a string or a list of strings", what);
    if (cnt == 0)
        return bad(msg, "%s must not be an empty list", what);
    *out = calloc(cnt, sizeof **out);
    if (!*out)
        return KMS_ERR_NOMEM;
    for (size_t i = 0; i < cnt; i++) {
        json_t *v = json_is_array(j) ? json_array_get(j, i) : j;
        if (!json_is_string(v)) {
            free_strs(*out, i);
            *out = NULL;
            *n = 0;
            return bad(msg, "%s must be a string or a list of strings", what);
        }
        if (!((*out)[i] = strdup(json_string_value(v)))) {
            free_strs(*out, i);
            *out = NULL;
            *n = 0;
            return KMS_ERR_NOMEM;
        }
        *n = i + 1;
    }
    return KMS_OK;
}

static kms_err parse_principal(json_t *j, struct stmt *st, size_t idx, const char *elem, char **msg)
{
    char **arns = NULL;
    size_t n = 0;
    kms_err e;
    if (json_is_string(j)) {
        if (strcmp(json_string_value(j), "*"))
            return bad(msg, "Statement[%zu].%s must be \"*\" or {\"AWS\": ...}", idx, elem);
        st->princ = calloc(1, sizeof *st->princ);
        if (!st->princ)
            return KMS_ERR_NOMEM;
        st->princ[0].any = true;
        st->n_princ = 1;
        return KMS_OK;
    }
    if (!json_is_object(j))
        return bad(msg, "Statement[%zu].%s must be \"*\" or an object", idx, elem);
    {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            if (strcmp(k, "AWS"))
                return bad(msg, "Statement[%zu].%s.%s: unsupported principal type (only AWS)", idx, elem, k);
        }
    }
    if (!json_object_get(j, "AWS"))
        return bad(msg, "Statement[%zu].%s needs an AWS member", idx, elem);
    if ((e = str_list(json_object_get(j, "AWS"), "Principal.AWS", &arns, &n, msg)))
        return e;
    st->princ = calloc(n, sizeof *st->princ);
    if (!st->princ) {
        free_strs(arns, n);
        return KMS_ERR_NOMEM;
    }
    st->n_princ = n;
    for (size_t i = 0; i < n; i++) {
        struct princ *p = &st->princ[i];
        if (!strcmp(arns[i], "*")) {
            p->any = true;
            continue;
        }
        if (!kms_principal_parse(arns[i], p->account)) {
            e = bad(msg, "Statement[%zu].%s.AWS: invalid principal %s (an IAM ARN or 12-digit account id)", idx, elem,
                    arns[i]);
            free_strs(arns, n);
            return e;
        }
        if (strlen(arns[i]) != 12 && strcmp(arns[i] + 26, "root")) {
            p->arn = arns[i];
            arns[i] = NULL;
        }
    }
    free_strs(arns, n);
    return KMS_OK;
}

static kms_err parse_actions(json_t *j, struct stmt *st, size_t idx, const char *elem, char **msg)
{
    kms_err e = str_list(j, elem, &st->actions, &st->n_actions, msg);
    if (e)
        return e;
    for (size_t i = 0; i < st->n_actions; i++) {
        char *a = st->actions[i];
        if (!strcmp(a, "*") || !strcasecmp(a, "kms:*")) {
            st->all_actions = true;
            memmove(a, "*", 2);
            continue;
        }
        if (strncasecmp(a, "kms:", 4) || !a[4])
            return bad(msg, "Statement[%zu].%s: %s is not an action of this service (kms:...)", idx, elem, a);
        memmove(a, a + 4, strlen(a + 4) + 1);
        for (char *p = a; *p; p++) {
            if (!isalnum((unsigned char)*p) && *p != '*' && *p != '?')
                return bad(msg, "Statement[%zu].%s: invalid action name kms:%s", idx, elem, a);
            *p = (char)tolower((unsigned char)*p);
        }
        if (!strpbrk(a, "*?")) {
            bool known = false;
            for (size_t k = 0; k < sizeof ACTIONS / sizeof ACTIONS[0] && !known; k++)
                known = !strcmp(ACTIONS[k], a);
            if (!known)
                return bad(msg, "Statement[%zu].%s: kms:%s is not a KMS action", idx, elem, a);
        }
    }
    if (st->not_action)
        st->all_actions = false; /* NotAction "*" matches nothing: evaluated, not short-cut */
    /* Each pattern against every action of the service, once: a call's match is then one bit. */
    for (size_t i = 0; i < st->n_actions; i++)
        for (size_t k = 0; k < N_ACTIONS; k++)
            if (glob(st->actions[i], ACTIONS[k], true))
                st->action_mask |= UINT64_C(1) << k;
    return KMS_OK;
}

static kms_err parse_resources(json_t *j, struct stmt *st, size_t idx, const char *elem, char **msg)
{
    kms_err e = str_list(j, elem, &st->resources, &st->n_resources, msg);
    if (e)
        return e;
    for (size_t i = 0; i < st->n_resources; i++) {
        const char *r = st->resources[i];
        if (!strcmp(r, "*")) {
            st->all_resources = !st->not_resource;
            continue;
        }
        if (strncmp(r, "arn:aws:kms:", 12))
            return bad(msg, "Statement[%zu].%s: %s is not \"*\" or a KMS key ARN", idx, elem, r);
    }
    return KMS_OK;
}

static bool parse_ip(const char *s, struct ipnet *n)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t len = slash ? (size_t)(slash - s) : strlen(s);
    int max;
    if (len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = 0;
    if (inet_pton(AF_INET, buf, n->addr) == 1) {
        n->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, n->addr) == 1) {
        n->family = AF_INET6;
        max = 128;
    } else {
        return false;
    }
    n->bits = max;
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || b < 0 || b > max)
            return false;
        n->bits = (int)b;
    }
    return true;
}

static bool ip_in(const struct ipnet *net, const struct ipnet *ip)
{
    int full = net->bits / 8, rest = net->bits % 8;
    if (net->family != ip->family)
        return false;
    if (memcmp(net->addr, ip->addr, (size_t)full))
        return false;
    if (rest) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        if ((net->addr[full] & mask) != (ip->addr[full] & mask))
            return false;
    }
    return true;
}

static const struct {
    const char *name;
    enum ckey key;
} CKEYS[] = {
    {"kms:encryptioncontextkeys", CK_EC_KEYS}, {"kms:calleraccount", CK_CALLER_ACCOUNT},
    {"kms:viaservice", CK_VIA_SERVICE},        {"kms:grantoperations", CK_GRANT_OPS},
    {"kms:grantisforawsresource", CK_GRANT_AWS}, {"kms:requestalias", CK_REQUEST_ALIAS},
    {"aws:principalarn", CK_PRINCIPAL_ARN},    {"aws:sourceip", CK_SOURCE_IP},
};

static const struct {
    const char *name;
    enum cop op;
    bool neg, icase;
} COPS[] = {
    {"StringEquals", OP_EQ, false, false},          {"StringNotEquals", OP_EQ, true, false},
    {"StringEqualsIgnoreCase", OP_EQ, false, true}, {"StringNotEqualsIgnoreCase", OP_EQ, true, true},
    {"StringLike", OP_LIKE, false, false},          {"StringNotLike", OP_LIKE, true, false},
    {"ArnEquals", OP_EQ, false, false},             {"ArnNotEquals", OP_EQ, true, false},
    {"ArnLike", OP_LIKE, false, false},             {"ArnNotLike", OP_LIKE, true, false},
    {"Bool", OP_BOOL, false, false},                {"Null", OP_NULL, false, false},
    {"IpAddress", OP_IP, false, false},             {"NotIpAddress", OP_IP, true, false},
};

/* Condition values: a string, number or boolean, or a non-empty list of them → strings. */
static kms_err cond_values(json_t *j, const char *where, struct cond *c, char **msg)
{
    size_t cnt = json_is_array(j) ? json_array_size(j) : 1;
    if (json_is_array(j) && cnt == 0)
        return bad(msg, "Condition %s: empty list of values", where);
    c->vals = calloc(cnt, sizeof *c->vals);
    if (!c->vals)
        return KMS_ERR_NOMEM;
    for (size_t i = 0; i < cnt; i++) {
        json_t *v = json_is_array(j) ? json_array_get(j, i) : j;
        char num[32];
        const char *s;
        if (json_is_string(v))
            s = json_string_value(v);
        else if (json_is_boolean(v))
            s = json_is_true(v) ? "true" : "false";
        else if (json_is_integer(v)) {
            snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
            s = num;
        } else
            return bad(msg, "Condition %s: values must be strings, numbers or booleans", where);
        if (strstr(s, "${"))
            return bad(msg, "Condition %s: policy variables (${...}) are not supported", where);
        if (!(c->vals[i] = strdup(s)))
            return KMS_ERR_NOMEM;
        c->n_vals = i + 1;
    }
    if (c->op == OP_BOOL || c->op == OP_NULL)
        for (size_t i = 0; i < c->n_vals; i++)
            if (strcasecmp(c->vals[i], "true") && strcasecmp(c->vals[i], "false"))
                return bad(msg, "Condition %s: %s is not true or false", where, c->vals[i]);
    if (c->op == OP_IP) {
        if (c->key != CK_SOURCE_IP)
            return bad(msg, "Condition %s: IpAddress operators apply only to aws:SourceIp", where);
        c->nets = calloc(c->n_vals, sizeof *c->nets);
        if (!c->nets)
            return KMS_ERR_NOMEM;
        for (size_t i = 0; i < c->n_vals; i++)
            if (!parse_ip(c->vals[i], &c->nets[i]))
                return bad(msg, "Condition %s: %s is not an IP address or CIDR block", where, c->vals[i]);
    }
    return KMS_OK;
}

static kms_err parse_conditions(json_t *j, struct stmt *st, size_t idx, char **msg)
{
    const char *opname, *key;
    json_t *block, *v;
    size_t total = 0;
    if (!json_is_object(j))
        return bad(msg, "Statement[%zu].Condition must be an object", idx);
    json_object_foreach(j, opname, block) {
        if (!json_is_object(block) || json_object_size(block) == 0)
            return bad(msg, "Statement[%zu].Condition.%s must be a non-empty object", idx, opname);
        total += json_object_size(block);
    }
    st->conds = calloc(total ? total : 1, sizeof *st->conds);
    if (!st->conds)
        return KMS_ERR_NOMEM;
    json_object_foreach(j, opname, block) {
        const char *name = opname;
        enum cset set = SET_NONE;
        bool if_exists = false, found = false;
        char base[64];
        size_t len;
        struct cond proto = {0};
        if (!strncmp(name, "ForAnyValue:", 12)) {
            set = SET_ANY;
            name += 12;
        } else if (!strncmp(name, "ForAllValues:", 13)) {
            set = SET_ALL;
            name += 13;
        }
        len = strlen(name);
        if (len > 8 && !strcmp(name + len - 8, "IfExists")) {
            if_exists = true;
            len -= 8;
        }
        if (len >= sizeof base)
            return bad(msg, "Statement[%zu].Condition: unsupported condition operator %s", idx, opname);
        memcpy(base, name, len);
        base[len] = 0;
        for (size_t i = 0; i < sizeof COPS / sizeof COPS[0] && !found; i++)
            if (!strcmp(COPS[i].name, base)) {
                proto.op = COPS[i].op;
                proto.neg = COPS[i].neg;
                proto.icase = COPS[i].icase;
                found = true;
            }
        if (!found)
            return bad(msg, "Statement[%zu].Condition: unsupported condition operator %s", idx, opname);
        if (proto.op == OP_NULL && (if_exists || set != SET_NONE))
            return bad(msg, "Statement[%zu].Condition: %s: Null takes neither IfExists nor a set operator", idx,
                       opname);
        proto.set = set;
        proto.if_exists = if_exists;
        json_object_foreach(block, key, v) {
            struct cond *c = &st->conds[st->n_conds++];
            char where[256];
            kms_err e;
            *c = proto;
            snprintf(where, sizeof where, "Statement[%zu].Condition.%s.%s", idx, opname, key);
            if (!strncasecmp(key, "kms:EncryptionContext:", 22)) {
                if (!key[22])
                    return bad(msg, "%s: empty encryption context key", where);
                c->key = CK_EC;
                if (!(c->ec_key = strdup(key + 22)))
                    return KMS_ERR_NOMEM;
            } else {
                bool known = false;
                for (size_t i = 0; i < sizeof CKEYS / sizeof CKEYS[0] && !known; i++)
                    if (!strcasecmp(CKEYS[i].name, key)) {
                        c->key = CKEYS[i].key;
                        known = true;
                    }
                if (!known)
                    return bad(msg, "%s: unsupported condition key %s", where, key);
            }
            if ((e = cond_values(v, where, c, msg)))
                return e;
        }
    }
    return KMS_OK;
}

static kms_err parse_statement(json_t *j, struct stmt *st, size_t idx, char **msg)
{
    const char *k;
    json_t *v, *eff;
    kms_err e;
    if (!json_is_object(j))
        return bad(msg, "Statement[%zu] must be an object", idx);
    json_object_foreach(j, k, v) {
        static const char *const known[] = {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction",
                                            "Resource", "NotResource", "Condition"};
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0] && !ok; i++)
            ok = !strcmp(known[i], k);
        if (!ok)
            return bad(msg, "Statement[%zu]: unsupported element %s", idx, k);
    }
    v = json_object_get(j, "Sid");
    if (v && !json_is_string(v))
        return bad(msg, "Statement[%zu].Sid must be a string", idx);
    eff = json_object_get(j, "Effect");
    if (!json_is_string(eff) || (strcmp(json_string_value(eff), "Allow") && strcmp(json_string_value(eff), "Deny")))
        return bad(msg, "Statement[%zu].Effect must be \"Allow\" or \"Deny\"", idx);
    st->deny = !strcmp(json_string_value(eff), "Deny");
#define ONE_OF(a, b, flag, fn)                                                                                       \
    do {                                                                                                             \
        json_t *ja = json_object_get(j, a), *jb = json_object_get(j, b);                                             \
        if (!!ja == !!jb)                                                                                            \
            return bad(msg, "Statement[%zu] needs exactly one of %s and %s", idx, a, b);                             \
        st->flag = jb != NULL;                                                                                       \
        if ((e = fn(ja ? ja : jb, st, idx, ja ? a : b, msg)))                                                        \
            return e;                                                                                                \
    } while (0)
    ONE_OF("Principal", "NotPrincipal", not_principal, parse_principal);
    ONE_OF("Action", "NotAction", not_action, parse_actions);
    ONE_OF("Resource", "NotResource", not_resource, parse_resources);
#undef ONE_OF
    v = json_object_get(j, "Condition");
    if (v && (e = parse_conditions(v, st, idx, msg)))
        return e;
    return KMS_OK;
}

kms_err kms_policy_parse(const char *text, size_t len, kms_policy **out, char **msg)
{
    json_error_t jerr;
    json_t *doc, *v, *stmts;
    kms_policy *p = NULL;
    const char *k;
    kms_err e;
    size_t n;

    *out = NULL;
    if (len > KMS_POLICY_MAX_BYTES) {
        if (msg) {
            free(*msg);
            *msg = NULL;
            if (asprintf(msg, "the key policy is %zu bytes; the limit is %d", len, KMS_POLICY_MAX_BYTES) < 0)
                *msg = NULL;
        }
        return KMS_ERR_LIMIT_EXCEEDED;
    }
    if (memchr(text, 0, len))
        return bad(msg, "the policy contains a NUL byte");
    doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        return bad(msg, "the policy is not valid JSON: %s (line %d)", jerr.text, jerr.line);
    if (!json_is_object(doc)) {
        e = bad(msg, "the policy must be a JSON object");
        goto out;
    }
    json_object_foreach(doc, k, v) {
        if (strcmp(k, "Version") && strcmp(k, "Id") && strcmp(k, "Statement")) {
            e = bad(msg, "unsupported policy element %s", k);
            goto out;
        }
    }
    v = json_object_get(doc, "Version");
    if (v && (!json_is_string(v) ||
              (strcmp(json_string_value(v), "2012-10-17") && strcmp(json_string_value(v), "2008-10-17")))) {
        e = bad(msg, "Version must be \"2012-10-17\" or \"2008-10-17\"");
        goto out;
    }
    v = json_object_get(doc, "Id");
    if (v && !json_is_string(v)) {
        e = bad(msg, "Id must be a string");
        goto out;
    }
    stmts = json_object_get(doc, "Statement");
    if (!stmts || !(json_is_object(stmts) || (json_is_array(stmts) && json_array_size(stmts)))) {
        e = bad(msg, "Statement must be an object or a non-empty list of objects");
        goto out;
    }
    n = json_is_array(stmts) ? json_array_size(stmts) : 1;
    p = calloc(1, sizeof *p);
    if (!p || !(p->stmts = calloc(n, sizeof *p->stmts))) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        p->n = i + 1;
        if ((e = parse_statement(json_is_array(stmts) ? json_array_get(stmts, i) : stmts, &p->stmts[i], i, msg)))
            goto out;
    }
    e = KMS_OK;
    *out = p;
    p = NULL;
out:
    kms_policy_free(p);
    json_decref(doc);
    return e;
}

void kms_policy_free(kms_policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        struct stmt *st = &p->stmts[i];
        for (size_t j = 0; j < st->n_princ; j++)
            free(st->princ[j].arn);
        free(st->princ);
        free_strs(st->actions, st->n_actions);
        free_strs(st->resources, st->n_resources);
        for (size_t j = 0; j < st->n_conds; j++) {
            free(st->conds[j].ec_key);
            free_strs(st->conds[j].vals, st->conds[j].n_vals);
            free(st->conds[j].nets);
        }
        free(st->conds);
    }
    free(p->stmts);
    free(p);
}

/* ---- evaluation ----------------------------------------------------------------------------- */

/* Number of values the request has for a condition's key, and the i-th one. */
static size_t n_values(const struct cond *c, const kms_policy_req *r)
{
    switch (c->key) {
    case CK_EC:
        if (r->ectx)
            for (size_t i = 0; i < r->ectx->n; i++)
                if (!strcasecmp(r->ectx->pairs[i].key, c->ec_key))
                    return 1;
        return 0;
    case CK_EC_KEYS:
        return r->ectx ? r->ectx->n : 0;
    case CK_GRANT_OPS:
        return r->grant_ops ? r->n_grant_ops : 0;
    case CK_GRANT_AWS:
        return r->grant_for_aws >= 0;
    case CK_CALLER_ACCOUNT:
        return r->account != NULL;
    case CK_VIA_SERVICE:
        return r->via_service != NULL;
    case CK_REQUEST_ALIAS:
        return r->request_alias != NULL;
    case CK_PRINCIPAL_ARN:
        return r->principal_arn != NULL;
    case CK_SOURCE_IP:
        return r->source_ip != NULL;
    }
    return 0;
}

static const char *value(const struct cond *c, const kms_policy_req *r, size_t i)
{
    switch (c->key) {
    case CK_EC:
        for (size_t k = 0; k < r->ectx->n; k++)
            if (!strcasecmp(r->ectx->pairs[k].key, c->ec_key))
                return r->ectx->pairs[k].value;
        return "";
    case CK_EC_KEYS:
        return r->ectx->pairs[i].key;
    case CK_GRANT_OPS:
        return r->grant_ops[i];
    case CK_GRANT_AWS:
        return r->grant_for_aws ? "true" : "false";
    case CK_CALLER_ACCOUNT:
        return r->account;
    case CK_VIA_SERVICE:
        return r->via_service;
    case CK_REQUEST_ALIAS:
        return r->request_alias;
    case CK_PRINCIPAL_ARN:
        return r->principal_arn;
    case CK_SOURCE_IP:
        return r->source_ip;
    }
    return "";
}

/* Whether one request value matches any of the condition's values (the positive operator). */
static bool match_one(const struct cond *c, const char *v)
{
    if (c->op == OP_IP) {
        struct ipnet ip;
        if (!parse_ip(v, &ip) || ip.bits != (ip.family == AF_INET ? 32 : 128))
            return false;
        for (size_t i = 0; i < c->n_vals; i++)
            if (ip_in(&c->nets[i], &ip))
                return true;
        return false;
    }
    for (size_t i = 0; i < c->n_vals; i++) {
        switch (c->op) {
        case OP_EQ:
            if (c->icase ? !strcasecmp(c->vals[i], v) : !strcmp(c->vals[i], v))
                return true;
            break;
        case OP_LIKE:
            if (glob(c->vals[i], v, false))
                return true;
            break;
        case OP_BOOL:
            if (!strcasecmp(c->vals[i], v))
                return true;
            break;
        default:
            break;
        }
    }
    return false;
}

static bool cond_holds(const struct cond *c, const kms_policy_req *r)
{
    size_t n = n_values(c, r);
    if (c->op == OP_NULL) {
        /* "true": the key is absent; "false": present; several values are ORed */
        for (size_t i = 0; i < c->n_vals; i++)
            if (!strcasecmp(c->vals[i], "true") ? n == 0 : n > 0)
                return true;
        return false;
    }
    if (n == 0) {
        if (c->if_exists || c->set == SET_ALL)
            return true;
        if (c->set == SET_ANY)
            return false;
        return c->neg;
    }
    if (c->set == SET_NONE) {
        bool any = false;
        for (size_t i = 0; i < n && !any; i++)
            any = match_one(c, value(c, r, i));
        return c->neg ? !any : any;
    }
    for (size_t i = 0; i < n; i++) {
        bool m = match_one(c, value(c, r, i));
        if (c->neg)
            m = !m;
        if (c->set == SET_ANY && m)
            return true;
        if (c->set == SET_ALL && !m)
            return false;
    }
    return c->set == SET_ALL;
}

static bool principal_in(const struct stmt *st, const kms_policy_req *r)
{
    for (size_t i = 0; i < st->n_princ; i++) {
        const struct princ *p = &st->princ[i];
        if (p->any || (p->arn ? !strcmp(p->arn, r->principal_arn) : !strcmp(p->account, r->account)))
            return true;
    }
    return false;
}

/* ai: the action's index in ACTIONS (action_index), or -1: matched against the patterns themselves. */
static bool action_in(const struct stmt *st, const char *action, int ai)
{
    if (st->all_actions)
        return true;
    if (ai >= 0)
        return (st->action_mask >> ai) & 1;
    for (size_t i = 0; i < st->n_actions; i++)
        if (glob(st->actions[i], action, true))
            return true;
    return false;
}

static bool resource_in(const struct stmt *st, const char *resource)
{
    if (st->all_resources)
        return true;
    for (size_t i = 0; i < st->n_resources; i++)
        if (!strcmp(st->resources[i], "*") || glob(st->resources[i], resource, false))
            return true;
    return false;
}

static bool applies(const struct stmt *st, const kms_policy_req *r, int ai)
{
    if (principal_in(st, r) == st->not_principal)
        return false;
    if (action_in(st, r->action, ai) == st->not_action)
        return false;
    if (resource_in(st, r->resource) == st->not_resource)
        return false;
    for (size_t i = 0; i < st->n_conds; i++)
        if (!cond_holds(&st->conds[i], r))
            return false;
    return true;
}

kms_policy_decision kms_policy_eval(const kms_policy *p, const kms_policy_req *r)
{
    int ai = action_index(r->action);
    bool allow = false;
    for (size_t i = 0; i < p->n; i++) {
        const struct stmt *st = &p->stmts[i];
        if (st->deny ? true : !allow) {
            if (applies(st, r, ai)) {
                if (st->deny)
                    return KMS_POLICY_DENY;
                allow = true;
            }
        }
    }
    return allow ? KMS_POLICY_ALLOW : KMS_POLICY_NO_MATCH;
}
