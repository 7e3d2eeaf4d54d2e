/*
 * cli_common.c — shared key-service settings for the subcommands (see cli_common.h).
 */
#include "cli_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

const char *cli_take_kms_options(int *argc, char **argv, cli_kms_opts *o)
{
    cli_kms_opts got = *o;
    const struct {
        const char *name;
        const char **slot;
    } OPTS[] = {
        {"--store", &got.store},
        {"--endpoint-url", &got.url},
        {"--kms", &got.url},
        {"--root-key-file", &got.root_key_file},
        {"--passphrase-file", &got.passphrase_file},
        {"--region", &got.region},
        {"--as-user", &got.as_user},
        {"--regions", &got.regions},
    };
    int n = 1, i;

    for (i = 1; i < *argc && strcmp(argv[i], "--"); i++) {
        const char *a = argv[i];
        size_t k, len = 0;
        for (k = 0; k < sizeof OPTS / sizeof OPTS[0]; k++) {
            len = strlen(OPTS[k].name);
            if (!strncmp(a, OPTS[k].name, len) && (a[len] == 0 || a[len] == '='))
                break;
        }
        if (k == sizeof OPTS / sizeof OPTS[0])
            argv[n++] = argv[i];
        else if (a[len] == '=')
            *OPTS[k].slot = a + len + 1;
        else if (i + 1 < *argc)
            *OPTS[k].slot = argv[++i];
        else
            return OPTS[k].name;
    }
    while (i < *argc)
        argv[n++] = argv[i++];
    argv[n] = NULL; /* argv[argc] is NULL, as for main's */
    *argc = n;
    *o = got;
    return NULL;
}

char *cli_store_dir(const cli_kms_opts *o)
{
    const char *s = o && o->store ? o->store : getenv("ENVELOPEFS_STORE");
    char *out = NULL;
    if (s && *s)
        return strdup(s);
    s = getenv("XDG_DATA_HOME");
    if (s && *s) {
        if (asprintf(&out, "%s/envelopefs", s) < 0)
            return NULL;
        return out;
    }
    s = getenv("HOME");
    if (asprintf(&out, "%s/.local/share/envelopefs", s && *s ? s : ".") < 0)
        return NULL;
    return out;
}

char *cli_kms_url(const cli_kms_opts *o)
{
    char *dir, *url = NULL;
    if (o && o->url)
        return strdup(o->url);
    dir = cli_store_dir(o);
    if (!dir)
        return NULL;
    if (asprintf(&url, "local:%s", dir) < 0)
        url = NULL;
    free(dir);
    return url;
}

char *cli_prompt_passphrase(const char *prompt)
{
    struct termios old, noecho;
    bool restore = false;
    char *buf;
    if (!isatty(STDIN_FILENO))
        return NULL;
    buf = sodium_malloc(1024);
    if (!buf)
        return NULL;
    fprintf(stderr, "%s", prompt);
    fflush(stderr);
    if (tcgetattr(STDIN_FILENO, &old) == 0) {
        noecho = old;
        noecho.c_lflag &= ~(tcflag_t)ECHO;
        restore = tcsetattr(STDIN_FILENO, TCSANOW, &noecho) == 0;
    }
    if (!fgets(buf, 1024, stdin))
        buf[0] = 0;
    if (restore)
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
    fprintf(stderr, "\n");
    buf[strcspn(buf, "\r\n")] = 0;
    return buf;
}

