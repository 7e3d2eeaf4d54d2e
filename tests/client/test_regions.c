/*
 * test_regions.c — the regions file (common/regions.c): lookups of store and endpoint regions, paths
 * relative to the file, the default volume store, every malformed file refused with a message that
 * names what is wrong (never a region half filled in), and an endpoint region's credentials file (read
 * only when 0600 or stricter; its secret never in a message).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "common/regions.h"
#include "../kms/testutil.h"

static char g_dir[] = "/tmp/efs-regions-XXXXXX";

static char *write_file(const char *text)
{
    static char path[256];
    FILE *f;
    snprintf(path, sizeof path, "%s/regions.json", g_dir);
    f = fopen(path, "w");
    CHECK(f);
    fputs(text, f);
    CHECK(fclose(f) == 0);
    return path;
}

static void bad(const char *text, const char *name, const char *needle)
{
    efs_region r;
    char err[512];
    int rc = efs_region_lookup(write_file(text), name, &r, err, sizeof err);
    if (rc != -EINVAL || !strstr(err, needle))
        fprintf(stderr, "for %s: rc %d, message '%s' (wanted -EINVAL and '%s')\n", text, rc, err, needle);
    CHECK(rc == -EINVAL && strstr(err, needle));
    CHECK(!r.name && !r.store && !r.kms_url && !r.volume_store && !r.root_key_file && !r.credentials);
}

static void put_file(const char *name, const char *text, mode_t mode)
{
    char path[256];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    unlink(path); /* a new file each time (the last one may be read-only) */
    f = fopen(path, "w");
    CHECK(f);
    fputs(text, f);
    CHECK(fclose(f) == 0);
    CHECK(chmod(path, mode) == 0);
}

/* An endpoint region's credentials: read when private, refused otherwise, the secret never in a message. */
static void credentials(void)
{
    efs_region r;
    char err[512], akid[32], want[512], *sk = NULL;
    char *p = write_file("{\"regions\": {\"w\": {\"kms\": \"http://127.0.0.1:1\", \"credentials\": \"c.json\"},"
                         " \"n\": {\"kms\": \"http://127.0.0.1:1\"}}}");
    CHECK(efs_region_lookup(p, "w", &r, err, sizeof err) == 0);
    snprintf(want, sizeof want, "%s/c.json", g_dir);
    CHECK(!strcmp(r.credentials, want));
    put_file("c.json", "{\"AccessKey\": {\"AccessKeyId\": \"AKIAEXAMPLE\", \"SecretAccessKey\": \"s3cr3t-v4lue\"}}", 0600);
    CHECK(efs_region_credentials(&r, akid, sizeof akid, &sk, err, sizeof err) == 0);
    CHECK(!strcmp(akid, "AKIAEXAMPLE") && !strcmp(sk, "s3cr3t-v4lue"));
    sodium_free(sk);
    put_file("c.json", "{\"AccessKeyId\": \"AKIAINNER\", \"SecretAccessKey\": \"inner-s3cr3t\"}", 0400);
    CHECK(efs_region_credentials(&r, akid, sizeof akid, &sk, err, sizeof err) == 0);
    CHECK(!strcmp(akid, "AKIAINNER") && !strcmp(sk, "inner-s3cr3t"));
    sodium_free(sk);
    put_file("c.json", "{\"AccessKeyId\": \"AKIAINNER\", \"SecretAccessKey\": \"inner-s3cr3t\"}", 0640);
    CHECK(efs_region_credentials(&r, akid, sizeof akid, &sk, err, sizeof err) == -EPERM && !sk);
    CHECK(strstr(err, "0600") && strstr(err, "0640") && !strstr(err, "inner-s3cr3t"));
    put_file("c.json", "{\"AccessKeyId\": \"AKIAINNER\", \"Secret\": \"inner-s3cr3t\"}", 0600);
    CHECK(efs_region_credentials(&r, akid, sizeof akid, &sk, err, sizeof err) == -EINVAL && !sk);
    CHECK(strstr(err, "not an access key") && !strstr(err, "inner-s3cr3t"));
    put_file("c.json", "not json inner-s3cr3t", 0600);
    CHECK(efs_region_credentials(&r, akid, sizeof akid, &sk, err, sizeof err) == -EINVAL && !strstr(err, "inner-s3cr3t"));
    snprintf(want, sizeof want, "%s/c.json", g_dir);
    CHECK(unlink(want) == 0);
    CHECK(efs_region_credentials(&r, akid, sizeof akid, &sk, err, sizeof err) == -ENOENT && strstr(err, "c.json"));
    efs_region_clear(&r);
    CHECK(efs_region_lookup(p, "n", &r, err, sizeof err) == 0 && !r.credentials);
    CHECK(efs_region_credentials(&r, akid, sizeof akid, &sk, err, sizeof err) == -ENOENT && strstr(err, "credentials"));
    efs_region_clear(&r);
}

