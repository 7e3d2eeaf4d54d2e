/*
 * main.c — entry point of the multi-call `envelopefs` binary: finds the subcommand and runs it.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"

struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
};

static const struct command commands[] = {
    {"kms", cmd_kms, "key service: create keys, data keys, encrypt/decrypt, serve (envelopefs kms help)"},
    {"init", cmd_init, "create an encrypted directory: init CIPHERDIR --kms-key-id KEY"},
    {"mount", cmd_mount, "mount it: mount CIPHERDIR MOUNTPOINT [-f] [-o opts]"},
    {"unmount", cmd_unmount, "unmount MOUNTPOINT"},
    {"fsck", cmd_fsck, "check every header and block: fsck CIPHERDIR"},
    {"ec2", cmd_ec2, "EBS-style encrypted volumes and snapshots (envelopefs ec2 help)"},
    {"ebs", cmd_ebs, "the EBS direct API: start-snapshot, put-/get-snapshot-block, list-(changed-)blocks (envelopefs ebs help)"},
    {"snapshot", cmd_snapshot, "a disk image into a snapshot and back: snapshot upload IMAGE / download SNAP IMAGE"},
    {"volume", cmd_volume, "attach a volume as an image file / loop device, detach, fsck, rekey, status (envelopefs volume help)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: envelopefs <command> [args]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(out, "  %-10s %s\n", "version", "print the version");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("envelopefs %s\n", ENVELOPEFS_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "envelopefs: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
