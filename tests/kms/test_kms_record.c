/*
 * test_kms_record.c — the audit record's direct serializer (kms/record.c) against the jansson tree it
 * replaced: for a range of records (every optional member on and off, another service's identity and
 * resource, reals and nesting in the request, quotes, backslashes, control bytes, UTF-8 of every length,
 * invalid UTF-8 and a message cut inside a character) the direct text is byte for byte what
 * json_dumps(JSON_COMPACT | JSON_SORT_KEYS) writes of the tree built as trail.c built it until now, and
 * a record fails exactly where that tree's construction failed. Also: the copied-field lists are sorted
 * (record.c looks them up by bsearch) and hold no secret-bearing field.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "record.h"
#include "testutil.h"

/* The old construction (trail.c before the direct serializer), from the same fields. */
static json_t *pick(const json_t *in, const char *const *fields, size_t n)
{
    json_t *o;
    if (!json_is_object(in))
        return json_null();
    o = json_object();
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_object_get(in, fields[i]);
        if (v) {
            char k[48];
            snprintf(k, sizeof k, "%s", fields[i]);
            k[0] = (char)(k[0] - 'A' + 'a');
            json_object_set(o, k, v);
        }
    }
    if (!json_object_size(o)) {
        json_decref(o);
        return json_null();
    }
    return o;
}

static json_t *old_part(const struct kms_record_part *p)
{
    if (!p->tree)
        return NULL;
    if (!p->fields)
        return json_incref((json_t *)p->tree);
    return pick(p->tree, p->fields, p->nfields);
}

static char *old_text(const struct kms_record *r)
{
    json_t *ev, *ui, *res = json_array(), *rq = old_part(&r->request), *rs = old_part(&r->response);
    char *text;
    for (size_t i = 0; i < r->nresources; i++) {
        const struct kms_record_resource *x = &r->resources[i];
        json_array_append_new(res, json_pack("{s:s*, s:s*, s:s*}", "accountId", x->account, "type", x->type, "ARN",
                                             x->arn));
    }
    if (r->identity) {
        ui = json_incref((json_t *)r->identity);
    } else {
        ui = json_pack("{s:s, s:s, s:s, s:s}", "type", r->ui_type, "principalId", r->principal_id, "arn", r->arn,
                       "accountId", r->account_id);
        if (ui && r->access_key_id)
            json_object_set_new(ui, "accessKeyId", json_string(r->access_key_id));
        if (ui && r->user_name)
            json_object_set_new(ui, "userName", json_string(r->user_name));
        if (ui && r->unix_peer)
            json_object_set_new(ui, "unixPeer",
                                json_pack("{s:I, s:I, s:I}", "uid", (json_int_t)r->unix_peer->uid, "gid",
                                          (json_int_t)r->unix_peer->gid, "pid", (json_int_t)r->unix_peer->pid));
        if (ui && r->invoked_by)
            json_object_set_new(ui, "invokedBy", json_string(r->invoked_by));
    }
    ev = json_pack("{s:s, s:o, s:s, s:s, s:s, s:s, s:s, s:s}", "eventVersion", "1.08", "userIdentity", ui,
                   "eventTime", r->event_time, "eventSource", r->event_source, "eventName", r->event_name,
                   "awsRegion", r->region, "sourceIPAddress", r->source_ip, "userAgent", r->user_agent);
    if (!ev) {
        json_decref(rq);
        json_decref(rs);
        json_decref(res);
        return NULL;
    }
    if (r->error_code) {
        json_object_set_new(ev, "errorCode", json_string(r->error_code));
        if (r->error_message)
            json_object_set_new(ev, "errorMessage", json_stringn(r->error_message, r->error_message_len));
    }
    json_object_set_new(ev, "requestParameters", rq ? rq : json_null());
    json_object_set_new(ev, "responseElements", rs ? rs : json_null());
    json_object_set_new(ev, "requestID", json_string(r->request_id));
    json_object_set_new(ev, "eventID", json_string(r->event_id));
    if (r->grant_id && *r->grant_id)
        json_object_set_new(ev, "additionalEventData", json_pack("{s:s}", "grantId", r->grant_id));
    json_object_set_new(ev, "readOnly", json_boolean(r->read_only));
    json_object_set_new(ev, "resources", res);
    json_object_set_new(ev, "eventType", json_string("AwsApiCall"));
    json_object_set_new(ev, "managementEvent", json_boolean(r->management));
    json_object_set_new(ev, "recipientAccountId", json_string(r->recipient_account));
    json_object_set_new(ev, "eventCategory", json_string(r->event_category));
    text = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(ev);
    return text;
}

