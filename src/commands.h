/*
 * commands.h — the subcommands of the multi-call `envelopefs` binary. Each returns the process exit
 * status. argv[0] is the subcommand's own name ("kms", "mount", ...). Each command lives with the
 * layer it drives (the KMS CLI in src/cmd_kms.c, filesystem commands in fs/, the server in kms/).
 */
#ifndef ENVELOPEFS_COMMANDS_H
#define ENVELOPEFS_COMMANDS_H

int cmd_kms(int argc, char **argv);        /* envelopefs kms <operation> ... (src/cmd_kms.c) */
int cmd_kms_serve(int argc, char **argv);  /* envelopefs kms serve ...       (kms/server/)   */
int cmd_init(int argc, char **argv);       /* envelopefs init CIPHERDIR ...  (fs/)           */
int cmd_mount(int argc, char **argv);      /* envelopefs mount CIPHERDIR MOUNTPOINT          */
int cmd_unmount(int argc, char **argv);    /* envelopefs unmount MOUNTPOINT                  */
int cmd_fsck(int argc, char **argv);       /* envelopefs fsck CIPHERDIR                      */
int cmd_ec2(int argc, char **argv);        /* envelopefs ec2 <operation> (volumes, snapshots; src/cmd_ec2.c) */
int cmd_volume(int argc, char **argv);     /* envelopefs volume attach|detach|fsck (src/cmd_volume.c) */

#endif
