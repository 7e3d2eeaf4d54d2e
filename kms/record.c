/*
 * record.c — an audit record's CloudTrail JSON text, written member by member in key order (see
 * record.h). Each object below writes its members in the byte order of their names, the order
 * JSON_SORT_KEYS gave the tree this replaces; the comments name the order where it is not obvious.
 */
#include "record.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsondump.h"

/* Sorted by strcmp (the copy below is found by bsearch): none holds plaintext, ciphertext or a secret;
 * custom key stores: never KeyStorePassword. */
const char *const KMS_RECORD_REQ_FIELDS[] = {
    "AliasName", "BypassPolicyLockoutSafetyCheck", "CloudHsmClusterId", "Constraints", "CustomKeyStoreId",
    "CustomKeyStoreName", "CustomKeyStoreType", "CustomerMasterKeySpec", "Description", "DestinationEncryptionAlgorithm",
    "DestinationEncryptionContext", "DestinationKeyId", "DryRun", "EncryptionAlgorithm", "EncryptionContext",
    "ExpirationModel", "GrantId", "GrantName", "GranteePrincipal", "IncludeKeyMetadata", "KeyId", "KeyPairSpec",
    "KeySpec", "KeyUsage", "Limit", "MacAlgorithm", "Marker", "MessageType", "MultiRegion", "NewCustomKeyStoreName",
    "NumberOfBytes", "Operations", "Origin", "PendingWindowInDays", "PolicyName", "RetiringPrincipal",
    "RotationPeriodInDays", "SigningAlgorithm", "SourceEncryptionAlgorithm", "SourceEncryptionContext", "SourceKeyId",
    "TagKeys", "Tags", "TargetKeyId", "ValidTo", "WrappingAlgorithm", "WrappingKeySpec"};
const size_t KMS_RECORD_REQ_NFIELDS = sizeof KMS_RECORD_REQ_FIELDS / sizeof KMS_RECORD_REQ_FIELDS[0];
/* Response fields of mutating calls (CloudTrail leaves crypto results out); sorted too. */
const char *const KMS_RECORD_RESP_FIELDS[] = {"CustomKeyStoreId", "DeletionDate", "GrantId", "KeyId",
                                              "KeyMetadata", "KeyState", "PendingWindowInDays"};
const size_t KMS_RECORD_RESP_NFIELDS = sizeof KMS_RECORD_RESP_FIELDS / sizeof KMS_RECORD_RESP_FIELDS[0];

/* jansson's rules (utf.c): the length from the first byte, continuation bytes 10xxxxxx, no overlong
 * form, no surrogate, nothing past U+10FFFF. */
bool kms_record_utf8(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned char u = s[i];
        size_t len;
        uint32_t v;
        if (u < 0x80) {
            i++;
            continue;
        }
        if (u < 0xc2 || u > 0xf4)
            return false;
        len = u < 0xe0 ? 2 : u < 0xf0 ? 3 : 4;
        if (len > n - i)
            return false;
        v = u & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            v = (v << 6) | (s[i + k] & 0x3f);
        }
        if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff) || (len == 3 && v < 0x800) || (len == 4 && v < 0x10000))
            return false;
        i += len;
    }
    return true;
}

static bool utf8z(const char *s)
{
    return s && kms_record_utf8(s, strlen(s));
}

/* Writing: every helper returns 0 or -1 (no memory); "first" tracks the comma of the current object. */
struct out {
    struct efs_jbuf b;
    bool first;
};

static int lit(struct out *o, const char *s)
{
    return efs_jbuf_put(&o->b, s, strlen(s));
}

static int key(struct out *o, const char *k)
{
    int rc = o->first ? 0 : efs_jbuf_put(&o->b, ",", 1);
    o->first = false;
    return rc || efs_jbuf_string(&o->b, k, strlen(k)) || efs_jbuf_put(&o->b, ":", 1) ? -1 : 0;
}

static int open_obj(struct out *o)
{
    o->first = true;
    return efs_jbuf_put(&o->b, "{", 1);
}

