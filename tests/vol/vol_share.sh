#!/usr/bin/env bash
# vol_share.sh — cross-account snapshot sharing end to end over the key-service server, with two
# accounts' access keys on one volume store: account A creates a key, a volume with data and a snapshot,
# shares the snapshot with B and allows B on its key (a grant, then a policy statement); B sees it (--restorable-by-user-ids self), restores
# it, copies it under B's own key; A revokes the key access (B's restore is refused by the key service)
# and the permission (the snapshot no longer exists for B); B's copy still restores to the same bytes.
# Plus EC2's refusals (public, default key, non-owner, malformed account ids) and an old catalog without
# the owner tables.
set -euo pipefail
[ -e /dev/fuse ] || { echo "SKIP: /dev/fuse absent"; exit 77; }
source "$(dirname "$0")/../server/lib.sh"
VS=$T/volumes
A=111122223333 BB=444455556666
vol_cleanup() {
  for v in $(ls "$VS"/run 2>/dev/null | sed -n 's/\.json$//p'); do "$B" volume --volume-store "$VS" detach "$v" >/dev/null 2>&1 || true; done
  cleanup
}
trap vol_cleanup EXIT
"$B" kms init-store --generate-root-key --account $A >/dev/null
key_of() { "$B" kms create-access-key --account "$1" --user "$2" >"$T/ak.json"; jget AccessKey.AccessKeyId <"$T/ak.json"; jget AccessKey.SecretAccessKey <"$T/ak.json"; }
read -r -d '' AKA SKA < <(key_of $A root; printf '\0') || true
read -r -d '' AKB SKB < <(key_of $BB root; printf '\0') || true
AK=$AKA SK=$SKA
start_server
export AWS_REGION=us-east-1
# as ACCOUNT-LETTER COMMAND...: the envelopefs CLI with that account's access key against the server
as() {
  local who=$1; shift
  if [ "$who" = a ]; then AWS_ACCESS_KEY_ID=$AKA AWS_SECRET_ACCESS_KEY=$SKA "$B" "$@"
  else AWS_ACCESS_KEY_ID=$AKB AWS_SECRET_ACCESS_KEY=$SKB "$B" "$@"; fi
}
ec2() { local who=$1; shift; as "$who" ec2 --kms "$URL" --volume-store "$VS" "$@"; }
vol() { local who=$1; shift; as "$who" volume --kms "$URL" --volume-store "$VS" "$@"; }
kms() { local who=$1; shift; as "$who" kms --kms "$URL" "$@"; }
ebs() { local who=$1; shift; as "$who" ebs --kms "$URL" --volume-store "$VS" "$@"; }
expect_err() { # expect_err CODE COMMAND...: exit 254 and EC2's (or the key service's) error code
  local code=$1 out rc=0; shift
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = 254 ] || fail "expected exit 254 from $*, got $rc: $out"
  case $out in *"An error occurred ($code)"*) ;; *) fail "expected $code from $*, got: $out";; esac
}
# restore SNAPSHOT WHO: a volume from it, attached, its first MiB compared with $T/data, detached
restore_cmp() {
  local v img
  v=$(ec2 "$2" create-volume --snapshot-id "$1" --query VolumeId --output text)
  img=$(vol "$2" attach "$v" --query Image --output text)
  cmp <(dd if="$img" bs=64k skip=3 count=16 status=none) "$T/data" || fail "restore of $1 as $2 differs"
  vol "$2" detach "$v"
  echo "$v"
}

