/*
 * commands.h — the subcommands of the multi-call `envelopefs` binary. Each returns the process exit
 * status. argv[0] is the subcommand's own name ("kms", "mount", ...). All of them live here in src/,
 * one file per group, over the libraries of the layer they drive; the key-service options they share
 * (--store, --endpoint-url, --root-key-file, ...) have one parser, cli_take_kms_options (cli_common.h).
 */
#ifndef ENVELOPEFS_COMMANDS_H
#define ENVELOPEFS_COMMANDS_H

#include "cli_common.h"

int cmd_kms(int argc, char **argv);        /* envelopefs kms <operation> ... (src/cmd_kms.c) */
/* envelopefs kms serve ... (src/cmd_serve.c), called by cmd_kms with the key-service options it took */
int cmd_kms_serve(int argc, char **argv, const cli_kms_opts *g);
int cmd_init(int argc, char **argv);       /* envelopefs init CIPHERDIR ...  (src/cmd_fs.c)  */
int cmd_mount(int argc, char **argv);      /* envelopefs mount CIPHERDIR MOUNTPOINT          */
int cmd_unmount(int argc, char **argv);    /* envelopefs unmount MOUNTPOINT                  */
int cmd_fsck(int argc, char **argv);       /* envelopefs fsck CIPHERDIR                      */
int cmd_ec2(int argc, char **argv);        /* envelopefs ec2 <operation> (volumes, snapshots; src/cmd_ec2.c) */
int cmd_ebs(int argc, char **argv);        /* envelopefs ebs <operation> (EBS direct API; src/cmd_ebs.c) */
int cmd_snapshot(int argc, char **argv);   /* envelopefs snapshot upload|download (src/cmd_snapshot.c) */
int cmd_volume(int argc, char **argv);     /* envelopefs volume attach|detach|fsck (src/cmd_volume.c) */

#endif
