/*
 * replay.c — a main() for the fuzz targets without libFuzzer: runs LLVMFuzzerTestOneInput once on every
 * file named on the command line and on every regular file of every directory named (not recursive,
 * dot files skipped, in name order). Built with the normal compiler, so each target's seed corpus runs
 * as an ordinary test, and a crash file found by libFuzzer can be replayed under gdb or valgrind.
 * Exit 0 when at least one input ran (a target aborts on a broken invariant); 1 when none was found.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n;
    if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        if (f)
            fclose(f);
        return -1;
    }
    /* An exact-size heap copy: AddressSanitizer then catches a read one byte past the input. */
    buf = malloc(n ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    if (getenv("REPLAY_VERBOSE"))
        fprintf(stderr, "replay: %s (%ld bytes)\n", path, n);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

static int skip_dot(const struct dirent *d) { return d->d_name[0] != '.'; }

int main(int argc, char **argv)
{
    int ran = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st)) {
            fprintf(stderr, "replay: no such file or directory: %s\n", argv[i]);
            bad = 1;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i]) == 0)
                ran++;
            else
                bad = 1;
            continue;
        }
        struct dirent **ents;
        int n = scandir(argv[i], &ents, skip_dot, alphasort);
        if (n < 0) {
            fprintf(stderr, "replay: cannot list %s\n", argv[i]);
            bad = 1;
            continue;
        }
        for (int j = 0; j < n; j++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], ents[j]->d_name);
            if (!stat(path, &st) && S_ISREG(st.st_mode)) {
                if (run_file(path) == 0)
                    ran++;
                else
                    bad = 1;
            }
            free(ents[j]);
        }
        free(ents);
    }
    printf("replay: %d inputs ran\n", ran);
    return ran > 0 && !bad ? 0 : 1;
}
