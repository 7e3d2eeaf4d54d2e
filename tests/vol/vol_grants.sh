#!/usr/bin/env bash
# vol_grants.sh — attachments hold grants as EBS's do. Under a key policy in AWS's EBS pattern (the user
# may CreateGrant only with kms:GrantIsForAWSResource, and may not Decrypt at all), `volume attach` works
# through the grant it makes: list-grants shows one grant, Decrypt only, constrained to the volume's
# aws:ebs:id, retirable by ec2.REGION.amazonaws.com; the audit trail shows CreateGrant (invokedBy EC2) and
# the Decrypt it allowed (additionalEventData.grantId); detach retires it; a daemon killed with -9 leaves
# its grant and the next attach (or delete-volume) retires it; a policy that denies CreateGrant refuses the attach with
# AccessDeniedException and leaves no grant. The same through `envelopefs kms serve` (--kms URL), where
# only an access key the server trusts (--trust-via-service) may speak for EC2.
set -euo pipefail
[ -e /dev/fuse ] || { echo "SKIP: /dev/fuse absent"; exit 77; }
source "$(dirname "$0")/../server/lib.sh"
VS=$ENVELOPEFS_STORE/volumes
vol_cleanup() {
  for v in $(ls "$VS"/run 2>/dev/null | sed -n 's/\.json$//p'); do "$B" volume detach "$v" >/dev/null 2>&1 || true; done
  for m in "$VS"/run/*.mnt; do umount -l "$m" 2>/dev/null || true; done  # (dead mounts too: stat fails on them)
  cleanup
}
trap vol_cleanup EXIT
"$B" kms init-store --generate-root-key >/dev/null
ACCT=$("$B" kms create-key --query KeyMetadata.AWSAccountId --output text)
ALICE=arn:aws:iam::$ACCT:user/alice
BOB=arn:aws:iam::$ACCT:user/bob
ADMIN=(kms --as-user admin)

policy() { # policy EXTRA_STATEMENTS: admin may do all; alice and bob the EBS pattern, no Decrypt
  cat <<EOF
{"Version":"2012-10-17","Statement":[
 {"Sid":"Admin","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::$ACCT:user/admin"},"Action":"kms:*","Resource":"*"},
 {"Sid":"Use","Effect":"Allow","Principal":{"AWS":["$ALICE","$BOB"]},"Action":["kms:GenerateDataKeyWithoutPlaintext","kms:DescribeKey"],"Resource":"*"},
 {"Sid":"Allow attachment of persistent resources","Effect":"Allow","Principal":{"AWS":["$ALICE","$BOB"]},
  "Action":["kms:CreateGrant","kms:ListGrants","kms:RevokeGrant"],"Resource":"*",
  "Condition":{"Bool":{"kms:GrantIsForAWSResource":"true"}}}$1]}
EOF
}
K=$("$B" "${ADMIN[@]}" create-key --policy "$(policy '')" --query KeyMetadata.Arn --output text)

grants() { "$B" "${ADMIN[@]}" list-grants --key-id "$K" --output json; }
ngrants() { grants | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Grants"]))'; }
# events NAME: the CloudTrail records of NAME on K, newest first, one JSON per line
events() {
  "$B" kms lookup-audit --lookup-attributes "AttributeKey=EventName,AttributeValue=$1" --max-results 50 --output json |
    python3 -c 'import json,sys
for e in json.load(sys.stdin)["Events"]: print(e["CloudTrailEvent"])'
}
pid_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Pid"])' "$VS/run/$1.json"; }
expect_denied() { # expect_denied CMD...: fails naming AccessDeniedException
  local out rc=0; out=$("$@" 2>&1) || rc=$?
  [ "$rc" != 0 ] || fail "expected a refusal from $*"
  case $out in *AccessDeniedException*) ;; *) fail "expected AccessDeniedException from $*, got: $out";; esac
}

# check_attached VOL GRANTEE: one grant, Decrypt only, constrained to VOL, retirable by EC2; prints its id
check_attached() {
  grants | python3 -c '
import json, sys
g = json.load(sys.stdin)["Grants"]
assert len(g) == 1, "%d grants" % len(g)
g = g[0]
assert g["Operations"] == ["Decrypt"], g
assert g["Constraints"] == {"EncryptionContextSubset": {"aws:ebs:id": sys.argv[1]}}, g
assert g["RetiringPrincipal"] == "ec2.us-east-1.amazonaws.com", g
assert g["GranteePrincipal"] == sys.argv[2], g
print(g["GrantId"])' "$1" "$2" || fail "the attachment's grant"
}
# check_trail GID VOL USER: CreateGrant by USER via EC2 answered GID; a Decrypt of VOL's key allowed by GID
check_trail() {
  events CreateGrant | python3 -c '
import json, sys
gid, vol, user = sys.argv[1:]
for l in sys.stdin:
    e = json.loads(l)
    if (e.get("responseElements") or {}).get("grantId") == gid:
        assert e["userIdentity"]["userName"] == user and e["userIdentity"]["invokedBy"] == "ec2.amazonaws.com", e
        assert e["requestParameters"]["operations"] == ["Decrypt"], e
        assert e["requestParameters"]["constraints"] == {"EncryptionContextSubset": {"aws:ebs:id": vol}}, e
        sys.exit(0)
sys.exit("no CreateGrant answered " + gid)' "$1" "$2" "$3" || fail "CreateGrant in the trail"
  events Decrypt | python3 -c '
import json, sys
gid, vol = sys.argv[1:3]
ok = [e for e in map(json.loads, sys.stdin) if (e.get("additionalEventData") or {}).get("grantId") == gid]
assert ok, "no Decrypt under grant " + gid
assert all(e["requestParameters"]["encryptionContext"] == {"aws:ebs:id": vol} and "errorCode" not in e for e in ok), ok' \
    "$1" "$2" "$3" || fail "Decrypt under the grant in the trail"
}
check_retired() { # check_retired GID: a RetireGrant of GID by EC2, succeeded
  events RetireGrant | python3 -c '
import json, sys
ok = [e for e in map(json.loads, sys.stdin) if e["requestParameters"].get("grantId") == sys.argv[1] and "errorCode" not in e]
assert ok and ok[0]["userIdentity"]["invokedBy"] == "ec2.amazonaws.com", ok' "$1" || fail "RetireGrant of $1 in the trail"
}

# scenario USER GRANTEE EC2_OPTS...: the whole life of one volume's grants
scenario() {
  local user=$1 grantee=$2 v img gid gid2 pid; shift 2
  local ec2=("$@")
  v=$("$B" ec2 "${ec2[@]}" create-volume --size 1 --kms-key-id "$K" --query VolumeId --output text)
  [ "$(ngrants)" = 0 ] || fail "a grant before attach"
  img=$("$B" volume "${ec2[@]}" attach "$v" --query Image --output text)
  gid=$(check_attached "$v" "$grantee")
  check_trail "$gid" "$v" "$user"
  head -c 256k /dev/urandom > "$T/data"
  dd if="$T/data" of="$img" bs=64k seek=2 conv=notrunc,fsync status=none
  cmp <(dd if="$img" bs=64k skip=2 count=4 iflag=direct status=none) "$T/data" || fail "data through the volume"
  "$B" volume "${ec2[@]}" detach "$v"
  [ "$(ngrants)" = 0 ] || fail "a grant left after detach"
  check_retired "$gid"
  # a daemon killed with -9 leaves its grant; the next attach retires it and makes its own
  img=$("$B" volume "${ec2[@]}" attach "$v" --query Image --output text)
  gid=$(check_attached "$v" "$grantee")
  pid=$(pid_of "$v")
  kill -9 "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  [ "$(ngrants)" = 1 ] || fail "the killed daemon's grant should still be there"
  img=$("$B" volume "${ec2[@]}" attach "$v" --query Image --output text)
  gid2=$(check_attached "$v" "$grantee")
  [ "$gid2" != "$gid" ] || fail "the stale grant was reused"
  check_retired "$gid"
  cmp <(dd if="$img" bs=64k skip=2 count=4 iflag=direct status=none) "$T/data" || fail "data after the reattach"
  "$B" volume "${ec2[@]}" detach "$v"
  [ "$(ngrants)" = 0 ] || fail "a grant left after the last detach"
  check_retired "$gid2"
  VOL=$v
}

# --- embedded: alice's calls go through EC2 (kms:ViaService), the grantee is alice
scenario alice "$ALICE" --as-user alice
# the grant is honest: it allowed Decrypt of that volume's context only, and alice has nothing else
expect_denied "$B" kms --as-user alice create-grant --key-id "$K" --grantee-principal "$ALICE" --operations Decrypt
expect_denied "$B" kms --as-user alice generate-data-key --key-id "$K" --key-spec AES_256 --encryption-context "aws:ebs:id=$VOL"
# a policy that denies alice CreateGrant: the attach is refused, nothing is left behind
"$B" "${ADMIN[@]}" put-key-policy --key-id "$K" --policy-name default --policy "$(policy ',
 {"Sid":"NoGrants","Effect":"Deny","Principal":{"AWS":"'"$ALICE"'"},"Action":"kms:CreateGrant","Resource":"*"}')"
expect_denied "$B" volume --as-user alice attach "$VOL"
[ "$("$B" ec2 describe-volumes --volume-ids "$VOL" --query 'Volumes[0].State' --output text)" = available ] || fail "a refused attach left the volume in-use"
[ "$(ngrants)" = 0 ] || fail "a refused attach left a grant"
# (to a file first: `head -1` closing the pipe would fail the listing with EPIPE under pipefail)
events CreateGrant >"$T/creategrant.events"
head -1 "$T/creategrant.events" | grep -q '"errorCode":"AccessDeniedException"' || fail "the refused CreateGrant is not in the trail"
"$B" "${ADMIN[@]}" put-key-policy --key-id "$K" --policy-name default --policy "$(policy '')"
# a killed daemon's grant also goes when its volume is deleted without another attach
"$B" volume --as-user alice attach "$VOL" >/dev/null
GID=$(check_attached "$VOL" "$ALICE")
PID=$(pid_of "$VOL"); kill -9 "$PID"
for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
"$B" ec2 --as-user alice delete-volume --volume-id "$VOL"
[ "$(ngrants)" = 0 ] || fail "delete-volume left the killed daemon's grant"
check_retired "$GID"
"$B" kms validate-audit >/dev/null || fail "validate-audit"

# --- through the server: alice's access key is trusted to speak for EC2, bob's is not
"$B" kms create-access-key --user alice >"$T/ak.json"
AK=$(jget AccessKey.AccessKeyId <"$T/ak.json"); SK=$(jget AccessKey.SecretAccessKey <"$T/ak.json")
"$B" kms create-access-key --user bob >"$T/bk.json"
BK=$(jget AccessKey.AccessKeyId <"$T/bk.json"); BS=$(jget AccessKey.SecretAccessKey <"$T/bk.json")
start_server --trust-via-service "$AK"
export AWS_REGION=us-east-1
# (over http the client does not know its own ARN: the grantee is the key's account, as EBS's is EC2's role)
AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK scenario alice "arn:aws:iam::$ACCT:root" --kms "$URL"
V2=$(AWS_ACCESS_KEY_ID=$BK AWS_SECRET_ACCESS_KEY=$BS "$B" ec2 --kms "$URL" create-volume --size 1 --kms-key-id "$K" --query VolumeId --output text)
AWS_ACCESS_KEY_ID=$BK AWS_SECRET_ACCESS_KEY=$BS expect_denied "$B" volume --kms "$URL" attach "$V2"
[ "$(ngrants)" = 0 ] || fail "an untrusted key made a grant"
stop_server
"$B" kms validate-audit >/dev/null || fail "validate-audit after the server"
echo "vol_grants: ok"