static int cases, failures_expected;

static void same(const struct kms_record *r)
{
    char *want = old_text(r), *got = NULL;
    size_t n = 0;
    int rc = kms_record_text(r, &got, &n);
    cases++;
    if (!want) {
        failures_expected++;
        CHECK(rc == -1);
        CHECK(got == NULL);
        return;
    }
    if (rc || strcmp(want, got)) {
        fprintf(stderr, "want: %s\ngot:  %s\n", want, rc ? "(failed)" : got);
        CHECK(0);
    }
    CHECK_EQ_INT(n, strlen(want));
    free(want);
    free(got);
}

static const kms_unix_peer PEER = {1000, 100, 4242};

static struct kms_record base(void)
{
    static const struct kms_record_resource res = {"111122223333", "AWS::KMS::Key",
                                                   "arn:aws:kms:eu-west-1:111122223333:key/k1"};
    struct kms_record r = {0};
    r.event_time = "2026-12-03T18:00:00Z";
    r.event_source = "kms.amazonaws.com";
    r.event_name = "GenerateDataKey";
    r.region = "eu-west-1";
    r.source_ip = "127.0.0.1:5555";
    r.user_agent = "aws-cli/2.0 Python/3.11";
    r.ui_type = "IAMUser";
    r.principal_id = "AKIAEXAMPLE";
    r.arn = "arn:aws:iam::111122223333:user/alice";
    r.account_id = "111122223333";
    r.access_key_id = "AKIAEXAMPLE";
    r.user_name = "alice";
    r.request_id = "0b6c3f2e-9a0d-4c1e-8b7a-5d4f3e2c1b0a";
    r.event_id = "1c7d4f3e-0b1e-4d2f-9c8b-6e5f4d3c2b1a";
    r.read_only = false;
    r.management = true;
    r.resources = &res;
    r.nresources = 1;
    r.recipient_account = "111122223333";
    r.event_category = "Management";
    return r;
}

/* Strings a client can put into a record: every class of byte jansson escapes, or refuses. */
static const char *const ODD[] = {
    "plain", "", "quote\" back\\slash /slash", "ctl \x01\x02\x1f \b\f\n\r\t end", "del \x7f",
    "utf8 \xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91 (2, 3, 4 bytes)", "max \xf4\x8f\xbf\xbf",
    "bad lead \x80", "overlong \xc0\xaf", "overlong3 \xe0\x80\xaf", "surrogate \xed\xa0\x80",
    "past max \xf4\x90\x80\x80", "cut \xe2\x82", "lead f5 \xf5\x80\x80\x80", "<script>&amp;</script>"};
#define NODD (sizeof ODD / sizeof ODD[0])

