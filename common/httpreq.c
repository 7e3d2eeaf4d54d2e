/*
 * httpreq.c — one signed AWS JSON-protocol POST over libcurl (httpreq.h): the four headers every such
 * request carries (Content-Type application/x-amz-json-1.1, Host, X-Amz-Date, X-Amz-Target) and the
 * caller's extra ones, SigV4-signed over the body when there are credentials, the handle's options
 * (timeouts, protocols, TLS, Unix socket), and the answer buffered up to EFS_HTTP_MAX_BODY, each grown copy
 * wiped. Everything about the answer's meaning is left to the caller.
 */
#include "common/httpreq.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

struct ctx {
    efs_http_answer *ans;
    const char *capture;
    size_t capture_len;
};

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

CURL *efs_http_handle(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, global_init);
    return curl_easy_init();
}

void efs_http_answer_clear(efs_http_answer *ans)
{
    if (!ans)
        return;
    if (ans->body) {
        sodium_memzero(ans->body, ans->len);
        free(ans->body);
    }
    sodium_memzero(ans, sizeof *ans);
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    efs_http_answer *a = ((struct ctx *)ud)->ans;
    size_t n = size * nmemb;
    char *np;
    if (a->len + n > EFS_HTTP_MAX_BODY)
        return 0; /* a JSON-protocol answer is small; refuse a runaway body */
    np = malloc(a->len + n + 1); /* not realloc: the old block may hold key material; wiped here */
    if (!np)
        return 0;
    if (a->body) {
        memcpy(np, a->body, a->len);
        sodium_memzero(a->body, a->len);
        free(a->body);
    }
    memcpy(np + a->len, ptr, n);
    a->body = np;
    a->len += n;
    a->body[a->len] = 0;
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct ctx *x = ud;
    size_t n = size * nmemb, hl = x->capture_len;
    if (n > hl + 1 && !strncasecmp(ptr, x->capture, hl) && ptr[hl] == ':') {
        const char *v = ptr + hl + 1, *end = ptr + n;
        size_t l;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        l = 0;
        while (v + l < end && v[l] != '\r' && v[l] != '\n')
            l++;
        while (l && (v[l - 1] == ' ' || v[l - 1] == '\t'))
            l--;
        if (l < sizeof x->ans->captured) {
            memcpy(x->ans->captured, v, l);
            x->ans->captured[l] = 0;
        } else {
            x->ans->captured[0] = 0;
        }
    }
    return n;
}

/* Append "Name: value" to *hl: 0, -EINVAL (longer than the line buffer) or -ENOMEM. */
static int add_header(struct curl_slist **hl, char *line, size_t cap, const char *name, const char *value)
{
    struct curl_slist *n;
    int w = snprintf(line, cap, "%s: %s", name, value);
    if (w < 0 || (size_t)w >= cap)
        return -EINVAL;
    n = curl_slist_append(*hl, line);
    if (!n)
        return -ENOMEM;
    *hl = n;
    return 0;
}

