#!/usr/bin/env bash
# vol_e2e.sh — volumes end to end: real FUSE, loop devices, ext4. A volume is attached as a loop device,
# formatted and filled; three snapshots (each of a frozen ext4, so e2fsck -fn must find it clean) are
# restored into new volumes whose files match their checksums at the snapshot; deleting the middle one
# keeps the others readable and shrinks the store; tampering (bit flip, sector swap within and between
# volumes, chunk rollback) reads as EIO and `volume fsck` names the block; a killed daemon leaves the
# volume attachable with every fsync'd write; bad input is refused and changes nothing.
. "$(dirname "$0")/lib.sh" vol-e2e fuse loop
device() { q describe-volumes --volume-ids "$1" --query 'Volumes[0].Attachments[0].Device'; }
freeze_snap() { # freeze_snap MNT VOL DESC → snapshot id (ext4 clean at the snapshot, as EBS advises)
  fsfreeze -f "$1"; local s; s=$(q create-snapshot --volume-id "$2" --description "$3" --query SnapshotId) || { fsfreeze -u "$1"; exit 1; }
  fsfreeze -u "$1"; echo "$s"
}
store_bytes() { du -sb --apparent-size "$VS/chunks" | cut -f1; }
chunk_file() { # chunk_file OWNER BLOCK → path of the chunk file the owner maps at BLOCK
  python3 - "$VS" "$1" "$2" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1] + "/catalog.db")
g = db.execute("SELECT gen FROM maps WHERE owner=? AND block=?", (sys.argv[2], int(sys.argv[3]))).fetchone()[0]
print("%s/chunks/%02x/%016x" % (sys.argv[1], g & 0xff, g))
PY
}
first_block() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]+"/catalog.db").execute("SELECT min(block) FROM maps WHERE owner=?",(sys.argv[2],)).fetchone()[0])' "$VS" "$1"; }

"$B" kms init-store --generate-root-key >/dev/null

# --- bad input: refused, nothing changed
expect_err InvalidParameterValue "$B" ec2 create-volume --size 0
expect_err InvalidParameterValue "$B" ec2 create-volume --size 65537
expect_err InvalidVolumeID.Malformed "$B" ec2 describe-volumes --volume-ids vol-123
expect_err InvalidVolume.NotFound "$B" ec2 describe-volumes --volume-ids vol-0123456789abcdef0
expect_err InvalidSnapshot.NotFound "$B" ec2 create-volume --snapshot-id snap-0123456789abcdef0
expect_err InvalidSnapshotID.Malformed "$B" ec2 delete-snapshot --snapshot-id snap-zz
expect_err InvalidVolume.NotFound "$B" ec2 create-snapshot --volume-id vol-0123456789abcdef0
expect_err InvalidKmsKey.NotFound "$B" ec2 create-volume --size 1 --kms-key-id alias/nope
[ "$(q describe-volumes --query 'Volumes')" = "" ] || fail "a refused call left a volume"