kmsc *cli_open_kms(const cli_kms_opts *o, const char *url_in)
{
    kmsc_opts ko;
    kmsc *c = NULL;
    char *url = url_in ? strdup(url_in) : cli_kms_url(o), *msg = NULL, *rk_default = NULL, *pw = NULL;
    kms_err e;

    if (!url)
        return NULL;
    if (o && o->regions) { /* the key core finds other regions there (ReplicateKey; common/regions.h) */
        char *abs = realpath(o->regions, NULL);
        setenv("ENVELOPEFS_REGIONS", abs ? abs : o->regions, 1);
        free(abs);
    }
    memset(&ko, 0, sizeof ko);
    ko.url = url;
    ko.region = o ? o->region : NULL;
    ko.as_user = o ? o->as_user : NULL;
    ko.via_service = o ? o->via_service : NULL;
    ko.max_retries = -1;
    if (ko.as_user && strncmp(url, "local:", 6)) {
        fprintf(stderr, "envelopefs: --as-user works on a local store; over an endpoint the access key names the "
                        "principal\n");
        free(url);
        return NULL;
    }
    if (!strncmp(url, "local:", 6)) {
        char *db = NULL;
        struct stat st;
        /* say "no store" before asking for a passphrase it would not need */
        if (asprintf(&db, "%s/keystore.db", url + 6) >= 0 && stat(db, &st) && errno == ENOENT) {
            fprintf(stderr,
                    "envelopefs: NotFoundException: no key store in %s (create one with `envelopefs kms init-store "
                    "--generate-root-key`, or pick one with --store / ENVELOPEFS_STORE)\n",
                    url + 6);
            free(db);
            goto out;
        }
        free(db);
        ko.root_key_file = o && o->root_key_file ? o->root_key_file : getenv("ENVELOPEFS_ROOT_KEY_FILE");
        ko.passphrase_file = o && o->passphrase_file ? o->passphrase_file : getenv("ENVELOPEFS_PASSPHRASE_FILE");
        if (ko.root_key_file && !*ko.root_key_file)
            ko.root_key_file = NULL;
        if (ko.passphrase_file && !*ko.passphrase_file)
            ko.passphrase_file = NULL;
        if (ko.root_key_file && ko.passphrase_file)
            ko.passphrase_file = NULL; /* an explicit root key wins */
        if (!ko.root_key_file && !ko.passphrase_file) {
            if (asprintf(&rk_default, "%s/root.key", url + 6) < 0)
                rk_default = NULL;
            if (rk_default && access(rk_default, R_OK) == 0) {
                ko.root_key_file = rk_default;
            } else if ((pw = cli_prompt_passphrase("envelopefs: key store passphrase: "))) {
                ko.passphrase = pw;
            } else {
                fprintf(stderr,
                        "envelopefs: the key store in %s needs a root key or passphrase: use --root-key-file, "
                        "--passphrase-file (or ENVELOPEFS_ROOT_KEY_FILE / ENVELOPEFS_PASSPHRASE_FILE)\n",
                        url + 6);
                goto out;
            }
        }
    }
    e = kmsc_new(&ko, &c, &msg);
    if (e) {
        fprintf(stderr, "envelopefs: %s: %s\n", kms_err_name(e), msg ? msg : kms_strerror(e));
        c = NULL;
    }
out:
    free(msg);
    free(rk_default);
    if (pw)
        sodium_free(pw);
    free(url);
    return c;
}

char *cli_generate_root_key(const char *dir)
{
    uint8_t *key = sodium_init() < 0 ? NULL : sodium_malloc(32);
    char *rk = NULL;
    int fd;
    if (!key)
        return NULL;
    if (mkdir(dir, 0700) && errno != EEXIST) {
        fprintf(stderr, "envelopefs: cannot create %s: %s\n", dir, strerror(errno));
        goto fail;
    }
    if (asprintf(&rk, "%s/root.key", dir) < 0) {
        rk = NULL;
        goto fail;
    }
    fd = open(rk, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "envelopefs: cannot create %s: %s\n", rk, strerror(errno));
        goto fail;
    }
    randombytes_buf(key, 32);
    if (write(fd, key, 32) != 32 || fsync(fd)) {
        fprintf(stderr, "envelopefs: cannot write %s: %s\n", rk, strerror(errno));
        close(fd);
        unlink(rk);
        goto fail;
    }
    close(fd);
    sodium_free(key);
    return rk;
fail:
    free(rk);
    sodium_free(key);
    return NULL;
}
