/*
 * cli_aws.c — the AWS CLI's output and error conventions (cli_aws.h).
 */
#include "cli_aws.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *cli_query_path(json_t *root, const char *path)
{
    json_t *cur = root;
    const char *p = path;
    while (cur && *p) {
        size_t n = strcspn(p, ".[");
        if (n) {
            char name[128];
            if (n >= sizeof name)
                return NULL;
            memcpy(name, p, n);
            name[n] = 0;
            cur = json_object_get(cur, name);
            p += n;
        }
        while (cur && *p == '[') {
            char *end;
            long idx = strtol(p + 1, &end, 10);
            if (*end != ']' || end == p + 1) /* [] and [*] are projections (query_projection), not indexes */
                return NULL;
            cur = json_array_get(cur, idx < 0 ? json_array_size(cur) + (size_t)idx : (size_t)idx);
            p = end + 1;
        }
        if (*p == '.')
            p++;
    }
    return cur;
}

static json_t *query_projection_of(json_t *root, const char *query);

/* The first projection in a query, "[*]" or JMESPath's flatten "[]" (*len 3 or 2), or NULL. */
static const char *projection_at(const char *query, size_t *len)
{
    const char *star = strstr(query, "[*]"), *flat = strstr(query, "[]");
    if (flat && (!star || flat < star)) {
        *len = 2;
        return flat;
    }
    *len = 3;
    return star;
}

/* Append what rest selects of x to out; splice: a list it selects contributes its elements (a later [] of
 * JMESPath flattens what the projections before it made). */
static void project_one(json_t *out, json_t *x, const char *rest, bool splice)
{
    json_t *y = *rest ? query_projection_of(x, rest) : json_incref(x);
    if (y && splice && json_is_array(y))
        json_array_extend(out, y);
    else if (y && !json_is_null(y))
        json_array_append(out, y);
    json_decref(y);
}

/* A query with a projection, Items[*].Field or Items[].Field: a new array of Field of every item (a new
 * reference); [] flattens first, as JMESPath does: an item that is itself a list contributes its elements. */
static json_t *query_projection_of(json_t *root, const char *query)
{
    size_t len, i, j;
    const char *at = projection_at(query, &len);
    bool splice;
    char head[256];
    json_t *arr, *out, *x, *y;
    if (!at)
        return json_incref(cli_query_path(root, query));
    if ((size_t)(at - query) >= sizeof head)
        return NULL;
    memcpy(head, query, (size_t)(at - query));
    head[at - query] = 0;
    arr = head[0] ? cli_query_path(root, head) : root;
    if (!json_is_array(arr) || !(out = json_array()))
        return NULL;
    at += len;
    if (*at == '.')
        at++;
    splice = strstr(at, "[]") != NULL;
    json_array_foreach(arr, i, x) {
        if (len == 2 && json_is_array(x))
            json_array_foreach(x, j, y) project_one(out, y, at, splice);
        else
            project_one(out, x, at, splice);
    }
    return out;
}

int cli_print_json(json_t *root, const char *query, const char *output, const char *who)
{
    size_t plen;
    json_t *proj = query && projection_at(query, &plen) ? query_projection_of(root, query) : NULL;
    json_t *shown = proj ? proj : query ? cli_query_path(root, query) : root;
    bool text = output && !strcmp(output, "text");
    if (!shown || json_is_null(shown)) {
        /* like `aws --query`: a missing field prints None (text) or null (json) */
        printf("%s\n", text ? "None" : "null");
    } else if (text && json_is_string(shown)) {
        printf("%s\n", json_string_value(shown));
    } else if (text && json_is_integer(shown)) {
        printf("%lld\n", (long long)json_integer_value(shown));
    } else if (text && json_is_boolean(shown)) {
        printf("%s\n", json_is_true(shown) ? "True" : "False");
    } else if (text && json_is_array(shown) && !json_array_size(shown)) {
        /* an empty list prints nothing */
    } else if (text && json_is_array(shown)) {
        /* a list of scalars prints tab-separated, as the AWS CLI does */
        size_t i;
        json_t *x;
        json_array_foreach(shown, i, x) {
            if (json_is_string(x))
                printf("%s%s", i ? "\t" : "", json_string_value(x));
            else if (json_is_integer(x))
                printf("%s%lld", i ? "\t" : "", (long long)json_integer_value(x));
            else {
                char *t = json_dumps(x, JSON_COMPACT | JSON_ENCODE_ANY);
                printf("%s%s", i ? "\t" : "", t ? t : "");
                free(t);
            }
        }
        printf("\n");
    } else if (json_is_object(shown) && json_object_size(shown) == 0 && !query) {
        /* like the AWS CLI: operations with an empty result print nothing */
    } else {
        json_dumpf(shown, stdout, JSON_INDENT(4) | JSON_ENCODE_ANY);
        printf("\n");
    }
    json_decref(proj);
    if (fflush(stdout)) {
        fprintf(stderr, "%s: writing the output: %s\n", who, strerror(errno));
        return 1;
    }
    return 0;
}

static char last_code[96], last_message[512];

void cli_last_service_error(const char **code, const char **message)
{
    *code = last_code[0] ? last_code : NULL;
    *message = last_message;
}

int cli_service_error(const char *code, const char *op, const char *message)
{
    snprintf(last_code, sizeof last_code, "%s", code ? code : "InternalError");
    snprintf(last_message, sizeof last_message, "%s", message ? message : "");
    fprintf(stderr, "An error occurred (%s) when calling the %s operation%s%s\n", code, op,
            message && *message ? ": " : "", message ? message : "");
    return CLI_EXIT_SERVICE;
}
