#!/usr/bin/env bash
# vol_rekey.sh — lazy rekey end to end (real FUSE, loop devices, ext4): a volume under K1 with ext4 and
# files, its snapshot restored with `create-volume --snapshot-id S --kms-key-id K2`; the restore reads
# through to K1's chunks (checksums match), writes go to K2's lineage; with K1 disabled it cannot attach
# (the key service's error); `volume rekey` (refused while attached, killed with -9 and rerun) moves the
# rest, after which K1 can be disabled and the volume still attaches, passes e2fsck -fn and every
# checksum; a snapshot taken part-way keeps needing both keys, restores whole and downloads whole.
. "$(dirname "$0")/lib.sh" vol-rekey fuse loop
other_keys() { "$B" volume status "$1" --query BlocksOnOtherKeys --output text; }
check_vol() { # check_vol VOL SUMS: attach, e2fsck -fn clean, every checksum right, detach
  local d
  d=$(attach_loop "$1")
  e2fsck -fn "$d" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "e2fsck of $1"; }
  mkdir -p "$T/mr"; mount -o ro "$d" "$T/mr"
  sums "$T/mr" | diff - "$2" || fail "checksums of $1"
  umount "$T/mr"; "$B" volume detach "$1"
}

"$B" kms init-store --generate-root-key >/dev/null
K1=$("$B" kms create-key --description source --query KeyMetadata.Arn --output text)
K2=$("$B" kms create-key --description target --query KeyMetadata.Arn --output text)

# --- a volume under K1: ext4 and files; its snapshot
V=$(q create-volume --size 1 --kms-key-id "$K1" --query VolumeId)
D=$(attach_loop "$V")
mkfs.ext4 -q -F -E nodiscard "$D"
mkdir -p "$T/m"; mount "$D" "$T/m"
head -c 24M /dev/urandom > "$T/m/big"; mkdir "$T/m/d"
for i in $(seq 20); do head -c $((i * 7000)) /dev/urandom > "$T/m/d/f$i"; done
umount "$T/m"; "$B" volume detach "$V"
D=$(attach_loop "$V"); mount -o ro "$D" "$T/m"; sums "$T/m" > "$T/sums1"; umount "$T/m"; "$B" volume detach "$V"
S=$(q create-snapshot --volume-id "$V" --description k1 --query SnapshotId)

# --- restore under K2: instant, its own data key, reads through to K1's chunks
W=$(q create-volume --snapshot-id "$S" --kms-key-id "$K2" --query VolumeId)
X=$(q create-volume --snapshot-id "$S" --kms-key-id "$K2" --query VolumeId)   # never rekeyed
[ "$(q describe-volumes --volume-ids "$W" --query 'Volumes[0].KmsKeyId')" = "$K2" ] || fail "the restore's key"
[ "$(q describe-volumes --volume-ids "$W" --query 'Volumes[0].SnapshotId')" = "$S" ] || fail "the restore's snapshot"
[ "$(q describe-volumes --volume-ids "$W" --query 'Volumes[0].DataEncryptionKeyId')" != \
  "$(q describe-snapshots --snapshot-ids "$S" --query 'Snapshots[0].DataEncryptionKeyId')" ] || fail "the restore kept the data key"
n0=$(other_keys "$W")
[ "$n0" -gt 40 ] || fail "the restore should still be on K1's chunks: $n0 blocks"
[ "$("$B" volume status "$W" --query RekeyState --output text)" = pending ] || fail "rekey state"
[ "$("$B" volume status "$W" --query 'SourceKmsKeyIds[0]' --output text)" = "$K1" ] || fail "source key"
check_vol "$W" "$T/sums1"
# writes go to K2's lineage (copy-up of each written block)
D=$(attach_loop "$W"); mount "$D" "$T/m"
head -c 3M /dev/urandom > "$T/m/new"; head -c 5000 /dev/urandom >> "$T/m/d/f3"; sync
sums "$T/m" > "$T/sums2"
umount "$T/m"
expect_err VolumeInUse "$B" volume rekey "$W"     # while attached: refused
"$B" volume detach "$W"
n1=$(other_keys "$W")
[ "$n1" -lt "$n0" ] || fail "writes left every block on K1 ($n0 → $n1)"
SP=$(q create-snapshot --volume-id "$W" --description partial --query SnapshotId)   # part-way