# --- the default key, created on first use
V=$(q create-volume --size 2 --query VolumeId)
[[ $V =~ ^vol-[0-9a-f]{17}$ ]] || fail "volume id $V"
KEYARN=$(q describe-volumes --volume-ids "$V" --query 'Volumes[0].KmsKeyId')
[[ $KEYARN == arn:aws:kms:*:key/* ]] || fail "KmsKeyId $KEYARN"
case $(q get-ebs-default-kms-key-id --query KmsKeyId) in arn:aws:kms:*:alias/aws/ebs) ;; *) fail "default key id";; esac
[ "$(q get-ebs-encryption-by-default --query EbsEncryptionByDefault)" = True ] || fail "encryption by default"
[ "$(q describe-volumes --volume-ids "$V" --query 'Volumes[0].State')" = available ] || fail "state"

# --- attach, ext4, files, three snapshots
D=$(attach_loop "$V")
[[ $D == /dev/loop* ]] || fail "no loop device: $D"
[ "$(device "$V")" = "$D" ] || fail "describe-volumes does not show the attachment's device"
[ "$(q describe-volumes --volume-ids "$V" --query 'Volumes[0].State')" = in-use ] || fail "not in-use"
expect_err VolumeInUse "$B" volume attach "$V"
expect_err VolumeInUse "$B" ec2 delete-volume --volume-id "$V"
mkfs.ext4 -q -F -E nodiscard "$D"
mkdir -p "$T/m"
mount "$D" "$T/m"
head -c 3M /dev/urandom > "$T/m/a"; mkdir "$T/m/d"; head -c 100k /dev/urandom > "$T/m/d/small"; sync
sums "$T/m" > "$T/sums1"
expect_err VolumeInUse "$B" volume detach "$V"   # its loop device is mounted
S1=$(freeze_snap "$T/m" "$V" first)
[ "$(q describe-snapshots --snapshot-ids "$S1" --query 'Snapshots[0].KmsKeyId')" = "$KEYARN" ] || fail "the snapshot's key"
[[ $S1 =~ ^snap-[0-9a-f]{17}$ ]] || fail "snapshot id $S1"
head -c 2M /dev/urandom > "$T/m/b"; sync
sums "$T/m" > "$T/sums2"
S2=$(freeze_snap "$T/m" "$V" second)
# rewrite b in place: its blocks of S2 are now S2's alone
head -c 2M /dev/urandom | dd of="$T/m/b" conv=notrunc,fsync status=none
head -c 1M /dev/urandom > "$T/m/c"; sync
sums "$T/m" > "$T/sums3"
S3=$(freeze_snap "$T/m" "$V" third)
[ "$(q describe-snapshots --snapshot-ids "$S2" --query 'Snapshots[0].State')" = completed ] || fail "S2 not completed"
[ "$(q describe-snapshots --snapshot-ids "$S2" --query 'Snapshots[0].Progress')" = 100% ] || fail "S2 progress"
[ "$(q describe-snapshots --owner-ids self --filters Name=volume-id,Values="$V" --query 'Snapshots[2].Description')" = third ] || fail "describe-snapshots filter"
DEK1=$(q describe-snapshots --snapshot-ids "$S1" --query 'Snapshots[0].DataEncryptionKeyId')
DEK3=$(q describe-snapshots --snapshot-ids "$S3" --query 'Snapshots[0].DataEncryptionKeyId')
[ "$DEK1" = "$DEK3" ] || fail "one lineage, one data key id"
# a snapshot while a write storm runs inside the mounted ext4, not frozen: crash-consistent
( i=0; while [ -e "$T/storm.on" ]; do head -c 64k /dev/urandom > "$T/m/storm.$((i % 40))"; i=$((i + 1)); done ) &
STORM=$!
touch "$T/storm.on"; sleep 1
"$B" ec2 create-snapshot --volume-id "$V" --description storm > "$T/sw.json"
SW=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["SnapshotId"])' "$T/sw.json")
grep -q "\"KmsKeyId\": \"$KEYARN\"" "$T/sw.json" || fail "create-snapshot of an attached volume prints its key"
sleep 0.5; rm -f "$T/storm.on"; wait "$STORM" || true
rm -f "$T"/m/storm.*; sync
umount "$T/m"
"$B" volume detach "$V"
[ "$(q describe-volumes --volume-ids "$V" --query 'Volumes[0].State')" = available ] || fail "detached volume not available"
"$B" volume fsck "$V" >/dev/null || fail "fsck of a good volume"

# restore each snapshot: e2fsck clean, every checksum as at its snapshot
restore_check() { # restore_check SNAP SUMS
  local w d
  w=$(q create-volume --snapshot-id "$1" --query VolumeId)
  [ "$(q describe-volumes --volume-ids "$w" --query 'Volumes[0].SnapshotId')" = "$1" ] || fail "SnapshotId of $w"
  d=$(attach_loop "$w")
  e2fsck -fn "$d" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "e2fsck of $1's restore"; }
  mkdir -p "$T/mr"; mount -o ro "$d" "$T/mr"
  sums "$T/mr" | diff - "$2" || fail "checksums of $1's restore"
  umount "$T/mr"; "$B" volume detach "$w"
  echo "$w"
}
W1=$(restore_check "$S1" "$T/sums1")
restore_check "$S2" "$T/sums2" >/dev/null
restore_check "$S3" "$T/sums3" >/dev/null
expect_err InvalidParameterValue "$B" ec2 create-volume --snapshot-id "$S1" --size 1   # smaller than the snapshot
# the storm's snapshot: e2fsck accepts it (journal replay allowed), the files before the storm are intact
WS=$(q create-volume --snapshot-id "$SW" --query VolumeId)
DS=$(attach_loop "$WS")
rc=0; e2fsck -fy "$DS" >"$T/fsck.out" 2>&1 || rc=$?
[ "$rc" -lt 4 ] || { cat "$T/fsck.out"; fail "e2fsck could not repair the storm snapshot (exit $rc)"; }
e2fsck -fn "$DS" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "the storm snapshot is not clean after journal replay"; }
mkdir -p "$T/mr"; mount -o ro "$DS" "$T/mr"
sums "$T/mr" | grep -v '/storm\.' | diff - "$T/sums3" || fail "files of the storm snapshot"
umount "$T/mr"; "$B" volume detach "$WS"; "$B" ec2 delete-volume --volume-id "$WS"

# delete the middle snapshot: the others still restore, the store shrinks
for w in $(q describe-volumes --filters Name=snapshot-id,Values="$S2" --query 'Volumes[*].VolumeId'); do "$B" ec2 delete-volume --volume-id "$w"; done
before=$(store_bytes)
"$B" ec2 delete-snapshot --snapshot-id "$S2"
after=$(store_bytes)
[ "$after" -lt "$before" ] || fail "deleting the middle snapshot freed nothing ($before → $after)"
expect_err InvalidSnapshot.NotFound "$B" ec2 describe-snapshots --snapshot-ids "$S2"
restore_check "$S1" "$T/sums1" >/dev/null
restore_check "$S3" "$T/sums3" >/dev/null

# --- tampering: EIO on read, fsck names the block
W=$(q create-volume --size 1 --query VolumeId)
"$B" volume attach "$W" >/dev/null
IMG=$(q describe-volumes --volume-ids "$W" --query 'Volumes[0].Attachments[0].Device')
head -c 1M /dev/urandom > "$T/pattern"
dd if="$T/pattern" of="$IMG" bs=64k conv=notrunc,fsync status=none
"$B" volume detach "$W"
BLK=$(first_block "$W"); F=$(chunk_file "$W" "$BLK")
cp "$F" "$T/good"
expect_eio_and_fsck() { # the image reads fail with EIO at block BLK; fsck names it and exits 1
  local out
  "$B" volume attach "$W" >/dev/null
  if out=$(dd if="$IMG" of=/dev/null bs=4k count=128 skip=$((BLK * 128)) 2>&1); then fail "$1: read succeeded"; fi
  case $out in *"Input/output error"*) ;; *) fail "$1: expected EIO, got $out";; esac
  "$B" volume detach "$W"
  if out=$("$B" volume fsck "$W"); then fail "$1: fsck found nothing"; fi
  case $out in *"block $BLK "*) ;; *) fail "$1: fsck does not name block $BLK: $out";; esac
  cp "$T/good" "$F"
  "$B" volume fsck "$W" >/dev/null || fail "$1: fsck after repair"
}
python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(64+4+12+100); b=f.read(1); f.seek(64+4+12+100); f.write(bytes([b[0]^1]))' "$F"
expect_eio_and_fsck "bit flip"
python3 -c '
import sys; f=open(sys.argv[1],"r+b"); S=4128
f.seek(64); a=f.read(S); b=f.read(S); f.seek(64); f.write(b); f.write(a)' "$F"
expect_eio_and_fsck "sector swap"
OTHER=$(chunk_file "$V" "$(first_block "$V")")
python3 -c '
import sys; S=4128; o=open(sys.argv[2],"rb"); o.seek(64); s=o.read(S)
f=open(sys.argv[1],"r+b"); f.seek(64); f.write(s)' "$F" "$OTHER"
expect_eio_and_fsck "sector from another volume"
# rollback: keep the chunk, rewrite its first sector and flush, put the old chunk back
"$B" volume attach "$W" >/dev/null
head -c 4096 /dev/urandom | dd of="$IMG" bs=4k seek=$((BLK * 128)) conv=notrunc,fsync status=none
"$B" volume detach "$W"
cp "$F" "$T/newer"; cp "$T/good" "$F"; cp "$T/newer" "$T/good"
expect_eio_and_fsck "chunk rollback"
# a chunk file cut short
truncate -s 1000 "$F"
expect_eio_and_fsck "truncated chunk"

# --- a killed daemon: attachable again, every fsync'd write there
"$B" volume attach "$W" >/dev/null
PID=$(pid_of "$W")
head -c 512k /dev/urandom > "$T/synced"
dd if="$T/synced" of="$IMG" bs=64k seek=40 conv=notrunc,fsync status=none
kill -9 "$PID"
for i in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
[ "$(q describe-volumes --volume-ids "$W" --query 'Volumes[0].State')" = available ] || fail "a dead daemon keeps the volume in-use"
"$B" volume attach "$W" >/dev/null
cmp <(dd if="$IMG" bs=64k skip=40 count=8 status=none) "$T/synced" || fail "an fsync'd write was lost"
"$B" volume detach "$W"

# --- a killed --loop daemon: the next attach detaches its loop device, but only while that device still
# serves this volume's image — a number recorded by a dead daemon may have gone to someone else's file
DEV=$("$B" volume attach "$W" --loop --query Device --output text)
PID=$(pid_of "$W")
kill -9 "$PID"
for i in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
DEV2=$("$B" volume attach "$W" --loop --query Device --output text)
[ "$(cat "/sys/block/${DEV#/dev/}/loop/backing_file" 2>/dev/null)" = "" ] || [ "$DEV2" = "$DEV" ] ||
  fail "the dead daemon's loop device $DEV was left attached"
PID=$(pid_of "$W")
kill -9 "$PID"
for i in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
losetup -d "$DEV2"                       # the device goes away (a reboot, an admin) ...
truncate -s 1M "$T/foreign.img"
losetup "$DEV2" "$T/foreign.img"         # ... and its number goes to someone else's file
"$B" volume attach "$W" >/dev/null
[ "$(cat "/sys/block/${DEV2#/dev/}/loop/backing_file")" = "$T/foreign.img" ] ||
  fail "attach detached a foreign loop device that had the dead daemon's number"
losetup -d "$DEV2"
"$B" volume detach "$W"

# --- at most 5 pending snapshots per volume (pending rows made by hand: ours complete at once)
python3 - "$VS" "$V" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1] + "/catalog.db")
for i in range(5):
    db.execute("INSERT INTO snapshots VALUES (?, ?, 2, (SELECT lineage FROM volumes WHERE id=?), 'pending', NULL, 0, 0, NULL)",
               ("snap-%017x" % i, sys.argv[2], sys.argv[2]))
db.commit()
PY
expect_err ConcurrentSnapshotLimitExceeded "$B" ec2 create-snapshot --volume-id "$V"
for i in 0 1 2 3 4; do "$B" ec2 delete-snapshot --snapshot-id "$(printf 'snap-%017x' $i)"; done

# --- copy-snapshot: the same key shares every chunk; another key makes a full copy that outlives the source key
nfiles() { find "$VS/chunks" -type f | wc -l; }
n0=$(nfiles)
C0=$(q copy-snapshot --source-snapshot-id "$S3" --source-region us-east-1 --description same --query SnapshotId)
[ "$(nfiles)" = "$n0" ] || fail "a same-key copy copied data"
[ "$(q describe-snapshots --snapshot-ids "$C0" --query 'Snapshots[0].DataEncryptionKeyId')" = "$DEK3" ] || fail "same-key copy's data key"
expect_err InvalidParameterValue "$B" ec2 copy-snapshot --source-snapshot-id "$S3" --source-region eu-west-9
expect_err InvalidSnapshot.NotFound "$B" ec2 copy-snapshot --source-snapshot-id snap-0123456789abcdef0
K2=$("$B" kms create-key --description copy --query KeyMetadata.Arn --output text)
C2=$(q copy-snapshot --source-snapshot-id "$S3" --encrypted --kms-key-id "$K2" --description copied --query SnapshotId)
[ "$(nfiles)" -gt "$n0" ] || fail "a copy under another key copied nothing"
[ "$(q describe-snapshots --snapshot-ids "$C2" --query 'Snapshots[0].KmsKeyId')" = "$K2" ] || fail "the copy's key"
[ "$(q describe-snapshots --snapshot-ids "$C2" --query 'Snapshots[0].DataEncryptionKeyId')" != "$DEK3" ] || fail "the copy's data key"
"$B" volume fsck "$C2" >/dev/null || fail "fsck of the copy"
# --rewrap-only: the same data key wrapped under K2, no chunk copied
n1=$(nfiles)
R2=$(q copy-snapshot --source-snapshot-id "$S3" --kms-key-id "$K2" --rewrap-only --query SnapshotId)
[ "$(nfiles)" = "$n1" ] || fail "a rewrap copied data"
[ "$(q describe-snapshots --snapshot-ids "$R2" --query 'Snapshots[0].KmsKeyId')" = "$K2" ] || fail "the rewrap's key"
[ "$(q describe-snapshots --snapshot-ids "$R2" --query 'Snapshots[0].DataEncryptionKeyId')" = "$DEK3" ] || fail "a rewrap keeps the data key"
expect_err InvalidParameterCombination "$B" ec2 copy-snapshot --source-snapshot-id "$S3" --rewrap-only
"$B" kms disable-key --key-id "$KEYARN"
restore_check "$C2" "$T/sums3" >/dev/null
restore_check "$R2" "$T/sums3" >/dev/null
"$B" volume fsck "$R2" >/dev/null || fail "fsck of the rewrapped copy"
expect_err KMS.DisabledException "$B" ec2 create-volume --snapshot-id "$S3"
expect_err KMS.DisabledException "$B" ec2 copy-snapshot --source-snapshot-id "$S3" --kms-key-id "$K2"
"$B" kms enable-key --key-id "$KEYARN"

# --- a snapshot of a deleted volume; a disabled key refuses create, restore and attach
"$B" ec2 delete-volume --volume-id "$W"
expect_err InvalidVolume.NotFound "$B" ec2 create-snapshot --volume-id "$W"
K=$("$B" kms create-key --description other --query KeyMetadata.KeyId --output text)
V2=$(q create-volume --size 1 --kms-key-id "$K" --query VolumeId)
S4=$(q create-snapshot --volume-id "$V2" --query SnapshotId)
"$B" kms disable-key --key-id "$K"
n=$(q describe-volumes --query 'Volumes[*].VolumeId' | wc -w)
expect_err KMS.DisabledException "$B" ec2 create-volume --size 1 --kms-key-id "$K"
expect_err KMS.DisabledException "$B" ec2 create-volume --snapshot-id "$S4"
expect_err KMS.DisabledException "$B" volume attach "$V2"
[ "$(q describe-volumes --query 'Volumes[*].VolumeId' | wc -w)" = "$n" ] || fail "a refused create left a volume"
"$B" kms enable-key --key-id "$K"
"$B" volume attach "$V2" >/dev/null && "$B" volume detach "$V2"

# --- deleting everything frees every chunk
for s in $(q describe-snapshots --query 'Snapshots[*].SnapshotId'); do "$B" ec2 delete-snapshot --snapshot-id "$s"; done
for v in $(q describe-volumes --query 'Volumes[*].VolumeId'); do "$B" ec2 delete-volume --volume-id "$v"; done
[ -z "$(find "$VS/chunks" -type f)" ] || fail "chunks left after deleting everything"
echo "vol_e2e: ok"
