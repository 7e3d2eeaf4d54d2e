/*
 * http.c — the HTTP(S) backend of kmsclient: the AWS KMS JSON protocol over libcurl with SigV4
 * signing (one POST: common/httpreq.h), so envelopefs can use AWS KMS, moto, LocalStack or `envelopefs kms serve`.
 *
 * Credentials come from kmsc_opts, else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN,
 * else the profile (opts, AWS_PROFILE, "default") in AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials.
 * Region: opts, AWS_REGION, AWS_DEFAULT_REGION, the profile in AWS_CONFIG_FILE or ~/.aws/config,
 * else us-east-1. Connections are reused through a small pool of curl handles. ThrottlingException,
 * 5xx and transport errors are retried with exponential backoff and full jitter, a bounded number of
 * times.
 *
 * "unix:PATH" (or "unix:///PATH"; PATH absolute) is HTTP over a Unix socket (`envelopefs kms serve
 * --unix`): requests are signed when credentials are found as above, and sent unsigned otherwise, for
 * a server that knows the caller by its uid (--unix-principal).
 *
 * With kmsc_opts.via_service the signed header X-Envelopefs-Via-Service names the service the
 * call is made through (NAME.REGION.amazonaws.com).
 */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "backend.h"
#include "common/httpreq.h"

#define POOL 16

typedef struct http_impl {
    char *endpoint;       /* URL to POST to */
    char *host;           /* Host header value */
    char *region;
    char *access_key;
    char *secret;         /* sodium_malloc'd */
    char *token;
    char *unix_path;      /* HTTP over this Unix socket, or NULL */
    char *via;            /* X-Envelopefs-Via-Service, or NULL */
    long timeout_ms;
    int max_retries;
    bool insecure;
    char *ca_file;
    pthread_mutex_t lock;
    CURL *idle[POOL];
    int n_idle;
    char account[16];     /* the caller's account, once learned (http_account) */
} http_impl;

/* ---- configuration files -------------------------------------------------------------------- */

/* Value of `key` in [section] of an INI file; malloc'd or NULL. */
static char *ini_get(const char *path, const char *section, const char *key)
{
    FILE *f = fopen(path, "re");
    char line[1024], cur[256] = "";
    char *out = NULL;
    if (!f)
        return NULL;
    while (fgets(line, sizeof line, f)) {
        char *p = line, *e, *eq;
        while (isspace((unsigned char)*p))
            p++;
        e = p + strlen(p);
        while (e > p && isspace((unsigned char)e[-1]))
            *--e = 0;
        if (*p == '#' || *p == ';' || !*p)
            continue;
        if (*p == '[') {
            char *close = strchr(p, ']');
            if (close) {
                *close = 0;
                snprintf(cur, sizeof cur, "%s", p + 1);
            }
            continue;
        }
        eq = strchr(p, '=');
        if (!eq || strcmp(cur, section))
            continue;
        *eq = 0;
        e = eq;
        while (e > p && isspace((unsigned char)e[-1]))
            *--e = 0;
        if (strcmp(p, key))
            continue;
        p = eq + 1;
        while (isspace((unsigned char)*p))
            p++;
        free(out);
        out = strdup(p);
    }
    sodium_memzero(line, sizeof line);
    fclose(f);
    return out;
}

static char *aws_file(const char *env, const char *name)
{
    const char *v = getenv(env), *home = getenv("HOME");
    char *p = NULL;
    if (v && *v)
        return strdup(v);
    if (asprintf(&p, "%s/.aws/%s", home ? home : "", name) < 0)
        return NULL;
    return p;
}

static char *env_dup(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? strdup(v) : NULL;
}

/* ---- one attempt ---------------------------------------------------------------------------- */

static CURL *take(http_impl *h)
{
    CURL *c = NULL;
    pthread_mutex_lock(&h->lock);
    if (h->n_idle)
        c = h->idle[--h->n_idle];
    pthread_mutex_unlock(&h->lock);
    return c ? c : efs_http_handle(); /* efs_http_post_json resets a reused one */
}

