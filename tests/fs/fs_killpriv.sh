#!/usr/bin/env bash
# fs_killpriv.sh — setuid/setgid removal behaves as on a local filesystem. The daemon negotiates
# FUSE_HANDLE_KILLPRIV_V2 (fs/killpriv.c): the kernel then stops asking for security.capability on every
# write, and the daemon clears the bits itself when a write, truncate or open(O_TRUNC) comes from a caller
# without CAP_FSETID. Every case runs on the mount and on a plain directory of the backing filesystem (the
# reference) and the resulting modes must agree; then small writes must not cost a GETXATTR each.
. "$(dirname "$0")/lib.sh"
id nobody >/dev/null 2>&1 || fail "no user nobody"
fs_setup
fs_remount -o allow_other
chmod 755 "$T"
PLAIN=$T/reference-dir
mkdir -p "$PLAIN"
chmod 1777 "$MNT" "$PLAIN"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }

# case MODE WHO ACTION: the mode left on a root-owned file after WHO (root|nobody) does ACTION
run_case() { # dir mode who action
  local f=$1/kp-file
  rm -f "$f"; echo data >"$f"; chmod "$2" "$f"
  local cmd
  case $4 in
    append) cmd="echo more >>'$f'";;
    truncate) cmd="truncate -s 2 '$f'";;
    otrunc) cmd=": >'$f'";;
    write-middle) cmd="printf X | dd of='$f' bs=1 seek=1 conv=notrunc status=none";;
  esac
  if [ "$3" = nobody ]; then as_nobody sh -c "$cmd"; else sh -c "$cmd"; fi
  stat -c %a "$f"
}
n=0
for mode in 6777 4777 2777 2767 0777 6757; do
  for who in nobody root; do
    for action in append truncate otrunc write-middle; do
      [ "$who" = nobody ] && [ "${mode: -1}" != 7 ] && continue # nobody needs write permission
      want=$(run_case "$PLAIN" "$mode" "$who" "$action")
      got=$(run_case "$MNT" "$mode" "$who" "$action")
      [ "$got" = "$want" ] || fail "mode $mode, $who $action: envelopefs leaves $got, the local filesystem $want"
      n=$((n + 1))
    done
  done
done
# chown by root clears both bits (a regular file), as locally
for d in "$PLAIN" "$MNT"; do echo x >"$d/own"; chmod 6755 "$d/own"; chown nobody "$d/own"; done
[ "$(stat -c %a "$MNT/own")" = "$(stat -c %a "$PLAIN/own")" ] || fail "chown: $(stat -c %a "$MNT/own") vs $(stat -c %a "$PLAIN/own")"
echo "setuid/setgid removal: $n cases agree with the local filesystem"

# Small writes: no GETXATTR round trip per write(2) once the kernel knows the file has no privileges.
xattrs() { getfattr --only-values -n user.envelopefs.stats "$MNT" 2>/dev/null | jget getxattr_requests; }
before=$(xattrs)
dd if=/dev/zero of="$MNT/small" bs=512 count=2000 status=none
after=$(xattrs)
# The two stats reads themselves count; allow a handful for attribute refreshes.
[ $((after - before)) -lt 50 ] || fail "2000 small writes cost $((after - before)) GETXATTR requests"
echo "2000 small writes: $((after - before)) GETXATTR requests"
echo "fs_killpriv: all checks passed"
