#!/usr/bin/env bash
# vol_remote_kms.sh — volumes with their keys from a key-service server over HTTP (SigV4): our own
# `envelopefs kms serve` and moto. The default key alias/aws/ebs is created through the server on first
# use; the attach daemon reopens the remote client after it forks; a point-in-time snapshot of the
# attached volume restores to the same bytes; a snapshot signed and verified through the server.
set -euo pipefail
[ -e /dev/fuse ] || { echo "SKIP: /dev/fuse absent"; exit 77; }
source "$(dirname "$0")/../server/lib.sh"
VS=$T/volumes
vol_cleanup() {
  for v in $(ls "$VS"/run 2>/dev/null | sed -n 's/\.json$//p'); do "$B" volume --volume-store "$VS" detach "$v" >/dev/null 2>&1 || true; done
  cleanup
}
trap vol_cleanup EXIT
start_server
export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_REGION=us-east-1

round_trip() { # round_trip URL STORE: create, attach, write, snapshot while attached, restore, compare
  local url=$1 vs=$2 v w img img2 s
  local g=(--kms "$url" --volume-store "$vs")
  v=$("$B" ec2 "${g[@]}" create-volume --size 1 --query VolumeId --output text)
  case $("$B" ec2 "${g[@]}" describe-volumes --volume-ids "$v" --query 'Volumes[0].KmsKeyId' --output text) in
    arn:aws:kms:*:key/*) ;; *) fail "$url: KmsKeyId";; esac
  img=$("$B" volume "${g[@]}" attach "$v" --query Image --output text)
  head -c 1M /dev/urandom > "$T/data"
  dd if="$T/data" of="$img" bs=64k seek=3 conv=notrunc,fsync status=none
  s=$("$B" ec2 "${g[@]}" create-snapshot --volume-id "$v" --query SnapshotId --output text)
  head -c 1M /dev/urandom | dd of="$img" bs=64k seek=3 conv=notrunc,fsync status=none   # after the snapshot
  "$B" volume "${g[@]}" detach "$v"
  w=$("$B" ec2 "${g[@]}" create-volume --snapshot-id "$s" --query VolumeId --output text)
  img2=$("$B" volume "${g[@]}" attach "$w" --query Image --output text)
  cmp <(dd if="$img2" bs=64k skip=3 count=16 status=none) "$T/data" || fail "$url: the restore differs from the snapshot"
  "$B" volume "${g[@]}" detach "$w"
  "$B" volume "${g[@]}" fsck "$s" >/dev/null || fail "$url: fsck of the snapshot"
}
round_trip "$URL" "$VS"
# a snapshot signed through the server (Sign, MessageType DIGEST) and verified through it (Verify)
SIGNKEY=$("$B" kms --endpoint-url "$URL" create-key --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY --query KeyMetadata.Arn --output text)
SV=$("$B" ec2 --kms "$URL" --volume-store "$VS" describe-volumes --query 'Volumes[0].VolumeId' --output text)
SS=$("$B" ec2 --kms "$URL" --volume-store "$VS" create-snapshot --volume-id "$SV" --signing-key-id "$SIGNKEY" --query SnapshotId --output text)
"$B" volume --kms "$URL" --volume-store "$VS" fsck "$SS" --verify-signature >"$T/verify.json" || fail "verify through the server: $(cat "$T/verify.json")"
grep -q '"Result": "Valid"' "$T/verify.json" || fail "verify through the server: $(cat "$T/verify.json")"
# the store's own key service saw the data keys being made (the server writes its audit trail in batches:
# stopping it flushes them)
stop_server
"$B" kms lookup-audit --operation GenerateDataKeyWithoutPlaintext --query 'Events[0].EventName' --output text | grep -q GenerateDataKeyWithoutPlaintext \
  || fail "no GenerateDataKeyWithoutPlaintext in the audit trail"
if command -v moto_server >/dev/null; then
  start_moto
  round_trip "$MOTO_URL" "$T/volumes-moto"
fi
echo "vol_remote_kms: ok"
