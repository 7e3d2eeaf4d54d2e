/*
 * cli_common.h — what every subcommand that talks to a key service shares: where the store is, how
 * it is unlocked, and opening a kmsclient from those settings, with the same flags and environment
 * variables everywhere (--store/ENVELOPEFS_STORE, --kms/--endpoint-url, --root-key-file/
 * ENVELOPEFS_ROOT_KEY_FILE, --passphrase-file/ENVELOPEFS_PASSPHRASE_FILE, STORE/root.key, prompt).
 */
#ifndef ENVELOPEFS_CLI_COMMON_H
#define ENVELOPEFS_CLI_COMMON_H

#include <stdbool.h>
#include "envelopefs/kmsclient.h"

typedef struct cli_kms_opts {
    const char *store;            /* --store */
    const char *url;              /* --kms / --endpoint-url */
    const char *root_key_file;    /* --root-key-file */
    const char *passphrase_file;  /* --passphrase-file */
    const char *region;           /* --region (http backends) */
    const char *as_user;          /* --as-user (local store): act as this principal, not the account root */
    const char *regions;          /* --regions FILE: where other regions live (common/regions.h) */
    const char *via_service;      /* not a flag: the service the verb's calls go through ("ec2"; kmsc_opts) */
} cli_kms_opts;

/*
 * The one parser of these options, for every verb: takes --store, --endpoint-url (alias --kms),
 * --root-key-file, --passphrase-file, --region, --as-user and --regions, each as `--opt VALUE` or `--opt=VALUE`, out of
 * argv[1..*argc-1] wherever they stand (before the verb, after it, among its arguments: as `aws`
 * allows), closing the gaps in argv and lowering *argc; argv[0] stays, and so does everything from a
 * "--" on. The last of a repeated option wins. NULL on success, else the option that lacks its value
 * (then *o is unchanged and argv may be reordered: the caller reports the error and stops). Callers run it before looking at their verb or their own options.
 */
const char *cli_take_kms_options(int *argc, char **argv, cli_kms_opts *o);

/* Store directory from --store, ENVELOPEFS_STORE, $XDG_DATA_HOME/envelopefs, ~/.local/share/envelopefs.
 * Returns a malloc'd path. */
char *cli_store_dir(const cli_kms_opts *o);

/* The key-service URL: --kms/--endpoint-url if given, else local:<store dir>. malloc'd. */
char *cli_kms_url(const cli_kms_opts *o);

/* Open a client for `url` (NULL: cli_kms_url). For local: URLs the store is unlocked with the root key
 * file / passphrase file (flags, then environment, then STORE/root.key), or an interactive prompt.
 * Prints a clear message to stderr on failure and returns NULL. */
kmsc *cli_open_kms(const cli_kms_opts *o, const char *url);

/* Create DIR (0700, if missing) and DIR/root.key, a new 0600 file of 32 random bytes (never one that
 * exists). Returns its malloc'd path, or NULL with the message printed. */
char *cli_generate_root_key(const char *dir);

/* Read a passphrase from the terminal without echo into a sodium_malloc'd buffer (free with
 * sodium_free). NULL if stdin is not a terminal. */
char *cli_prompt_passphrase(const char *prompt);

#endif