static void give(http_impl *h, CURL *c)
{
    pthread_mutex_lock(&h->lock);
    if (h->n_idle < POOL) {
        h->idle[h->n_idle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&h->lock);
    if (c)
        curl_easy_cleanup(c);
}

static void set_err(kmsc_error *err, kms_err code, const char *name, const char *msg)
{
    err->code = code;
    snprintf(err->name, sizeof err->name, "%s", name ? name : kms_err_name(code));
    snprintf(err->message, sizeof err->message, "%s", msg ? msg : "");
}

/* One attempt. Returns KMS_OK, a service error (err filled), or KMS_ERR_TRANSPORT. *status set. */
static kms_err attempt(http_impl *h, const char *operation, const char *req, size_t req_len, char **resp,
                       size_t *resp_len, kmsc_error *err, long *status)
{
    char target[128];
    sigv4_header extra[2];
    size_t n_extra = 0;
    efs_http_answer ans;
    efs_http_post rq;
    CURL *c;
    kms_err e;
    int rc;

    *status = 0;
    snprintf(target, sizeof target, "TrentService.%s", operation);
    if (h->token)
        extra[n_extra++] = (sigv4_header){"X-Amz-Security-Token", h->token};
    if (h->via)
        extra[n_extra++] = (sigv4_header){"X-Envelopefs-Via-Service", h->via};
    /* without an access key unsigned: a Unix socket whose server knows us by our uid */
    rq = (efs_http_post){.url = h->endpoint, .host = h->host, .unix_path = h->unix_path, .target = target,
                         .extra = extra, .n_extra = n_extra, .access_key = h->access_key, .secret = h->secret,
                         .region = h->region, .service = "kms", .body = req, .body_len = req_len,
                         .timeout_ms = h->timeout_ms, .keepalive = true, .insecure_tls = h->insecure,
                         .ca_file = h->ca_file};
    if (!(c = take(h)))
        return KMS_ERR_NOMEM;
    rc = efs_http_post_json(c, &rq, &ans);
    give(h, c);
    if (rc == -ENOMEM)
        return KMS_ERR_NOMEM;
    if (rc == -EIO) {
        set_err(err, KMS_ERR_TRANSPORT, NULL, ans.error);
        return KMS_ERR_TRANSPORT;
    }
    if (rc) {
        set_err(err, KMS_ERR_INTERNAL, NULL, "cannot sign the request");
        return KMS_ERR_INTERNAL;
    }
    *status = ans.status;
    if (*status == 200) {
        if (!ans.body) {
            *resp = strdup("{}");
            *resp_len = 2;
            return *resp ? KMS_OK : KMS_ERR_NOMEM;
        }
        *resp = ans.body; /* the caller frees it wiped (kmsc_response_free) */
        *resp_len = ans.len;
        ans.body = NULL;
        efs_http_answer_clear(&ans);
        return KMS_OK;
    }
    {
        char type[sizeof err->name], msg[sizeof err->message];
        if (efs_http_aws_error(&ans, type, sizeof type, msg, sizeof msg)) {
            e = kms_err_from_name(type);
            set_err(err, e, type, msg);
        } else {
            char m[128];
            e = *status >= 500 ? KMS_ERR_INTERNAL : KMS_ERR_REMOTE;
            snprintf(m, sizeof m, "HTTP status %ld without an error body", *status);
            set_err(err, e, NULL, m);
        }
    }
    efs_http_answer_clear(&ans);
    return e;
}

static kms_err http_call(void *p, const char *operation, const char *req, size_t req_len, char **resp,
                         size_t *resp_len, kmsc_error *err)
{
    http_impl *h = p;
    kms_err e = KMS_OK;
    for (int i = 0; i <= h->max_retries; i++) {
        long status;
        e = attempt(h, operation, req, req_len, resp, resp_len, err, &status);
        if (!(e == KMS_ERR_THROTTLING || e == KMS_ERR_TRANSPORT || status >= 500))
            return e;
        if (i < h->max_retries) {
            /* full jitter: sleep uniformly in [0, min(cap, base·2^i)) */
            uint32_t cap_ms = 50u << (i < 6 ? i : 6);
            if (cap_ms > 2000)
                cap_ms = 2000;
            usleep(1000u * randombytes_uniform(cap_ms + 1));
        }
    }
    return e;
}

static void http_free(void *p)
{
    http_impl *h = p;
    if (!h)
        return;
    for (int i = 0; i < h->n_idle; i++)
        curl_easy_cleanup(h->idle[i]);
    free(h->endpoint);
    free(h->host);
    free(h->region);
    free(h->access_key);
    if (h->secret)
        sodium_free(h->secret);
    if (h->token) {
        sodium_memzero(h->token, strlen(h->token));
        free(h->token);
    }
    free(h->ca_file);
    free(h->unix_path);
    free(h->via);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

/* The caller's account, learned once per process and identity (endpoint, socket, access key): every client
 * a command opens (the verb's, its audit record's, a daemon's after its fork) asks the service once, not
 * each time. An identity's account cannot change. */
static pthread_mutex_t known_mu = PTHREAD_MUTEX_INITIALIZER;
static char known_who[1024], known_account[16];

static bool identity_of(const http_impl *h, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s\n%s\n%s", h->endpoint, h->unix_path ? h->unix_path : "",
                     h->access_key ? h->access_key : "");
    return n > 0 && (size_t)n < cap;
}

static const char *http_account(void *p)
{
    http_impl *h = p;
    char who[sizeof known_who];
    if (!h->account[0] && identity_of(h, who, sizeof who)) {
        pthread_mutex_lock(&known_mu);
        if (known_account[0] && !strcmp(who, known_who))
            memcpy(h->account, known_account, sizeof h->account);
        pthread_mutex_unlock(&known_mu);
    }
    return h->account[0] ? h->account : NULL;
}

static void http_remember_account(void *p, const char *account)
{
    http_impl *h = p;
    char who[sizeof known_who];
    if (!identity_of(h, who, sizeof who) || strlen(account) >= sizeof known_account)
        return;
    pthread_mutex_lock(&known_mu);
    memcpy(known_who, who, sizeof who);
    snprintf(known_account, sizeof known_account, "%s", account);
    pthread_mutex_unlock(&known_mu);
}

static const char *http_access_key(void *p) { return ((http_impl *)p)->access_key; }
static const char *http_region(void *p) { return ((http_impl *)p)->region; }

static const kmsc_backend_ops HTTP_OPS = {"http",          http_call,       http_free,  http_account,
                                          http_remember_account, http_access_key, http_region};

kms_err kmsc_backend_http_new(const kmsc_opts *opts, void **impl, const kmsc_backend_ops **ops, char **errmsg)
{
    http_impl *h;
    const char *url = opts->url, *rest;
    char *profile, *cred_file, *cfg_file, *ak = NULL, *sk = NULL, *tok = NULL;
    size_t hostlen;

    h = calloc(1, sizeof *h);
    if (!h)
        return KMS_ERR_NOMEM;
    pthread_mutex_init(&h->lock, NULL);
    if (!strncmp(url, "unix:", 5)) {
        const char *path = !strncmp(url, "unix://", 7) ? url + 7 : url + 5;
        if (path[0] != '/') {
            if (errmsg)
                *errmsg = strdup("a unix: key-service URL names an absolute socket path: unix:/run/kms.sock");
            http_free(h);
            return KMS_ERR_VALIDATION;
        }
        h->unix_path = strdup(path);
        url = "http://localhost";
        if (!h->unix_path) {
            http_free(h);
            return KMS_ERR_NOMEM;
        }
    }
    rest = strstr(url, "://") + 3;
    hostlen = strcspn(rest, "/");
    h->host = strndup(rest, hostlen);
    if (asprintf(&h->endpoint, "%.*s/", (int)(rest - url + (ptrdiff_t)hostlen), url) < 0)
        h->endpoint = NULL;
    h->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 10000;
    h->max_retries = opts->max_retries >= 0 ? opts->max_retries : 4;
    h->insecure = opts->insecure_tls;
    h->ca_file = opts->ca_file ? strdup(opts->ca_file) : NULL;
    profile = opts->profile ? strdup(opts->profile) : env_dup("AWS_PROFILE");
    if (!profile)
        profile = strdup("default");
    cred_file = aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    cfg_file = aws_file("AWS_CONFIG_FILE", "config");
    if (opts->access_key_id && opts->secret_access_key) {
        ak = strdup(opts->access_key_id);
        sk = strdup(opts->secret_access_key);
        tok = opts->session_token ? strdup(opts->session_token) : NULL;
    } else if (getenv("AWS_ACCESS_KEY_ID") && getenv("AWS_SECRET_ACCESS_KEY")) {
        ak = env_dup("AWS_ACCESS_KEY_ID");
        sk = env_dup("AWS_SECRET_ACCESS_KEY");
        tok = env_dup("AWS_SESSION_TOKEN");
    } else if (cred_file && profile) {
        ak = ini_get(cred_file, profile, "aws_access_key_id");
        sk = ini_get(cred_file, profile, "aws_secret_access_key");
        tok = ini_get(cred_file, profile, "aws_session_token");
    }
    h->region = opts->region ? strdup(opts->region) : env_dup("AWS_REGION");
    if (!h->region)
        h->region = env_dup("AWS_DEFAULT_REGION");
    if (!h->region && cfg_file && profile) {
        char *sec = NULL;
        if (!strcmp(profile, "default") || asprintf(&sec, "profile %s", profile) < 0)
            sec = NULL;
        h->region = ini_get(cfg_file, sec ? sec : "default", "region");
        free(sec);
    }
    if (!h->region)
        h->region = strdup("us-east-1");
    free(profile);
    free(cred_file);
    free(cfg_file);
    if ((!ak || !sk || !*ak || !*sk) && h->unix_path) { /* unsigned over the socket */
        free(ak);
        if (sk) {
            sodium_memzero(sk, strlen(sk));
            free(sk);
        }
        free(tok);
        ak = sk = tok = NULL;
    } else if (!ak || !sk || !*ak || !*sk) {
        if (errmsg)
            *errmsg = strdup("no AWS credentials for the key service: set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials");
        free(ak);
        if (sk) {
            sodium_memzero(sk, strlen(sk));
            free(sk);
        }
        free(tok);
        http_free(h);
        return KMS_ERR_MISSING_AUTH;
    }
    h->access_key = ak;
    if (sk) {
        h->secret = sodium_malloc(strlen(sk) + 1);
        if (h->secret)
            memcpy(h->secret, sk, strlen(sk) + 1);
        sodium_memzero(sk, strlen(sk));
        free(sk);
    }
    h->token = tok;
    if (opts->via_service && *opts->via_service &&
        asprintf(&h->via, "%s.%s.amazonaws.com", opts->via_service, h->region) < 0) {
        http_free(h);
        return KMS_ERR_NOMEM;
    }
    if (!h->host || !h->endpoint || !h->region || (ak && !h->secret) || !*h->host) {
        http_free(h);
        if (errmsg)
            *errmsg = strdup("malformed key-service URL");
        return KMS_ERR_VALIDATION;
    }
    *impl = h;
    *ops = &HTTP_OPS;
    return KMS_OK;
}
