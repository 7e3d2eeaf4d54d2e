/*
 * test_regions.c — the regions file (common/regions.c): lookups of store and endpoint regions, paths
 * relative to the file, the default volume store, and every malformed file refused with a message that
 * names what is wrong (never a region half filled in).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    CHECK(!r.name && !r.store && !r.kms_url && !r.volume_store && !r.root_key_file);
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