# --- until rekeyed the volume needs both keys: K1 disabled refuses attach with the key service's error
"$B" kms disable-key --key-id "$K1"
expect_err KMS.DisabledException "$B" volume attach "$W"
expect_err KMS.DisabledException "$B" volume rekey "$W"
expect_err KMS.DisabledException "$B" volume fsck "$SP"
expect_err KMS.DisabledException "$B" ec2 create-volume --snapshot-id "$S" --kms-key-id "$K2"
"$B" kms enable-key --key-id "$K1"

# --- volume rekey, killed with -9 part-way (one block per transaction), then run again
"$B" volume rekey "$W" --batch 1 >/dev/null 2>&1 &
RK=$!
sleep 0.3; kill -9 "$RK" 2>/dev/null || true; wait "$RK" 2>/dev/null || true
n2=$(other_keys "$W")
echo "vol_rekey: rekey killed with $n2 of $n1 blocks left"
[ "$n2" -le "$n1" ] || fail "blocks left grew after a killed rekey"
"$B" volume fsck "$W" >/dev/null || fail "fsck after a killed rekey"
"$B" volume sweep >/dev/null
out=$("$B" volume rekey "$W")
[ "$(echo "$out" | jq -r .BlocksRekeyed)" = "$n2" ] || fail "the rerun rekeyed $(echo "$out" | jq -r .BlocksRekeyed), expected $n2"
[ "$(echo "$out" | jq -r .KmsKeyId)" = "$K2" ] || fail "rekey output: $out"
[ "$(other_keys "$W")" = 0 ] || fail "blocks left after rekey"
[ "$("$B" volume status "$W" --query RekeyState --output text)" = completed ] || fail "rekey state after"
[ "$("$B" volume rekey "$W" --query BlocksRekeyed --output text)" = 0 ] || fail "a second rekey moved blocks"

# --- K1 disabled: the rekeyed volume attaches, e2fsck -fn clean, every checksum right
"$B" kms disable-key --key-id "$K1"
check_vol "$W" "$T/sums2"
"$B" volume fsck "$W" >/dev/null || fail "fsck of the rekeyed volume"
expect_err KMS.DisabledException "$B" volume attach "$X"   # before rekey, the source key disabled
[ "$(q describe-volumes --volume-ids "$X" --query 'Volumes[0].State')" = available ] || fail "a refused attach left $X in-use"
expect_err KMS.DisabledException "$B" ec2 create-volume --snapshot-id "$SP"
"$B" kms enable-key --key-id "$K1"
# the snapshot taken part-way keeps its chunks' lineages: it restores whole
"$B" volume fsck "$SP" >/dev/null || fail "fsck of the partial snapshot"
WP=$(q create-volume --snapshot-id "$SP" --query VolumeId)
check_vol "$WP" "$T/sums2"
# and through the EBS direct API (get-snapshot-block opens each block under its own lineage's key)
"$B" snapshot download "$SP" "$T/sp.img" >/dev/null
e2fsck -fn "$T/sp.img" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "e2fsck of the downloaded partial snapshot"; }
mount -o loop,ro "$T/sp.img" "$T/m"; sums "$T/m" | diff - "$T/sums2" || fail "checksums of the downloaded partial snapshot"
umount "$T/m"; rm -f "$T/sp.img"

# --- deleting everything frees every chunk
for s in $(q describe-snapshots --query 'Snapshots[*].SnapshotId'); do "$B" ec2 delete-snapshot --snapshot-id "$s"; done
for v in $(q describe-volumes --query 'Volumes[*].VolumeId'); do "$B" ec2 delete-volume --volume-id "$v"; done
[ -z "$(find "$VS/chunks" -type f)" ] || fail "chunks left after deleting everything"
echo "vol_rekey: ok"
