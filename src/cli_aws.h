/*
 * cli_aws.h — output and error conventions of the AWS CLI, shared by the AWS-shaped subcommands
 * (`envelopefs kms`, `envelopefs ec2`, `envelopefs volume`): --query paths, --output json|text, the
 * "An error occurred (Code) when calling the Op operation: message" line, and exit statuses.
 */
#ifndef ENVELOPEFS_CLI_AWS_H
#define ENVELOPEFS_CLI_AWS_H

#include <jansson.h>

#define CLI_EXIT_SERVICE 254  /* the service refused the call */
#define CLI_EXIT_USAGE 252    /* the command line is wrong */

/* The part of root named by a --query path: Field, Field.Sub, Field[2].Sub, Field[-1]. Borrowed; NULL
 * when absent. */
json_t *cli_query_path(json_t *root, const char *path);

/* Print root (or its --query part; query may be NULL) as the AWS CLI does for output "json" or "text";
 * an empty object prints nothing. who prefixes error messages. Returns the exit status. */
int cli_print_json(json_t *root, const char *query, const char *output, const char *who);

/* "An error occurred (code) when calling the op operation: message" on stderr; returns CLI_EXIT_SERVICE. */
int cli_service_error(const char *code, const char *op, const char *message);
/* The code (NULL if none yet) and message of the last cli_service_error (for the EC2 audit record). */
void cli_last_service_error(const char **code, const char **message);

#endif
