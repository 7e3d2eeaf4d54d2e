#!/usr/bin/env bash
# cli_access.sh — key policies and grants through `envelopefs kms` on an embedded store: the local caller is
# the store account's root, --as-user names another principal (a user of the account, or any principal
# ARN), and put-/get-/list-key-policies, create-/list-/list-retirable-/retire-/revoke-grant behave as AWS's.
set -euo pipefail
B=${ENVELOPEFS_BIN:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
export ENVELOPEFS_STORE=$T/store
fail() { echo "FAIL: $*" >&2; exit 1; }
j() { python3 -c 'import json,sys; d=json.load(sys.stdin); [d:=d[k] for k in sys.argv[1].split(".")]; print(d)' "$1"; }
expect_err() {
  local name=$1; shift
  set +e; "$@" >"$T/out" 2>"$T/err"; local rc=$?; set -e
  [ $rc -eq 254 ] || fail "$* exited $rc, expected 254 ($(cat "$T/err"))"
  grep -q "An error occurred ($name) when calling the" "$T/err" || fail "$*: expected $name, got: $(cat "$T/err")"
}
A=111122223333 OTHER=444455556666
BOB=arn:aws:iam::$OTHER:user/bob
$B kms init-store --generate-root-key --account $A >/dev/null

KID=$($B kms create-key | j KeyMetadata.KeyId)
ARN=arn:aws:kms:us-east-1:$A:key/$KID
# the default policy: the account root, i.e. every principal of the account
$B kms get-key-policy --key-id "$KID" --policy-name default --query Policy --output text >"$T/default.json"
grep -q "arn:aws:iam::$A:root" "$T/default.json" || fail "default policy $(cat "$T/default.json")"
[ "$($B kms list-key-policies --key-id "$KID" --query 'PolicyNames[0]' --output text)" = default ] || fail "list-key-policies"
$B kms --as-user alice describe-key --key-id "$KID" >/dev/null || fail "a user of the account"
expect_err AccessDeniedException $B kms --as-user "$BOB" describe-key --key-id "$ARN"
grep -q "User: $BOB is not authorized to perform: kms:DescribeKey on resource: $ARN because no resource-based policy allows the kms:DescribeKey action" "$T/err" || fail "denial message: $(cat "$T/err")"
# --as-user is for local stores
set +e; $B kms --as-user bob --endpoint-url http://127.0.0.1:9 list-keys >/dev/null 2>&1; rc=$?; set -e
[ $rc -ne 0 ] || fail "--as-user with an endpoint"

# a policy allowing bob to encrypt and decrypt; malformed ones are refused and change nothing
cat >"$T/policy.json" <<P
{"Version":"2012-10-17","Statement":[
 {"Sid":"owner","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::$A:root"},"Action":"kms:*","Resource":"*"},
 {"Sid":"bob","Effect":"Allow","Principal":{"AWS":"$BOB"},"Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*",
  "Condition":{"StringEquals":{"kms:EncryptionContext:app":"cli"}}}]}
P
echo '{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Colour":"red"}]}' >"$T/bad.json"
expect_err MalformedPolicyDocumentException $B kms put-key-policy --key-id "$KID" --policy "file://$T/bad.json"
grep -q Colour "$T/err" || fail "the message names the element"
expect_err MalformedPolicyDocumentException $B kms create-key --policy "file://$T/bad.json"
cmp -s <($B kms get-key-policy --key-id "$KID" --query Policy --output text) "$T/default.json" || fail "old policy kept"
echo "{\"Statement\":{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"$BOB\"},\"Action\":\"kms:*\",\"Resource\":\"*\"}}" >"$T/lockout.json"
expect_err MalformedPolicyDocumentException $B kms put-key-policy --key-id "$KID" --policy "file://$T/lockout.json"
grep -q "will not allow you to update the key policy" "$T/err" || fail "lockout message"
$B kms put-key-policy --key-id "$KID" --policy "file://$T/policy.json"
$B kms get-key-policy --key-id "$KID" --query Policy --output text | grep -q '"Sid":"bob"\|"Sid": "bob"' || fail "policy stored"
BLOB=$($B kms --as-user "$BOB" encrypt --key-id "$ARN" --plaintext aGk= --encryption-context app=cli --query CiphertextBlob --output text)
[ "$($B kms --as-user "$BOB" decrypt --ciphertext-blob "$BLOB" --encryption-context app=cli --query Plaintext --output text)" = aGk= ] || fail "bob decrypts"
expect_err AccessDeniedException $B kms --as-user "$BOB" encrypt --key-id "$ARN" --plaintext aGk= --encryption-context app=other
expect_err AccessDeniedException $B kms --as-user "$BOB" generate-data-key --key-id "$ARN" --key-spec AES_256 --encryption-context app=cli
expect_err AccessDeniedException $B kms --as-user arn:aws:iam::$OTHER:user/carol decrypt --ciphertext-blob "$BLOB" --encryption-context app=cli