int efs_http_post_json(CURL *c, const efs_http_post *rq, efs_http_answer *ans)
{
    char date[17], auth[1024], line[4096];
    sigv4_header sh[4 + EFS_HTTP_MAX_EXTRA];
    struct ctx x = {ans, rq->capture_header, rq->capture_header ? strlen(rq->capture_header) : 0};
    struct curl_slist *hl = NULL;
    size_t nh = 0;
    CURL *own = NULL;
    CURLcode cc;
    int rc = 0;

    memset(ans, 0, sizeof *ans);
    if (rq->n_extra > EFS_HTTP_MAX_EXTRA) {
        snprintf(ans->error, sizeof ans->error, "too many extra headers");
        return -EINVAL;
    }
    sigv4_format_date((int64_t)time(NULL), date);
    auth[0] = 0;
    sh[nh++] = (sigv4_header){"Content-Type", "application/x-amz-json-1.1"};
    sh[nh++] = (sigv4_header){"Host", rq->host};
    sh[nh++] = (sigv4_header){"X-Amz-Date", date};
    sh[nh++] = (sigv4_header){"X-Amz-Target", rq->target};
    for (size_t i = 0; i < rq->n_extra; i++)
        sh[nh++] = rq->extra[i];
    if (rq->access_key) {
        sigv4_request r = {.method = "POST", .path = "/", .query = "", .headers = sh, .n_headers = nh,
                           .payload = (const uint8_t *)rq->body, .payload_len = rq->body_len};
        sigv4_auth a;
        if (sigv4_sign(&r, rq->access_key, rq->secret, date, rq->region, rq->service, auth, sizeof auth) ||
            sigv4_parse_auth(auth, &a) ||
            (rq->want_signing_key &&
             sigv4_signing_key(rq->secret, a.date, rq->region, rq->service, ans->signing_key))) {
            sodium_memzero(&a, sizeof a);
            snprintf(ans->error, sizeof ans->error, "cannot sign the request");
            rc = -EINVAL;
            goto out;
        }
        snprintf(ans->signature, sizeof ans->signature, "%s", a.signature);
        sodium_memzero(&a, sizeof a);
    }
    /* On the wire in this order: the four, Authorization, the extra ones, and no "Expect: 100-continue". */
    for (size_t i = 0; i < nh && !rc; i++) {
        rc = add_header(&hl, line, sizeof line, sh[i].name, sh[i].value);
        if (!rc && i == 3 && auth[0])
            rc = add_header(&hl, line, sizeof line, "Authorization", auth);
    }
    if (!rc) {
        struct curl_slist *n = curl_slist_append(hl, "Expect:");
        if (n)
            hl = n;
        else
            rc = -ENOMEM;
    }
    if (rc == -EINVAL)
        snprintf(ans->error, sizeof ans->error, "a request header is longer than %zu bytes", sizeof line);
    if (rc)
        goto out;
    rc = -ENOMEM;
    if (!c && !(c = own = efs_http_handle()))
        goto out;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, rq->url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)rq->body_len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    if (rq->capture_header) {
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
    }
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, rq->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, rq->timeout_ms < 5000 ? rq->timeout_ms : 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (rq->keepalive)
        curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    if (rq->user_agent)
        curl_easy_setopt(c, CURLOPT_USERAGENT, rq->user_agent);
    if (rq->unix_path)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, rq->unix_path);
    if (rq->insecure_tls) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (rq->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, rq->ca_file);
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        snprintf(ans->error, sizeof ans->error, "%s", curl_easy_strerror(cc));
        rc = -EIO;
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &ans->status);
    rc = 0;
out:
    if (own)
        curl_easy_cleanup(own);
    else if (c) /* the handle keeps option pointers into this call's memory: drop them */
        curl_easy_reset(c);
    curl_slist_free_all(hl);
    sodium_memzero(auth, sizeof auth);
    sodium_memzero(line, sizeof line);
    if (rc == -ENOMEM && !ans->error[0])
        snprintf(ans->error, sizeof ans->error, "out of memory");
    if (rc) {
        char why[sizeof ans->error];
        memcpy(why, ans->error, sizeof why);
        efs_http_answer_clear(ans);
        memcpy(ans->error, why, sizeof why);
    }
    return rc;
}

bool efs_http_aws_error(const efs_http_answer *ans, char *type, size_t tcap, char *msg, size_t mcap)
{
    json_t *o = ans->body ? json_loadb(ans->body, ans->len, 0, NULL) : NULL;
    const char *t = json_string_value(json_object_get(o, "__type"));
    const char *m = json_string_value(json_object_get(o, "message"));
    const char *hash = t ? strrchr(t, '#') : NULL;
    if (!m)
        m = json_string_value(json_object_get(o, "Message"));
    snprintf(type, tcap, "%s", hash ? hash + 1 : t ? t : "");
    snprintf(msg, mcap, "%s", m ? m : "");
    json_decref(o);
    return t != NULL;
}