# --- A: a key, a volume with data, a snapshot
KA=$(kms a create-key --query KeyMetadata.Arn --output text)
KB=$(kms b create-key --query KeyMetadata.Arn --output text)
case $KA in arn:aws:kms:*:$A:key/*) ;; *) fail "A's key ARN: $KA";; esac
case $KB in arn:aws:kms:*:$BB:key/*) ;; *) fail "B's key ARN: $KB";; esac
v=$(ec2 a create-volume --size 1 --kms-key-id "$KA" --query VolumeId --output text)
img=$(vol a attach "$v" --query Image --output text)
head -c 1M /dev/urandom >"$T/data"
dd if="$T/data" of="$img" bs=64k seek=3 conv=notrunc,fsync status=none
vol a detach "$v"
s=$(ec2 a create-snapshot --volume-id "$v" --query SnapshotId --output text)
[ "$(ec2 a describe-snapshots --snapshot-ids "$s" --query 'Snapshots[0].OwnerId' --output text)" = $A ] || fail "OwnerId of A's snapshot"

# --- before sharing: nothing of A's exists for B
expect_err InvalidSnapshot.NotFound ec2 b describe-snapshots --snapshot-ids "$s"
expect_err InvalidSnapshot.NotFound ec2 b create-volume --snapshot-id "$s"
expect_err InvalidSnapshot.NotFound ec2 b copy-snapshot --source-snapshot-id "$s" --kms-key-id "$KB"
expect_err InvalidSnapshot.NotFound ec2 b modify-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission --operation-type add --user-ids $BB
expect_err InvalidVolume.NotFound ec2 b create-snapshot --volume-id "$v"
expect_err InvalidVolume.NotFound ec2 b delete-volume --volume-id "$v"
expect_err InvalidVolume.NotFound vol b attach "$v"
expect_err ResourceNotFoundException ebs b list-snapshot-blocks --snapshot-id "$s"
[ "$(ec2 b describe-volumes | jq '.Volumes | length')" = 0 ] || fail "B sees A's volume"
[ "$(ec2 b describe-snapshots | jq '.Snapshots | length')" = 0 ] || fail "B sees A's snapshot"
[ "$(ec2 a describe-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission | jq '.CreateVolumePermissions | length')" = 0 ] \
  || fail "a new snapshot is shared"

# --- the refusals
expect_err OperationNotPermitted ec2 a modify-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission --operation-type add --group-names all
expect_err OperationNotPermitted ec2 a modify-snapshot-attribute --snapshot-id "$s" --create-volume-permission '{"Add":[{"Group":"all"}]}'
expect_err InvalidUserID.Malformed ec2 a modify-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission --operation-type add --user-ids 12345
expect_err InvalidUserID.Malformed ec2 a modify-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission --operation-type add --user-ids $BB bob
expect_err InvalidParameterValue ec2 a modify-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission --operation-type share --user-ids $BB
expect_err InvalidParameterValue ec2 a modify-snapshot-attribute --snapshot-id "$s" --attribute productCodes --operation-type add --user-ids $BB
expect_err MissingParameter ec2 a modify-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission --user-ids $BB
expect_err InvalidParameterCombination ec2 a modify-snapshot-attribute --snapshot-id "$s" \
  --create-volume-permission "{\"Add\":[{\"UserId\":\"$BB\"}],\"Remove\":[{\"UserId\":\"$A\"}]}"
expect_err InvalidSnapshotID.Malformed ec2 a modify-snapshot-attribute --snapshot-id snap-nope --attribute createVolumePermission --operation-type add --user-ids $BB
expect_err InvalidUserID.Malformed ec2 b describe-snapshots --owner-ids someone
expect_err InvalidUserID.Malformed ec2 b describe-snapshots --restorable-by-user-ids 1234
expect_err DryRunOperation ec2 a modify-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission --operation-type add --user-ids $BB --dry-run
[ "$(ec2 a describe-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission | jq '.CreateVolumePermissions | length')" = 0 ] \
  || fail "a refused or dry-run modification changed the permissions"
# a snapshot under the default key alias/aws/ebs cannot be shared
vd=$(ec2 a create-volume --size 1 --query VolumeId --output text)
sd=$(ec2 a create-snapshot --volume-id "$vd" --query SnapshotId --output text)
expect_err OperationNotPermitted ec2 a modify-snapshot-attribute --snapshot-id "$sd" --attribute createVolumePermission --operation-type add --user-ids $BB
# the encryption defaults are each account's own: B's default key is B's, and A changing its default
# leaves B's alone
vbd=$(ec2 b create-volume --size 1 --query VolumeId --output text)
case $(ec2 b describe-volumes --volume-ids "$vbd" --query 'Volumes[0].KmsKeyId' --output text) in
  arn:aws:kms:*:$BB:key/*) ;; *) fail "B's default key is not in B's account";; esac
ec2 a modify-ebs-default-kms-key-id --kms-key-id "$KA" >/dev/null
case $(ec2 b get-ebs-default-kms-key-id --query KmsKeyId --output text) in
  arn:aws:kms:*:$BB:alias/aws/ebs) ;; *) fail "A's modify-ebs-default-kms-key-id changed B's";; esac
[ "$(ec2 a get-ebs-default-kms-key-id --query KmsKeyId --output text)" = "$KA" ] || fail "A's default key"
ec2 a reset-ebs-default-kms-key-id >/dev/null
ec2 b delete-volume --volume-id "$vbd"

# --- A shares the snapshot with B (the JSON form), B sees it but the key still refuses B
ec2 a modify-snapshot-attribute --snapshot-id "$s" --create-volume-permission "{\"Add\":[{\"UserId\":\"$BB\"}]}"
[ "$(ec2 a describe-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission --query 'CreateVolumePermissions[0].UserId' --output text)" = $BB ] \
  || fail "describe-snapshot-attribute does not show B"
[ "$(ec2 b describe-snapshots --restorable-by-user-ids self --query 'Snapshots[].SnapshotId' --output text)" = "$s" ] || fail "restorable by B"
[ "$(ec2 b describe-snapshots --snapshot-ids "$s" --query 'Snapshots[0].OwnerId' --output text)" = $A ] || fail "OwnerId as B sees it"
[ "$(ec2 b describe-snapshots --owner-ids self | jq '.Snapshots | length')" = 0 ] || fail "B owns A's snapshot"
[ "$(ec2 b describe-snapshots --owner-ids $A --query 'Snapshots[].SnapshotId' --output text)" = "$s" ] || fail "--owner-ids A as B"
[ "$(ec2 a describe-snapshots --restorable-by-user-ids $BB --query 'Snapshots[].SnapshotId' --output text)" = "$s" ] || fail "A: restorable by B"
[ "$(ec2 a describe-snapshots --restorable-by-user-ids self | jq '.Snapshots | length')" = 2 ] || fail "A: restorable by self"
expect_err UnauthorizedOperation ec2 b modify-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission --operation-type add --user-ids $BB
expect_err UnauthorizedOperation ec2 b reset-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission
expect_err UnauthorizedOperation ec2 b describe-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission
expect_err UnauthorizedOperation ec2 b delete-snapshot --snapshot-id "$s"
expect_err KMS.AccessDeniedException ec2 b create-volume --snapshot-id "$s"

# --- A allows B on its key by a grant (Decrypt, constrained to the lineage's context): B restores; once
# the grant is revoked the key service refuses B again
G=$(kms a create-grant --key-id "$KA" --grantee-principal arn:aws:iam::$BB:root --operations Decrypt \
      --constraints "{\"EncryptionContextSubset\":{\"aws:ebs:id\":\"$v\"}}" --query GrantId --output text)
vg=$(restore_cmp "$s" b)
kms a revoke-grant --key-id "$KA" --grant-id "$G"
expect_err KMS.AccessDeniedException ec2 b create-volume --snapshot-id "$s"
ec2 b delete-volume --volume-id "$vg"

# --- A allows B on its key (a policy statement); B restores and copies under its own key
POLICY_A='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::'$A':root"},"Action":"kms:*","Resource":"*"}]}'
POLICY_AB='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::'$A':root"},"Action":"kms:*","Resource":"*"},
  {"Sid":"ShareWithB","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::'$BB':root"},
   "Action":["kms:Decrypt","kms:DescribeKey","kms:ReEncrypt*","kms:CreateGrant","kms:GenerateDataKeyWithoutPlaintext"],"Resource":"*"}]}'
kms a put-key-policy --key-id "$KA" --policy-name default --policy "$POLICY_AB"
vb=$(restore_cmp "$s" b)
# the EBS direct API: B reads the shared snapshot (the same bytes) but cannot write it
[ "$(ebs b list-snapshot-blocks --snapshot-id "$s" | jq '.Blocks | length')" = 3 ] || fail "B lists the shared snapshot's blocks"
as b snapshot --kms "$URL" --volume-store "$VS" download "$s" "$T/b.img" >/dev/null
cmp <(dd if="$T/b.img" bs=64k skip=3 count=16 status=none) "$T/data" || fail "B's download of the shared snapshot differs"
expect_err AccessDeniedException ebs b complete-snapshot --snapshot-id "$s" --changed-blocks-count 0
[ "$(ec2 b describe-volumes --query 'Volumes[].VolumeId' --output text)" = "$vb" ] || fail "B's restored volume is B's"
ec2 a describe-volumes --query 'Volumes[].VolumeId' --output text | grep -q "$vb" && fail "A sees B's volume"
c=$(ec2 b copy-snapshot --source-snapshot-id "$s" --kms-key-id "$KB" --description "B's copy" --query SnapshotId --output text)
[ "$(ec2 b describe-snapshots --snapshot-ids "$c" | jq -r '.Snapshots[0] | .OwnerId + " " + .KmsKeyId')" = "$BB $KB" ] \
  || fail "B's copy: owner and key"
expect_err InvalidSnapshot.NotFound ec2 a describe-snapshots --snapshot-ids "$c"

# --- A revokes: first the key access (the key service refuses B), then the permission (gone for B)
kms a put-key-policy --key-id "$KA" --policy-name default --policy "$POLICY_A"
sleep 0.01
expect_err KMS.AccessDeniedException ec2 b create-volume --snapshot-id "$s"
expect_err KMS.AccessDeniedException vol b attach "$vb"   # restored under A's key: closed with it
ec2 a modify-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission --operation-type remove --user-ids $BB
expect_err InvalidSnapshot.NotFound ec2 b describe-snapshots --snapshot-ids "$s"
expect_err InvalidSnapshot.NotFound ec2 b create-volume --snapshot-id "$s"
expect_err InvalidSnapshot.NotFound ec2 b copy-snapshot --source-snapshot-id "$s" --kms-key-id "$KB"
expect_err ResourceNotFoundException ebs b list-snapshot-blocks --snapshot-id "$s"
[ "$(ec2 b describe-snapshots --restorable-by-user-ids self --query 'Snapshots[].SnapshotId' --output text)" = "$c" ] || fail "B: only its copy"
# B's copy is B's own: it still restores to A's bytes
restore_cmp "$c" b >/dev/null
# A's snapshot is whole for A
restore_cmp "$s" a >/dev/null

# --- shorthand form, reset, delete takes the permissions with it
ec2 a modify-snapshot-attribute --snapshot-id "$s" --create-volume-permission "Add=[{UserId=$BB}]"
[ "$(ec2 b describe-snapshots | jq '.Snapshots | length')" = 2 ] || fail "shorthand Add"
ec2 a reset-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission
[ "$(ec2 b describe-snapshots | jq '.Snapshots | length')" = 1 ] || fail "reset"
ec2 a modify-snapshot-attribute --snapshot-id "$s" --attribute createVolumePermission --operation-type add --user-ids $BB
ec2 a delete-snapshot --snapshot-id "$s"
ec2 a describe-snapshots --snapshot-ids "$s" >/dev/null 2>&1 && fail "deleted snapshot still there"
python3 - "$VS/catalog.db" "$s" <<'P' || fail "a deleted snapshot left permission or owner rows"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
n = db.execute("SELECT (SELECT count(*) FROM create_volume_permissions WHERE snapshot = ?) + (SELECT count(*) FROM owners WHERE id = ?)",
               (sys.argv[2], sys.argv[2])).fetchone()[0]
sys.exit(1 if n else 0)
P

# --- an old catalog (format 1 before owners): opens, its rows belong to their key's account
stop_server
OLD=$T/old-volumes
"$B" ec2 --volume-store "$OLD" create-volume --size 1 --kms-key-id "$KA" >/dev/null
ov=$("$B" ec2 --volume-store "$OLD" describe-volumes --query 'Volumes[0].VolumeId' --output text)
os=$("$B" ec2 --volume-store "$OLD" create-snapshot --volume-id "$ov" --query SnapshotId --output text)
python3 - "$OLD/catalog.db" <<'P'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executescript("DROP TABLE owners; DROP TABLE create_volume_permissions;")
db.commit()
P
[ "$("$B" ec2 --volume-store "$OLD" describe-snapshots --snapshot-ids "$os" --query 'Snapshots[0].OwnerId' --output text)" = $A ] \
  || fail "old catalog: OwnerId"
[ "$("$B" ec2 --volume-store "$OLD" describe-volumes --query 'Volumes[0].VolumeId' --output text)" = "$ov" ] || fail "old catalog: volumes"
"$B" ec2 --volume-store "$OLD" describe-snapshot-attribute --snapshot-id "$os" --attribute createVolumePermission >/dev/null \
  || fail "old catalog: the new tables"
# another account of the store (embedded, --as-user) does not see the old rows
[ "$("$B" ec2 --as-user arn:aws:iam::$BB:root --volume-store "$OLD" describe-volumes | jq '.Volumes | length')" = 0 ] \
  || fail "old catalog: another account sees the store account's volume"
echo "vol_share: ok"