# grants: carol may generate data keys for volume vol-1 only; she retires the grant herself
CAROL=arn:aws:iam::$OTHER:user/carol
$B kms create-grant --key-id "$KID" --grantee-principal "$CAROL" --retiring-principal "$CAROL" \
  --operations GenerateDataKey Decrypt --constraints '{"EncryptionContextSubset":{"aws:ebs:id":"vol-1"}}' --name vol-1 >"$T/g.json"
GID=$(j GrantId <"$T/g.json"); TOK=$(j GrantToken <"$T/g.json")
[ "$($B kms create-grant --key-id "$KID" --grantee-principal "$CAROL" --retiring-principal "$CAROL" \
  --operations GenerateDataKey Decrypt --constraints '{"EncryptionContextSubset":{"aws:ebs:id":"vol-1"}}' --name vol-1 | j GrantId)" = "$GID" ] || fail "idempotent by name"
[ "$($B kms list-grants --key-id "$KID" --query 'Grants[0].GrantId' --output text)" = "$GID" ] || fail "list-grants"
$B kms --as-user "$CAROL" list-retirable-grants --retiring-principal "$CAROL" | grep -q "$GID" || fail "list-retirable-grants"
$B kms --as-user "$CAROL" generate-data-key --key-id "$ARN" --key-spec AES_256 --encryption-context aws:ebs:id=vol-1 --grant-tokens "$TOK" >/dev/null || fail "grant used"
expect_err AccessDeniedException $B kms --as-user "$CAROL" generate-data-key --key-id "$ARN" --key-spec AES_256 --encryption-context aws:ebs:id=vol-2
expect_err AccessDeniedException $B kms --as-user "$CAROL" encrypt --key-id "$ARN" --plaintext aGk= --encryption-context aws:ebs:id=vol-1
expect_err ValidationException $B kms describe-key --key-id "$KID" --grant-tokens a b c d e f g h i j k
expect_err InvalidGrantTokenException $B kms describe-key --key-id "$KID" --grant-tokens not-a-token
expect_err AccessDeniedException $B kms --as-user "$BOB" retire-grant --grant-token "$TOK"
$B kms --as-user "$CAROL" retire-grant --grant-token "$TOK"
expect_err InvalidGrantTokenException $B kms retire-grant --grant-token "$TOK"
[ "$($B kms list-retirable-grants --retiring-principal arn:aws:iam::$A:root --query Grants)" = "[]" ] || fail "root's retirable grants"
expect_err AccessDeniedException $B kms --as-user "$CAROL" generate-data-key --key-id "$ARN" --key-spec AES_256 --encryption-context aws:ebs:id=vol-1
# revoke by id
GID2=$($B kms create-grant --key-id "$KID" --grantee-principal "$CAROL" --operations DescribeKey | j GrantId)
$B kms --as-user "$CAROL" describe-key --key-id "$ARN" >/dev/null || fail "DescribeKey grant"
$B kms revoke-grant --key-id "$KID" --grant-id "$GID2"
expect_err AccessDeniedException $B kms --as-user "$CAROL" describe-key --key-id "$ARN"
expect_err NotFoundException $B kms revoke-grant --key-id "$KID" --grant-id "$GID2"
[ "$($B kms list-grants --key-id "$KID" --query Grants)" = "[]" ] || fail "grants left"

# another account's keys: its own, with its own ARN; invisible by id to this account
BK=$($B kms --as-user "$BOB" create-key | j KeyMetadata.Arn)
[[ $BK == arn:aws:kms:us-east-1:$OTHER:key/* ]] || fail "B's key ARN $BK"
expect_err NotFoundException $B kms describe-key --key-id "${BK##*/}"
expect_err AccessDeniedException $B kms describe-key --key-id "$BK"
[ "$($B kms --as-user "$BOB" list-keys --query 'Keys[0].KeyArn' --output text)" = "$BK" ] || fail "B lists its key"
echo "cli_access: ok"
