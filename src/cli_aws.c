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
            if (*end != ']')
                return NULL;
            cur = json_array_get(cur, idx < 0 ? json_array_size(cur) + (size_t)idx : (size_t)idx);
            p = end + 1;
        }
        if (*p == '.')
            p++;
    }
    return cur;
}

/* A query with a projection, Items[*].Field: a new array of Field of every item (a new reference). */
static json_t *query_projection(json_t *root, const char *query)
{
    const char *star = strstr(query, "[*]");
    char head[256];
    json_t *arr, *out, *x;
    size_t i;
    if (!star)
        return json_incref(cli_query_path(root, query));
    if ((size_t)(star - query) >= sizeof head)
        return NULL;
    memcpy(head, query, (size_t)(star - query));
    head[star - query] = 0;
    arr = head[0] ? cli_query_path(root, head) : root;
    if (!json_is_array(arr) || !(out = json_array()))
        return NULL;
    star += 3;
    if (*star == '.')
        star++;
    json_array_foreach(arr, i, x) {
        json_t *y = *star ? query_projection(x, star) : json_incref(x);
        if (y && !json_is_null(y))
            json_array_append_new(out, y);
        else
            json_decref(y);
    }
    return out;
}

int cli_print_json(json_t *root, const char *query, const char *output, const char *who)
{
    json_t *proj = query && strstr(query, "[*]") ? query_projection(root, query) : NULL;
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
