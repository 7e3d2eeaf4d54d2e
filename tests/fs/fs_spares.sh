#!/usr/bin/env bash
# fs_spares.sh — spare files (fs/spares.c): a burst of creates (and, with encrypted names, of mkdirs) is
# served by spares whose headers (directory ids) were made durable in batches; spares live only in the hidden .envelopefs-spares directory, age out 2 s after they
# are made (no standing key material), are removed at unmount and ignored by fsck; with the key
# disabled, creates fail once the pool has aged out and leave nothing behind; ENVELOPEFS_SPARES=0 turns
# them off. Run for both name modes.
. "$(dirname "$0")/lib.sh"
SP=$CIPHER/.envelopefs-spares
stat_of() { getfattr --only-values -n user.envelopefs.stats "$MNT" 2>/dev/null | jget "$1"; }
count() { find "$SP" -mindepth 1 2>/dev/null | wc -l; }  # spare files, spare directories and their ids
fs_setup "$@"

for i in $(seq 1 300); do echo "file $i" >"$MNT/f$i"; done
used=$(stat_of spare_creates)
[ "$used" -gt 0 ] || fail "300 creates, none served by a spare"
for i in 1 150 300; do [ "$(cat "$MNT/f$i")" = "file $i" ] || fail "f$i reads back wrong"; done
ls -a "$MNT" | grep -q envelopefs && fail "the spares directory is visible in the mount"
stat -c %a "$MNT/f7" | grep -qx 644 || fail "a spare-made file has mode $(stat -c %a "$MNT/f7")"
echo "300 creates, $used served by spares"

# Directories: with encrypted names mkdir takes a spare directory that already holds its durable id;
# a setgid parent still passes on its group and the setgid bit.
for i in $(seq 1 60); do mkdir "$MNT/d$i"; echo "in $i" >"$MNT/d$i/x"; done
mkdir "$MNT/sg"; chgrp 4321 "$MNT/sg"; chmod 2775 "$MNT/sg"; mkdir -m 755 "$MNT/sg/sub"
dused=$(stat_of spare_mkdirs)
if grep -q '"plaintext"' "$CIPHER/envelopefs.conf"; then
  [ "$dused" = 0 ] || fail "plaintext names: $dused mkdirs served by spare directories (they need no id)"
else
  [ "$dused" -gt 0 ] || fail "60 mkdirs, none served by a spare directory"
fi
[ "$(cat "$MNT/d60/x")" = "in 60" ] || fail "a file in a new directory reads back wrong"
[ "$(stat -c %a:%g "$MNT/sg/sub")" = 2755:4321 ] || fail "setgid parent: new directory is $(stat -c %a:%g "$MNT/sg/sub")"
[ "$(stat -c %a "$MNT/d7")" = 755 ] || fail "a spare-made directory has mode $(stat -c %a "$MNT/d7")"
echo "61 mkdirs, $dused served by spare directories"

# The filler discards spares 2 s after they were made (it looks at least every second); a batch still
# being made when the creates stopped is younger, so allow a few seconds more on a loaded machine.
drained() { for _ in $(seq 100); do [ "$(count)" = 0 ] && return 0; sleep 0.1; done; return 1; }
sleep 2
drained || fail "$(count) spares still on disk 12 s after the last create"

# Key disabled: once the pool is empty a create fails and writes nothing.
echo more >"$MNT/g1"; echo more >"$MNT/g2"   # warm the pool again
"$B" kms disable-key --key-id "$KEY_ID"
sleep 2
drained || fail "spares not discarded after the key was disabled"
before=$(find "$CIPHER" | sort)
touch "$MNT/after-disable" 2>/dev/null && fail "created a file once the spares had aged out, with the key disabled"
sleep 0.5
after=$(find "$CIPHER" | sort)
[ "$after" = "$before" ] ||
  fail "a refused create (or the filler) left something in CIPHERDIR: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | head -5 | tr '\n' ' ')"
"$B" kms enable-key --key-id "$KEY_ID"
echo "key disabled: creates refused once spares aged out, nothing written"

# Unmount removes spares; leftovers from a crash are cleared at mount; fsck ignores the directory.
for i in $(seq 1 50); do echo x >"$MNT/h$i"; done
pid=$(pgrep -f "envelopefs mount $CIPHER" | head -1)
fs_unmount
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done # the daemon cleans up as it exits
[ "$(count)" = 0 ] || fail "$(count) spares left after unmount"
mkdir -p "$SP"; head -c 200 /dev/urandom >"$SP/s.999.deadbeef"
"$B" fsck "$CIPHER" >/dev/null || fail "fsck does not ignore the spares directory"
# `envelopefs mount` returns once the daemon is set up (leftovers cleared); its log goes to the file
# named by ENVELOPEFS_LOG_FILE.
ENVELOPEFS_LOG_FILE=$T/daemon.log fs_mount
[ "$(count)" = 0 ] || fail "a leftover spare survived mounting"
[ "$(cat "$MNT/f300")" = "file 300" ] || fail "contents after remount"
[ "$(cat "$MNT/d30/x")" = "in 30" ] || fail "a spare-made directory's file after remount"
grep -q "envelopefs\[[0-9]*\]: info: mounted $CIPHER on $MNT" "$T/daemon.log" || fail "no mount line in the log file"
fs_unmount
for _ in $(seq 50); do grep -q "unmounted $MNT" "$T/daemon.log" && break; sleep 0.1; done
grep -q "unmounted $MNT" "$T/daemon.log" || fail "no unmount line in the log file"
ENVELOPEFS_SPARES=0 fs_mount
for i in $(seq 1 20); do echo y >"$MNT/k$i"; done
[ "$(stat_of spare_creates)" = 0 ] || fail "ENVELOPEFS_SPARES=0 still used spares"
# Modes are created exactly as asked (the kernel applied the caller's umask), on both create paths.
fs_unmount; fs_mount
for pass in 1 2; do
  (umask 002; for i in 1 2 3 4 5; do touch "$MNT/um$pass-$i"; done; mkdir "$MNT/umd$pass")
  [ "$(stat -c %a "$MNT/um$pass-5")" = 664 ] || fail "umask 002: file mode $(stat -c %a "$MNT/um$pass-5")"
  [ "$(stat -c %a "$MNT/umd$pass")" = 775 ] || fail "umask 002: directory mode $(stat -c %a "$MNT/umd$pass")"
  fs_unmount; ENVELOPEFS_SPARES=0 fs_mount
done
[ "$(count)" = 0 ] || fail "ENVELOPEFS_SPARES=0 still made spares"
echo "fs_spares: all checks passed"