static int close_obj(struct out *o)
{
    o->first = false;
    return efs_jbuf_put(&o->b, "}", 1);
}

/* A string member; a value that is not UTF-8 leaves the member out (json_object_set_new of the NULL
 * json_string returned). */
static int str_opt(struct out *o, const char *k, const char *v)
{
    if (!utf8z(v))
        return 0;
    return key(o, k) || efs_jbuf_string(&o->b, v, strlen(v)) ? -1 : 0;
}

/* A string member of a json_pack: checked by kms_record_text beforehand. */
static int str(struct out *o, const char *k, const char *v)
{
    return key(o, k) || efs_jbuf_string(&o->b, v, strlen(v)) ? -1 : 0;
}

static int boolean(struct out *o, const char *k, bool v)
{
    return key(o, k) || lit(o, v ? "true" : "false") ? -1 : 0;
}

static int integer(struct out *o, const char *k, long long v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%lld", v);
    return key(o, k) || efs_jbuf_put(&o->b, num, (size_t)n) ? -1 : 0;
}

/* A tree, as the sorted dump writes it, or as jansson does where that dump declines (a real). */
static int tree(struct out *o, const json_t *j)
{
    char *t;
    int rc;
    if (!efs_jbuf_value_sorted(&o->b, j))
        return 0;
    t = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!t)
        return -1;
    rc = lit(o, t);
    free(t);
    return rc;
}

static int cmp_field(const void *k, const void *f)
{
    return strcmp(k, *(const char *const *)f);
}

/* requestParameters/responseElements: the listed members of the object, camelCased, or null. The
 * object's members are looked up in the sorted list; those found are written in list order, which is the
 * byte order of their camelCased names too (each starts with a capital, which only changes case). */
static int part(struct out *o, const struct kms_record_part *p)
{
    enum { MAXF = 64 };
    size_t idx[MAXF], n = 0;
    const char *k;
    json_t *v;
    if (!p->tree)
        return lit(o, "null");
    if (!p->fields)
        return tree(o, p->tree);
    if (!json_is_object(p->tree))
        return lit(o, "null");
    json_object_foreach((json_t *)p->tree, k, v) {
        const char *const *f = bsearch(k, p->fields, p->nfields, sizeof *p->fields, cmp_field);
        size_t at;
        if (!f || n == MAXF)
            continue;
        at = (size_t)(f - p->fields);
        /* insertion into idx, kept sorted (a handful of members) */
        size_t j = n++;
        for (; j && idx[j - 1] > at; j--)
            idx[j] = idx[j - 1];
        idx[j] = at;
    }
    if (!n)
        return lit(o, "null");
    if (open_obj(o))
        return -1;
    for (size_t i = 0; i < n; i++) {
        char name[48];
        snprintf(name, sizeof name, "%s", p->fields[idx[i]]);
        name[0] = (char)(name[0] - 'A' + 'a'); /* CloudTrail's camelCase */
        if (key(o, name) || tree(o, json_object_get(p->tree, p->fields[idx[i]])))
            return -1;
    }
    return close_obj(o);
}

/* userIdentity's members: accessKeyId accountId arn invokedBy principalId type unixPeer userName. */
static int identity(struct out *o, const struct kms_record *r)
{
    if (r->identity)
        return tree(o, r->identity);
    if (open_obj(o) || str_opt(o, "accessKeyId", r->access_key_id) || str(o, "accountId", r->account_id) ||
        str(o, "arn", r->arn) || str_opt(o, "invokedBy", r->invoked_by) || str(o, "principalId", r->principal_id) ||
        str(o, "type", r->ui_type))
        return -1;
    if (r->unix_peer) {
        if (key(o, "unixPeer") || open_obj(o) || integer(o, "gid", r->unix_peer->gid) ||
            integer(o, "pid", r->unix_peer->pid) || integer(o, "uid", r->unix_peer->uid) || close_obj(o))
            return -1;
    }
    return str_opt(o, "userName", r->user_name) || close_obj(o) ? -1 : 0;
}