int main(void)
{
    efs_region r;
    char err[512], want[512];
    char *p;

    CHECK(mkdtemp(g_dir));

    p = write_file("{\"regions\": {\"eu-west-1\": {\"store\": \"eu\", \"root_key_file\": \"/k/eu.key\"},"
                   " \"us-west-2\": {\"kms\": \"http://127.0.0.1:8081\", \"volume_store\": \"/v/usw2\"}}}");
    CHECK(efs_region_lookup(p, "eu-west-1", &r, err, sizeof err) == 0);
    snprintf(want, sizeof want, "%s/eu", g_dir);
    CHECK(!strcmp(r.name, "eu-west-1") && !strcmp(r.store, want) && !r.kms_url);
    snprintf(want, sizeof want, "%s/eu/volumes", g_dir);
    CHECK(!strcmp(r.volume_store, want) && !strcmp(r.root_key_file, "/k/eu.key"));
    efs_region_clear(&r);
    efs_region_clear(&r); /* a zeroed region: no-op */
    efs_region_clear(NULL);

    CHECK(efs_region_lookup(p, "us-west-2", &r, err, sizeof err) == 0);
    CHECK(!r.store && !strcmp(r.kms_url, "http://127.0.0.1:8081") && !strcmp(r.volume_store, "/v/usw2"));
    efs_region_clear(&r);

    CHECK(efs_region_lookup(p, "ap-south-1", &r, err, sizeof err) == -ENOENT && strstr(err, "ap-south-1"));
    CHECK(efs_region_lookup(p, "", &r, err, sizeof err) == -EINVAL);
    snprintf(want, sizeof want, "%s/none.json", g_dir);
    CHECK(efs_region_lookup(want, "eu-west-1", &r, err, sizeof err) == -ENOENT);

    bad("{\"regions\": {\"x\": {\"store\": \"a\"}}", "x", "regions.json:");            /* bad JSON */
    bad("[1]", "x", "top level");
    bad("{\"regions\": {}, \"extra\": 1}", "x", "\"extra\"");
    bad("{\"regions\": []}", "x", "\"regions\" must be an object");
    bad("{\"regions\": {\"x\": 3}}", "x", "must be an object");
    bad("{\"regions\": {\"x\": {\"store\": \"a\", \"colour\": \"red\"}}}", "x", "\"colour\"");
    bad("{\"regions\": {\"x\": {\"store\": 7}}}", "x", "\"store\" must be a non-empty string");
    bad("{\"regions\": {\"x\": {\"store\": \"\"}}}", "x", "non-empty");
    bad("{\"regions\": {\"x\": {\"volume_store\": \"v\"}}}", "x", "needs \"store\" or \"kms\"");
    bad("{\"regions\": {\"x\": {\"kms\": \"ftp://h\"}}}", "x", "http:// or https://");
    bad("{\"regions\": {\"x\": {\"store\": \"a\"}, \"x\": {\"store\": \"b\"}}}", "x", "duplicate");
    bad("{\"regions\": {\"x\": {\"store\": \"a\", \"credentials\": \"c\"}}}", "x", "is for a \"kms\" region");
    credentials();

    /* the path: given, then ENVELOPEFS_REGIONS, then XDG_CONFIG_HOME, then HOME */
    p = efs_regions_path("/given.json");
    CHECK(!strcmp(p, "/given.json"));
    free(p);
    setenv("ENVELOPEFS_REGIONS", "/env.json", 1);
    p = efs_regions_path(NULL);
    CHECK(!strcmp(p, "/env.json"));
    free(p);
    unsetenv("ENVELOPEFS_REGIONS");
    setenv("XDG_CONFIG_HOME", "/cfg", 1);
    p = efs_regions_path(NULL);
    CHECK(!strcmp(p, "/cfg/envelopefs/regions.json"));
    free(p);
    unsetenv("XDG_CONFIG_HOME");
    setenv("HOME", "/home/u", 1);
    p = efs_regions_path(NULL);
    CHECK(!strcmp(p, "/home/u/.config/envelopefs/regions.json"));
    free(p);

    snprintf(want, sizeof want, "rm -rf %s", g_dir);
    CHECK(system(want) == 0);
    printf("regions: ok\n");
    return 0;
}
