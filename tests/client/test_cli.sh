#!/usr/bin/env bash
# test_cli.sh — `envelopefs kms` end to end on an embedded store: every verb, AWS-style error output
# and exit status, binary arguments (fileb://, base64), encryption context, rotation, deletion.
set -euo pipefail
B=${ENVELOPEFS_BIN:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
export ENVELOPEFS_STORE=$T/store
fail() { echo "FAIL: $*" >&2; exit 1; }
j() { python3 -c 'import json,sys; d=json.load(sys.stdin); [d:=d[k] for k in sys.argv[1].split(".")]; print(d)' "$1"; }
# expect_err NAME cmd...: the command fails with exit 254 and the AWS CLI's message naming NAME
expect_err() {
  local name=$1; shift
  set +e; "$@" >"$T/out" 2>"$T/err"; local rc=$?; set -e
  [ $rc -eq 254 ] || fail "$* exited $rc, expected 254 ($(cat "$T/err"))"
  grep -q "An error occurred ($name) when calling the" "$T/err" || fail "$*: expected $name, got: $(cat "$T/err")"
}

$B kms init-store --generate-root-key >/dev/null
[ "$(stat -c %a "$ENVELOPEFS_STORE/root.key")" = 600 ] || fail "root.key not 0600"
set +e; $B kms init-store --generate-root-key >/dev/null 2>&1; rc=$?; set -e
[ $rc -ne 0 ] || fail "init-store over an existing store succeeded"

KID=$($B kms create-key --description "cli test" --tags TagKey=team,TagValue=storage | j KeyMetadata.KeyId)
ARN=$($B kms describe-key --key-id "$KID" | j KeyMetadata.Arn)
[[ $ARN == arn:aws:kms:us-east-1:111122223333:key/$KID ]] || fail "ARN $ARN"
$B kms list-resource-tags --key-id "$KID" | grep -q storage || fail "tags"
$B kms create-alias --alias-name alias/app --target-key-id "$KID"
[ "$($B kms describe-key --key-id alias/app | j KeyMetadata.KeyId)" = "$KID" ] || fail "alias by name"
[ "$($B kms describe-key --key-id arn:aws:kms:us-east-1:111122223333:alias/app | j KeyMetadata.KeyId)" = "$KID" ] || fail "alias by ARN"
expect_err AlreadyExistsException $B kms create-alias --alias-name alias/app --target-key-id "$KID"
expect_err NotFoundException $B kms describe-key --key-id alias/missing
expect_err ValidationException $B kms create-alias --alias-name noprefix --target-key-id "$KID"

# data key round trip with context, through a fileb:// blob
$B kms generate-data-key --key-id alias/app --key-spec AES_256 --encryption-context purpose=test,fs=1 >"$T/dk.json"
PT=$(j Plaintext <"$T/dk.json")
j CiphertextBlob <"$T/dk.json" | base64 -d >"$T/blob"
[ "$($B kms decrypt --ciphertext-blob "fileb://$T/blob" --encryption-context fs=1,purpose=test --query Plaintext --output text)" = "$PT" ] || fail "decrypt fileb"
[ "$($B kms decrypt --ciphertext-blob "$(base64 -w0 "$T/blob")" --encryption-context '{"purpose":"test","fs":"1"}' | j Plaintext)" = "$PT" ] || fail "decrypt base64 + JSON context"
expect_err InvalidCiphertextException $B kms decrypt --ciphertext-blob "fileb://$T/blob" --encryption-context purpose=test,fs=2
expect_err InvalidCiphertextException $B kms decrypt --ciphertext-blob "fileb://$T/blob"

# encrypt / decrypt of a file; size limit
printf 'hello world' >"$T/pt"
$B kms encrypt --key-id "$KID" --plaintext "fileb://$T/pt" --query CiphertextBlob --output text | base64 -d >"$T/ct"
[ "$($B kms decrypt --ciphertext-blob "fileb://$T/ct" --query Plaintext --output text | base64 -d)" = "hello world" ] || fail "encrypt/decrypt"
head -c 4097 /dev/zero >"$T/big"
expect_err ValidationException $B kms encrypt --key-id "$KID" --plaintext "fileb://$T/big"
expect_err ValidationException $B kms generate-data-key --key-id "$KID" --number-of-bytes 1025

# re-encrypt to a second key
K2=$($B kms create-key | j KeyMetadata.KeyId)
$B kms re-encrypt --ciphertext-blob "fileb://$T/ct" --destination-key-id "$K2" --query CiphertextBlob --output text | base64 -d >"$T/ct2"
[ "$($B kms decrypt --ciphertext-blob "fileb://$T/ct2" --query Plaintext --output text | base64 -d)" = "hello world" ] || fail "re-encrypt"
expect_err IncorrectKeyException $B kms decrypt --key-id "$KID" --ciphertext-blob "fileb://$T/ct2"

# rotation keeps old ciphertexts decryptable
$B kms enable-key-rotation --key-id "$KID" --rotation-period-in-days 180
[ "$($B kms get-key-rotation-status --key-id "$KID" | j KeyRotationEnabled)" = True ] || fail "rotation status"
$B kms rotate-key-on-demand --key-id "$KID" >/dev/null
[ "$($B kms list-key-rotations --key-id "$KID" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Rotations"]))')" = 1 ] || fail "list rotations"
[ "$($B kms decrypt --ciphertext-blob "fileb://$T/ct" --query Plaintext --output text | base64 -d)" = "hello world" ] || fail "old blob after rotation"
expect_err ValidationException $B kms enable-key-rotation --key-id "$KID" --rotation-period-in-days 10

# states
$B kms disable-key --key-id "$KID"
expect_err DisabledException $B kms decrypt --ciphertext-blob "fileb://$T/ct"
$B kms enable-key --key-id "$KID"
$B kms schedule-key-deletion --key-id "$K2" --pending-window-in-days 7 | grep -q PendingDeletion || fail "schedule"
expect_err KMSInvalidStateException $B kms decrypt --ciphertext-blob "fileb://$T/ct2"
expect_err ValidationException $B kms schedule-key-deletion --key-id "$KID" --pending-window-in-days 3
$B kms cancel-key-deletion --key-id "$K2" >/dev/null
[ "$($B kms describe-key --key-id "$K2" | j KeyMetadata.KeyState)" = Disabled ] || fail "cancel -> Disabled"

# listing, paging, random, description, aliases
for i in 1 2 3; do $B kms create-key >/dev/null; done
M=$($B kms list-keys --limit 2 | j NextMarker)
$B kms list-keys --limit 2 --marker "$M" | grep -q KeyArn || fail "paging"
[ "$($B kms generate-random --number-of-bytes 16 --query Plaintext --output text | base64 -d | wc -c)" = 16 ] || fail "random"
$B kms update-key-description --key-id "$KID" --description renamed
[ "$($B kms describe-key --key-id "$KID" | j KeyMetadata.Description)" = renamed ] || fail "description"
$B kms update-alias --alias-name alias/app --target-key-id "$K2"
$B kms list-aliases --key-id "$K2" | grep -q alias/app || fail "update-alias"
$B kms delete-alias --alias-name alias/app
expect_err NotFoundException $B kms delete-alias --alias-name alias/app
$B kms untag-resource --key-id "$KID" --tag-keys team
$B kms list-resource-tags --key-id "$KID" | grep -vq storage || fail "untag"

# usage errors exit 252 and name the problem
set +e; $B kms no-such-verb >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] && grep -q "unknown operation" "$T/err" || fail "unknown verb"
set +e; $B kms describe-key --bogus 1 >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] || fail "unknown flag rc=$rc"
# wrong root key: clear error, not a crash
head -c 32 /dev/urandom >"$T/wrong.key"; chmod 600 "$T/wrong.key"
set +e; $B kms list-keys --root-key-file "$T/wrong.key" >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "wrong root key" "$T/err" || fail "wrong root key: $(cat "$T/err")"
echo "test_cli: all checks passed"