int main(void)
{
    json_error_t err;
    json_t *req, *resp, *who, *odd_ctx;
    struct kms_record r;

    /* the lists record.c bsearches are sorted and carry nothing secret */
    for (size_t i = 1; i < KMS_RECORD_REQ_NFIELDS; i++)
        CHECK(strcmp(KMS_RECORD_REQ_FIELDS[i - 1], KMS_RECORD_REQ_FIELDS[i]) < 0);
    for (size_t i = 1; i < KMS_RECORD_RESP_NFIELDS; i++)
        CHECK(strcmp(KMS_RECORD_RESP_FIELDS[i - 1], KMS_RECORD_RESP_FIELDS[i]) < 0);
    for (size_t i = 0; i < KMS_RECORD_REQ_NFIELDS; i++)
        CHECK(!strstr(KMS_RECORD_REQ_FIELDS[i], "Plaintext") && !strstr(KMS_RECORD_REQ_FIELDS[i], "Password") &&
              !strstr(KMS_RECORD_REQ_FIELDS[i], "Blob") && !strstr(KMS_RECORD_REQ_FIELDS[i], "Secret") &&
              strcmp(KMS_RECORD_REQ_FIELDS[i], "Message"));

    req = json_loads("{\"KeyId\":\"k1\",\"KeySpec\":\"AES_256\",\"Plaintext\":\"c2VjcmV0\","
                     "\"EncryptionContext\":{\"purpose\":\"bench\",\"n\":\"7\",\"\\u00e9\\u20ac\":\"\\u0001\\\"\\\\\"},"
                     "\"NumberOfBytes\":32,\"GrantTokens\":[\"t\"],\"Tags\":[{\"TagKey\":\"b\",\"TagValue\":\"1\"},"
                     "{\"TagValue\":\"2\",\"TagKey\":\"a\"}],\"DryRun\":false,\"ValidTo\":1.5e9,"
                     "\"Constraints\":{\"EncryptionContextSubset\":{\"z\":\"1\",\"a\":\"2\"}}}",
                     0, &err);
    resp = json_loads("{\"KeyId\":\"arn:aws:kms:eu-west-1:111122223333:key/k1\",\"Plaintext\":\"c2VjcmV0\","
                      "\"CiphertextBlob\":\"AAAA\",\"KeyMetadata\":{\"KeyId\":\"k1\",\"Enabled\":true,"
                      "\"CreationDate\":1700000000.25,\"Description\":\"d\\n\"}}",
                      0, &err);
    who = json_loads("{\"type\":\"IAMUser\",\"arn\":\"arn:aws:iam::444455556666:user/bob\",\"z\":[1,{\"b\":null,"
                     "\"a\":true}],\"accountId\":\"444455556666\"}",
                     0, &err);
    CHECK(req && resp && who);

    /* each optional member on and off */
    for (int mask = 0; mask < 1 << 9; mask++) {
        r = base();
        if (mask & 1)
            r.access_key_id = NULL;
        if (mask & 2)
            r.user_name = NULL;
        if (mask & 4)
            r.unix_peer = &PEER;
        if (mask & 8)
            r.invoked_by = "ec2.amazonaws.com";
        if (mask & 16) {
            r.error_code = "AccessDeniedException";
            r.error_message = mask & 32 ? "User: arn:aws:iam::111122223333:user/alice is not authorized" : NULL;
            r.error_message_len = r.error_message ? strlen(r.error_message) : 0;
        }
        if (mask & 64)
            r.grant_id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        if (mask & 128) {
            r.request = (struct kms_record_part){req, KMS_RECORD_REQ_FIELDS, KMS_RECORD_REQ_NFIELDS};
            r.response = (struct kms_record_part){resp, KMS_RECORD_RESP_FIELDS, KMS_RECORD_RESP_NFIELDS};
        }
        if (mask & 256) {
            r.nresources = 0;
            r.read_only = true;
            r.management = false;
            r.event_category = "Data";
        }
        same(&r);
    }
    /* a request with none of the fields, and one that is not an object: null */
    r = base();
    odd_ctx = json_loads("{\"Plaintext\":\"eA==\"}", 0, &err);
    r.request = (struct kms_record_part){odd_ctx, KMS_RECORD_REQ_FIELDS, KMS_RECORD_REQ_NFIELDS};
    same(&r);
    json_decref(odd_ctx);
    odd_ctx = json_loads("[1,2]", 0, &err);
    r.request = (struct kms_record_part){odd_ctx, KMS_RECORD_REQ_FIELDS, KMS_RECORD_REQ_NFIELDS};
    same(&r);
    json_decref(odd_ctx);

    /* another service's record: its identity, its resource with members missing, whole trees copied */
    for (int mask = 0; mask < 8; mask++) {
        static const struct kms_record_resource sres[] = {{NULL, "AWS::EC2::Volume", "arn:aws:ec2:::volume/vol-1"},
                                                          {"111122223333", NULL, NULL}};
        r = base();
        r.event_source = "ec2.amazonaws.com";
        r.event_name = "CreateVolume";
        r.identity = mask & 1 ? who : NULL;
        r.resources = &sres[mask & 2 ? 1 : 0];
        r.request = (struct kms_record_part){mask & 4 ? req : NULL, NULL, 0};
        r.response = (struct kms_record_part){mask & 4 ? resp : NULL, NULL, 0};
        same(&r);
    }

    /* odd strings in every member a client or a configuration can reach */
    for (size_t i = 0; i < NODD; i++) {
        char ctx[256];
        json_t *ec;
        struct kms_record_resource bad = {"111122223333", ODD[i], "arn"};
        r = base();
        r.user_agent = ODD[i];
        same(&r);
        r = base();
        r.error_code = "KMSInvalidStateException";
        r.error_message = ODD[i];
        r.error_message_len = strlen(ODD[i]);
        same(&r);
        /* cut inside a character, as the 512-byte bound can */
        r.error_message_len = r.error_message_len ? r.error_message_len - 1 : 0;
        same(&r);
        r = base();
        r.source_ip = ODD[i];
        same(&r);
        r = base();
        r.account_id = ODD[i];
        r.arn = ODD[i];
        same(&r);
        r = base();
        r.region = ODD[i];
        same(&r);
        r = base();
        r.grant_id = ODD[i];
        same(&r);
        r = base();
        r.user_name = ODD[i];
        r.access_key_id = ODD[i];
        r.invoked_by = ODD[i];
        same(&r);
        r = base();
        r.recipient_account = ODD[i];
        same(&r);
        r = base();
        r.resources = &bad;
        same(&r);
        /* in the encryption context (only UTF-8 passes the request's parser) */
        if (!kms_record_utf8(ODD[i], strlen(ODD[i])))
            continue;
        ec = json_object();
        json_object_set_new(ec, ODD[i], json_string(ODD[i]));
        json_object_set_new(ec, "k", json_string(ODD[i]));
        snprintf(ctx, sizeof ctx, "%s", ODD[i]);
        json_t *rq = json_pack("{s:s, s:o, s:s}", "KeyId", ctx, "EncryptionContext", ec, "Description", ctx);
        CHECK(rq);
        r = base();
        r.request = (struct kms_record_part){rq, KMS_RECORD_REQ_FIELDS, KMS_RECORD_REQ_NFIELDS};
        same(&r);
        json_decref(rq);
    }
    /* nesting past the fast dump's 32 levels: jansson's text for that part */
    {
        json_t *deep = json_string("bottom"), *rq;
        for (int i = 0; i < 40; i++)
            deep = json_pack("{s:o}", "d", deep);
        rq = json_pack("{s:o}", "Constraints", deep);
        r = base();
        r.request = (struct kms_record_part){rq, KMS_RECORD_REQ_FIELDS, KMS_RECORD_REQ_NFIELDS};
        same(&r);
        json_decref(rq);
    }
    /* the secret-bearing members of the request and response are not copied */
    {
        char *t = NULL;
        size_t n;
        r = base();
        r.request = (struct kms_record_part){req, KMS_RECORD_REQ_FIELDS, KMS_RECORD_REQ_NFIELDS};
        r.response = (struct kms_record_part){resp, KMS_RECORD_RESP_FIELDS, KMS_RECORD_RESP_NFIELDS};
        CHECK(!kms_record_text(&r, &t, &n));
        CHECK(!strstr(t, "c2VjcmV0") && !strstr(t, "AAAA") && !strstr(t, "GrantTokens"));
        CHECK(strstr(t, "\"encryptionContext\":{"));
        free(t);
    }
    CHECK(failures_expected > 0 && failures_expected < cases);
    printf("%d records compared, %d refused by both\n", cases, failures_expected);
    json_decref(req);
    json_decref(resp);
    json_decref(who);
    TEST_DONE();
}