/* resources: [{ARN, accountId, type}]; a resource with a member that is not UTF-8 is left out (its
 * json_pack failed). */
static int resources(struct out *o, const struct kms_record *r)
{
    bool any = false;
    if (lit(o, "["))
        return -1;
    for (size_t i = 0; i < r->nresources; i++) {
        const struct kms_record_resource *x = &r->resources[i];
        if ((x->arn && !utf8z(x->arn)) || (x->account && !utf8z(x->account)) || (x->type && !utf8z(x->type)))
            continue;
        if ((any && lit(o, ",")) || open_obj(o) || (x->arn && str(o, "ARN", x->arn)) ||
            (x->account && str(o, "accountId", x->account)) || (x->type && str(o, "type", x->type)) || close_obj(o))
            return -1;
        any = true;
    }
    o->first = false;
    return lit(o, "]");
}

int kms_record_text(const struct kms_record *r, char **out, size_t *len)
{
    struct out o = {{NULL, 0, 0}, true};
    const char *const packed[] = {r->event_time, r->event_source, r->event_name, r->region, r->source_ip,
                                  r->user_agent};
    bool msg = false;
    *out = NULL;
    *len = 0;
    /* what the tree's json_pack calls took: not UTF-8 there failed the record */
    for (size_t i = 0; i < sizeof packed / sizeof packed[0]; i++)
        if (!utf8z(packed[i]))
            return -1;
    if (!r->identity && (!utf8z(r->ui_type) || !utf8z(r->principal_id) || !utf8z(r->arn) || !utf8z(r->account_id)))
        return -1;
    if (r->error_code && r->error_message)
        msg = kms_record_utf8(r->error_message, r->error_message_len);
    /* members: additionalEventData awsRegion errorCode errorMessage eventCategory eventID eventName
     * eventSource eventTime eventType eventVersion managementEvent readOnly recipientAccountId requestID
     * requestParameters resources responseElements sourceIPAddress userAgent userIdentity */
    if (open_obj(&o))
        goto fail;
    if (r->grant_id && *r->grant_id && utf8z(r->grant_id) &&
        (key(&o, "additionalEventData") || open_obj(&o) || str(&o, "grantId", r->grant_id) || close_obj(&o)))
        goto fail;
    if (str(&o, "awsRegion", r->region))
        goto fail;
    if (r->error_code && (str_opt(&o, "errorCode", r->error_code) ||
                          (msg && (key(&o, "errorMessage") ||
                                   efs_jbuf_string(&o.b, r->error_message, r->error_message_len)))))
        goto fail;
    if (str_opt(&o, "eventCategory", r->event_category) || str_opt(&o, "eventID", r->event_id) ||
        str(&o, "eventName", r->event_name) || str(&o, "eventSource", r->event_source) ||
        str(&o, "eventTime", r->event_time) || str(&o, "eventType", "AwsApiCall") ||
        str(&o, "eventVersion", "1.08") || boolean(&o, "managementEvent", r->management) ||
        boolean(&o, "readOnly", r->read_only) || str_opt(&o, "recipientAccountId", r->recipient_account) ||
        str_opt(&o, "requestID", r->request_id) || key(&o, "requestParameters") || part(&o, &r->request))
        goto fail;
    o.first = false;
    if (key(&o, "resources") || resources(&o, r) || key(&o, "responseElements") || part(&o, &r->response))
        goto fail;
    o.first = false;
    if (str(&o, "sourceIPAddress", r->source_ip) || str(&o, "userAgent", r->user_agent) ||
        key(&o, "userIdentity") || identity(&o, r) || close_obj(&o) || efs_jbuf_put(&o.b, "", 0))
        goto fail;
    o.b.p[o.b.n] = 0; /* (efs_jbuf_put keeps a byte free) */
    *out = o.b.p;
    *len = o.b.n;
    return 0;
fail:
    free(o.b.p);
    return -1;
}
