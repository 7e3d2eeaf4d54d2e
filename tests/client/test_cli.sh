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
# re-encrypt moves the old blob (key-material version 1, bytes 18-21) to the newest version (2)
ver() { od -An -tx1 -j18 -N4 "$1" | tr -d ' \n'; }
[ "$(ver "$T/ct")" = 00000001 ] || fail "old blob version $(ver "$T/ct")"
$B kms re-encrypt --ciphertext-blob "fileb://$T/ct" --destination-key-id "$KID" --query CiphertextBlob --output text | base64 -d >"$T/ct3"
[ "$(ver "$T/ct3")" = 00000002 ] || fail "re-encrypted blob version $(ver "$T/ct3")"
[ "$($B kms decrypt --ciphertext-blob "fileb://$T/ct3" --query Plaintext --output text | base64 -d)" = "hello world" ] || fail "decrypt re-encrypted"
# any flipped byte → InvalidCiphertextException
python3 -c 'import sys; b=bytearray(open(sys.argv[1],"rb").read()); b[40]^=1; open(sys.argv[2],"wb").write(b)' "$T/ct3" "$T/tampered"
expect_err InvalidCiphertextException $B kms decrypt --ciphertext-blob "fileb://$T/tampered"

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
! $B kms list-resource-tags --key-id "$KID" | grep -q storage || fail "untag"

# tags after creation; rotation can be turned off again
$B kms tag-resource --key-id "$KID" --tags TagKey=env,TagValue=prod TagKey=tier,TagValue=1
[ "$($B kms list-resource-tags --key-id "$KID" --query 'Tags' | python3 -c 'import json,sys; print(sorted(t["TagKey"] for t in json.load(sys.stdin)))')" = "['env', 'tier']" ] || fail "tag-resource"
$B kms tag-resource --key-id "$KID" --tags '[{"TagKey":"json","TagValue":"form"}]'
$B kms list-resource-tags --key-id "$KID" | grep -q '"form"' || fail "tag-resource JSON form"
$B kms disable-key-rotation --key-id "$KID"
[ "$($B kms get-key-rotation-status --key-id "$KID" --query KeyRotationEnabled --output text)" = False ] || fail "disable-key-rotation"

# a data key without plaintext decrypts to the requested length
$B kms generate-data-key-without-plaintext --key-id "$KID" --key-spec AES_128 --encryption-context a=b >"$T/wp.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert "Plaintext" not in d, d' "$T/wp.json" || fail "without plaintext"
j CiphertextBlob <"$T/wp.json" | base64 -d >"$T/wp.blob"
[ "$($B kms decrypt --ciphertext-blob "fileb://$T/wp.blob" --encryption-context a=b --query Plaintext --output text | base64 -d | wc -c)" = 16 ] || fail "AES_128 data key length"

# AWS CLI v2 argument forms: raw text with --cli-binary-format, file:// for any value, globals anywhere
$B kms encrypt --key-id "$KID" --plaintext 'plain text!' --cli-binary-format raw-in-base64-out --query CiphertextBlob --output text >"$T/ct.b64"
[ "$($B kms decrypt --ciphertext-blob "file://$T/ct.b64" --query Plaintext --output text | base64 -d)" = 'plain text!' ] || fail "raw-in-base64-out / file://"
echo "$KID" >"$T/kid"
[ "$($B kms describe-key --key-id "file://$T/kid" --query KeyMetadata.KeyId --output text)" = "$KID" ] || fail "file:// key id"
[ "$($B kms --store "$ENVELOPEFS_STORE" --output text describe-key --key-id "$KID" --query KeyMetadata.KeyState)" = Enabled ] || fail "globals before the verb"
[ "$($B kms list-keys --query 'Keys[0].KeyId' --output text | wc -c)" = 37 ] || fail "--query with an index"
# Keys[] (JMESPath's flatten) projects every item, as Keys[*] does (it once read as Keys[0])
[ "$($B kms list-keys --query 'Keys[].KeyId' --output text | wc -w)" -ge 2 ] &&
  [ "$($B kms list-keys --query 'Keys[].KeyId' --output text)" = "$($B kms list-keys --query 'Keys[*].KeyId' --output text)" ] ||
  fail "--query with []"
[ "$($B kms list-keys --query 'Keys[]' | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = \
  "$($B kms list-keys --query 'Keys' | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" ] || fail "--query Keys[]"
[ "$($B kms describe-key --key-id "$KID" --query KeyMetadata.NoSuchField)" = null ] || fail "--query missing field"
set +e; $B kms encrypt --key-id "$KID" --plaintext 'not base64!' >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] && grep -q "invalid base64" "$T/err" || fail "invalid base64 argument rc=$rc"
set +e; $B kms decrypt --ciphertext-blob "fileb://$T/does-not-exist" >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] && grep -q "cannot read" "$T/err" || fail "missing fileb:// file rc=$rc"
set +e; $B kms generate-data-key --key-id "$KID" --encryption-context novalue >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] || fail "malformed context rc=$rc"

# paging visits every key exactly once
all=$($B kms list-keys --limit 1000 | python3 -c 'import json,sys; print(" ".join(sorted(k["KeyId"] for k in json.load(sys.stdin)["Keys"])))')
seen=; marker=
while :; do
  $B kms list-keys --limit 2 ${marker:+--marker "$marker"} >"$T/page"
  [ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["Keys"]))' "$T/page")" -le 2 ] || fail "page larger than --limit"
  seen="$seen $(python3 -c 'import json,sys; print(" ".join(k["KeyId"] for k in json.load(open(sys.argv[1]))["Keys"]))' "$T/page")"
  [ "$(j Truncated <"$T/page")" = True ] || break
  marker=$(j NextMarker <"$T/page")
done
[ "$(echo $seen | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')" = "$all" ] || fail "paging: '$seen' vs '$all'"
[ "$(echo "$all" | wc -w)" -ge 5 ] || fail "expected at least 5 keys"
for a in one two three; do $B kms create-alias --alias-name "alias/page-$a" --target-key-id "$KID"; done
M=$($B kms list-aliases --limit 1 | j NextMarker)
$B kms list-aliases --limit 1 --marker "$M" | grep -q '"AliasName"' || fail "alias paging"

# usage errors exit 252 and name the problem
set +e; $B kms no-such-verb >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] && grep -q "unknown operation" "$T/err" || fail "unknown verb"
set +e; $B kms describe-key --bogus 1 >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] || fail "unknown flag rc=$rc"
# wrong root key: clear error, not a crash
head -c 32 /dev/urandom >"$T/wrong.key"; chmod 600 "$T/wrong.key"
set +e; $B kms list-keys --root-key-file "$T/wrong.key" >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "wrong root key" "$T/err" || fail "wrong root key: $(cat "$T/err")"
set +e; $B kms >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] && grep -q "operations:" "$T/err" || fail "no verb rc=$rc"
set +e; $B kms describe-key --key-id "$KID" --output yaml >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] || fail "--output yaml rc=$rc"

# a passphrase-protected store: files, environment, wrong passphrase, missing store
P=$T/pstore
printf 'correct horse\n' >"$T/pw"; printf 'wrong horse\n' >"$T/badpw"
$B kms init-store --store "$P" --passphrase-file "$T/pw" | grep -q '"passphrase"' || fail "init-store passphrase"
[ ! -e "$P/root.key" ] || fail "passphrase store has a root.key"
PK=$($B kms create-key --store "$P" --passphrase-file "$T/pw" --query KeyMetadata.KeyId --output text)
[ "$(ENVELOPEFS_PASSPHRASE_FILE=$T/pw $B kms describe-key --store "$P" --key-id "$PK" --query KeyMetadata.KeyId --output text)" = "$PK" ] || fail "ENVELOPEFS_PASSPHRASE_FILE"
before=$(md5sum <"$P/keystore.db")
set +e; $B kms list-keys --store "$P" --passphrase-file "$T/badpw" >/dev/null 2>"$T/err" </dev/null; rc=$?; set -e
[ $rc -eq 254 ] && grep -qi "wrong passphrase" "$T/err" || fail "wrong passphrase rc=$rc: $(cat "$T/err")"
[ "$(md5sum <"$P/keystore.db")" = "$before" ] || fail "wrong passphrase modified the store"
set +e; $B kms list-keys --store "$P" >/dev/null 2>"$T/err" </dev/null; rc=$?; set -e
[ $rc -eq 254 ] && grep -q "passphrase-file" "$T/err" || fail "no credentials without a terminal rc=$rc"
set +e; $B kms list-keys --store "$T/nowhere" >/dev/null 2>"$T/err" </dev/null; rc=$?; set -e
[ $rc -eq 254 ] && grep -q "no key store in $T/nowhere" "$T/err" || fail "missing store rc=$rc: $(cat "$T/err")"
[ ! -e "$T/nowhere" ] || fail "a failed open created the store directory"
set +e; $B kms init-store --store "$P" --passphrase-file "$T/pw" >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 254 ] && grep -q AlreadyExistsException "$T/err" || fail "init-store twice rc=$rc"

# access keys for `kms serve` (local store only)
$B kms create-access-key --user alice >"$T/ak.json"
[ "$(j AccessKey.UserName <"$T/ak.json")" = alice ] && [ -n "$(j AccessKey.SecretAccessKey <"$T/ak.json")" ] || fail "create-access-key"
AKID=$(j AccessKey.AccessKeyId <"$T/ak.json")
$B kms list-access-keys --user alice >"$T/aks.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(d["AccessKeyMetadata"][0]["AccessKeyId"] != sys.argv[2])' "$T/aks.json" "$AKID" || fail "list-access-keys: $(cat "$T/aks.json")"
grep -q Secret "$T/aks.json" && fail "list-access-keys prints a secret"
# the local-only verbs honour --query and --output as the AWS verbs do
[ "$($B kms list-access-keys --user alice --query 'AccessKeyMetadata[0].UserName' --output text)" = alice ] ||
  fail "list-access-keys --query --output text"
set +e; $B kms delete-access-key >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] && grep -q "needs --access-key-id" "$T/err" || fail "delete-access-key without an id rc=$rc"
set +e; AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=y $B kms --endpoint-url http://127.0.0.1:9 list-access-keys >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] && grep -q "local store only" "$T/err" || fail "list-access-keys against a server rc=$rc"
$B kms delete-access-key --access-key-id "$AKID" || fail "delete-access-key"
set +e; $B kms delete-access-key --access-key-id "$AKID" >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 254 ] && grep -q NotFoundException "$T/err" || fail "delete-access-key twice rc=$rc"
[ "$($B kms list-access-keys --user alice | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["AccessKeyMetadata"]))')" = 0 ] \
  || fail "a deleted access key is still listed"

# the audit trail's retention (local store): kept whole by default; a cap and an age, one at a time
$B kms configure-audit >"$T/audit.json"
[ "$(j RetentionDays <"$T/audit.json") $(j MaxRecords <"$T/audit.json")" = "0 0" ] || fail "configure-audit default: $(cat "$T/audit.json")"
[ "$(j Records <"$T/audit.json")" -gt 3 ] || fail "configure-audit: the trail holds $(j Records <"$T/audit.json") records"
$B kms configure-audit --max-records 3 >"$T/audit.json"
[ "$(j Records <"$T/audit.json") $(j MaxRecords <"$T/audit.json")" = "3 3" ] || fail "configure-audit --max-records 3: $(cat "$T/audit.json")"
$B kms configure-audit --retention-days 7 >"$T/audit.json"
[ "$(j RetentionDays <"$T/audit.json") $(j MaxRecords <"$T/audit.json")" = "7 3" ] || fail "configure-audit kept the other setting: $(cat "$T/audit.json")"
set +e; $B kms configure-audit --retention-days soon >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] && grep -q "whole number" "$T/err" || fail "configure-audit --retention-days soon rc=$rc"
$B kms configure-audit --retention-days 0 --max-records 0 >/dev/null

# reading the trail back: newest first, a page at a time, filtered; times as epoch seconds or UTC
$B kms generate-random --number-of-bytes 8 >/dev/null; $B kms generate-random --number-of-bytes 8 >/dev/null
ev() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["Events"]), d.get("NextToken", "-"), " ".join(e["EventName"] for e in d["Events"]))'; }
read -r cnt tok names < <($B kms lookup-audit --operation GenerateRandom --max-results 1 | ev)
[ "$cnt $names" = "1 GenerateRandom" ] && [ "$tok" != - ] || fail "lookup-audit page 1: $cnt $tok $names"
read -r cnt tok2 names < <($B kms lookup-audit --operation GenerateRandom --max-results 1 --next-token "$tok" | ev)
[ "$cnt $names" = "1 GenerateRandom" ] && { [ "$tok2" = - ] || [ "$tok2" -lt "$tok" ]; } || fail "lookup-audit page 2: $cnt $tok2 $names"
read -r cnt tok names < <($B kms lookup-audit --start-time 2100-01-01T00:00:00Z | ev)
[ "$cnt $tok" = "0 -" ] || fail "lookup-audit in the future: $cnt $tok"
# the local-only verbs honour --query and --output as the AWS verbs do
[ "$($B kms lookup-audit --operation GenerateRandom --max-results 1 --query 'Events[0].EventName' --output text)" = GenerateRandom ] ||
  fail "lookup-audit --query --output text"
[ "$($B kms validate-audit --query Valid --output text)" = True ] || fail "validate-audit --query Valid --output text"
read -r cnt tok names < <($B kms lookup-audit --end-time "$(date -u +%s)" --start-time 2000-01-01 --max-results 1000 | ev)
[ "$cnt" -ge 2 ] || fail "lookup-audit over all time: $cnt"
set +e; $B kms lookup-audit --start-time yesterday >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] && grep -q "UTC time" "$T/err" || fail "lookup-audit --start-time yesterday rc=$rc"
set +e; $B kms lookup-audit --max-results 0 >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] || fail "lookup-audit --max-results 0 rc=$rc"

# CloudTrail's LookupEvents shape and attribute filters
$B kms lookup-audit --lookup-attributes AttributeKey=EventName,AttributeValue=GenerateRandom --max-results 1 >"$T/la.json"
python3 - "$T/la.json" <<'PY' || fail "lookup-audit --lookup-attributes: $(cat "$T/la.json")"
import json, sys
d = json.load(open(sys.argv[1]))
e = d["Events"][0]
assert set(e) >= {"EventId", "EventName", "ReadOnly", "EventTime", "EventSource", "Username", "Resources", "CloudTrailEvent"}, e
ct = json.loads(e["CloudTrailEvent"])
assert e["EventName"] == ct["eventName"] == "GenerateRandom" and ct["eventSource"] == "kms.amazonaws.com", ct
assert ct["eventID"] == e["EventId"] and ct["readOnly"] is True and e["ReadOnly"] == "true", ct
for k in ("eventVersion", "eventTime", "userIdentity", "sourceIPAddress", "userAgent", "requestParameters",
          "responseElements", "requestID", "resources"):
    assert k in ct, k
PY
EID=$(j Events <"$T/la.json" | python3 -c 'import ast,sys; print(ast.literal_eval(sys.stdin.read())[0]["EventId"])')
[ "$($B kms lookup-audit --lookup-attributes "AttributeKey=EventId,AttributeValue=$EID" | ev | cut -d' ' -f1)" = 1 ] || fail "lookup by EventId"
[ "$($B kms lookup-audit --lookup-attributes AttributeKey=ReadOnly,AttributeValue=false --max-results 1000 | ev | grep -c GenerateRandom)" = 0 ] || fail "ReadOnly=false"
set +e; $B kms lookup-audit --lookup-attributes AttributeKey=Colour,AttributeValue=x >/dev/null 2>&1; rc=$?; set -e
[ $rc -eq 252 ] || fail "lookup-audit with an unknown attribute rc=$rc"

# the trail is intact, also after the pruning above (a signed checkpoint where it was cut), checked
# against the exported public key; another key fails it (tests/client/test_audit.sh tampers with it)
PK=$($B kms get-audit-public-key | j PublicKey)
[ ${#PK} -eq 64 ] || fail "get-audit-public-key: $PK"
$B kms validate-audit --public-key "$PK" >"$T/v.json" || fail "validate-audit: $(cat "$T/v.json")"
[ "$(j Valid <"$T/v.json")" = True ] || fail "validate-audit: $(cat "$T/v.json")"
set +e; $B kms validate-audit --public-key "$(printf '%064d' 7)" >/dev/null 2>&1; rc=$?; set -e
[ $rc -eq 1 ] || fail "validate-audit with another key rc=$rc"

# Asymmetric and HMAC keys and data key pairs (issue 17; the openssl interop is tests/kms/kms_openssl.sh)
AK=$($B kms create-key --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY --query KeyMetadata.KeyId --output text)
$B kms get-public-key --key-id "$AK" --query KeySpec --output text | grep -qx ECC_NIST_P256 || fail "get-public-key"
SIG=$($B kms sign --key-id "$AK" --message aGVsbG8= --signing-algorithm ECDSA_SHA_256 --query Signature --output text)
[ "$($B kms verify --key-id "$AK" --message aGVsbG8= --signature "$SIG" --signing-algorithm ECDSA_SHA_256 \
     --query SignatureValid --output text)" = True ] || fail "verify"
expect_err KMSInvalidSignatureException $B kms verify --key-id "$AK" --message aGk= --signature "$SIG" --signing-algorithm ECDSA_SHA_256
expect_err InvalidKeyUsageException $B kms sign --key-id "$AK" --message aGk= --signing-algorithm RSASSA_PSS_SHA_256
expect_err ValidationException $B kms create-key --key-spec ECC_NIST_P256 --key-usage ENCRYPT_DECRYPT
HK=$($B kms create-key --key-spec HMAC_224 --key-usage GENERATE_VERIFY_MAC --query KeyMetadata.KeyId --output text)
MAC=$($B kms generate-mac --key-id "$HK" --message aGVsbG8= --mac-algorithm HMAC_SHA_224 --query Mac --output text)
[ "$(printf %s "$MAC" | base64 -d | wc -c)" = 28 ] || fail "generate-mac length"
[ "$($B kms verify-mac --key-id "$HK" --message aGVsbG8= --mac "$MAC" --mac-algorithm HMAC_SHA_224 --query MacValid \
     --output text)" = True ] || fail "verify-mac"
expect_err KMSInvalidMacException $B kms verify-mac --key-id "$HK" --message aGk= --mac "$MAC" --mac-algorithm HMAC_SHA_224
SK=$($B kms create-key --query KeyMetadata.KeyId --output text)
$B kms generate-data-key-pair --key-id "$SK" --key-pair-spec ECC_NIST_P256 --query PrivateKeyPlaintext --output text \
  | base64 -d | openssl pkey -inform DER -noout || fail "generate-data-key-pair: PrivateKeyPlaintext is not PKCS#8 DER"
[ "$($B kms generate-data-key-pair-without-plaintext --key-id "$SK" --key-pair-spec RSA_2048 \
     --query PrivateKeyPlaintext --output text)" = None ] || fail "generate-data-key-pair-without-plaintext"

# Imported key material (the RSA_AES_KEY_WRAP path and expiry are in tests/kms/kms_openssl.sh and test_kms_asym)
XK=$($B kms create-key --origin EXTERNAL --query KeyMetadata.KeyId --output text)
$B kms describe-key --key-id "$XK" --query KeyMetadata.KeyState --output text | grep -qx PendingImport || fail "EXTERNAL key state"
$B kms get-parameters-for-import --key-id "$XK" --wrapping-algorithm RSAES_OAEP_SHA_256 --wrapping-key-spec RSA_2048 >"$T/params"
j PublicKey <"$T/params" | base64 -d >"$T/wrap.der"
j ImportToken <"$T/params" | base64 -d >"$T/token"
head -c 32 /dev/urandom >"$T/material"
openssl pkeyutl -encrypt -pubin -keyform DER -inkey "$T/wrap.der" -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \
  -pkeyopt rsa_mgf1_md:sha256 -in "$T/material" -out "$T/material.enc"
expect_err ValidationException $B kms import-key-material --key-id "$XK" --import-token "fileb://$T/token" \
  --encrypted-key-material "fileb://$T/material.enc"   # KEY_MATERIAL_EXPIRES (the default) needs --valid-to
$B kms import-key-material --key-id "$XK" --import-token "fileb://$T/token" --encrypted-key-material "fileb://$T/material.enc" \
  --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE >/dev/null
XC=$($B kms encrypt --key-id "$XK" --plaintext aGk= --query CiphertextBlob --output text)
$B kms delete-imported-key-material --key-id "$XK" >/dev/null
expect_err KMSInvalidStateException $B kms decrypt --ciphertext-blob "$XC"
$B kms import-key-material --key-id "$XK" --import-token "fileb://$T/token" --encrypted-key-material "fileb://$T/material.enc" \
  --valid-to "$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)" >/dev/null
[ "$($B kms decrypt --ciphertext-blob "$XC" --query Plaintext --output text)" = aGk= ] || fail "decrypt after reimport"
expect_err UnsupportedOperationException $B kms enable-key-rotation --key-id "$XK"

# one parser for the key-service options, for every verb: before `serve` as before any other (issue 14),
# as --opt VALUE or --opt=VALUE; the store here opens only with its root key file, which is not in it
S2=$T/store2; RK2=$T/rk2
head -c 32 /dev/urandom >"$RK2"; chmod 600 "$RK2"
$B kms --root-key-file "$RK2" --store "$S2" init-store >/dev/null
[ ! -e "$S2/root.key" ] || fail "init-store with --root-key-file copied the key into the store"
[ "$($B kms list-keys --store="$S2" --root-key-file="$RK2" --query Keys)" = "[]" ] || fail "--opt=VALUE"
set +e; $B kms list-keys --store >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 252 ] && grep -q -- "--store needs a value" "$T/err" || fail "--store without a value rc=$rc"
set +e; $B fsck "$T" --root-key-file >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 2 ] && grep -q -- "--root-key-file needs a value" "$T/err" || fail "fsck --root-key-file without a value rc=$rc"
set +e; $B kms --store "$S2" serve --endpoint-url http://127.0.0.1:9 >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 2 ] && grep -q "local store" "$T/err" || fail "serve --endpoint-url rc=$rc"
# ... and the server really serves that store, over TLS (cert and key read by the server)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/tls.key" -out "$T/tls.crt" \
  -subj /CN=localhost -days 1 2>/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$B kms --root-key-file "$RK2" --store "$S2" serve --foreground --listen "127.0.0.1:$PORT" \
  --tls-cert "$T/tls.crt" --tls-key "$T/tls.key" </dev/null >"$T/serve.out" 2>"$T/serve.err" &
SPID=$!
trap 'kill $SPID 2>/dev/null || true; rm -rf "$T"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$T/serve.out" && break; kill -0 $SPID 2>/dev/null || break; sleep 0.1; done
grep -q "listening on 127.0.0.1:$PORT" "$T/serve.out" || fail "kms --root-key-file F --store S serve: $(cat "$T/serve.err")"
curl -sk -X POST -H 'X-Amz-Target: TrentService.ListKeys' -H 'Content-Type: application/x-amz-json-1.1' -d '{}' \
  "https://127.0.0.1:$PORT/" >"$T/resp" || fail "no TLS answer from the server"
grep -q MissingAuthenticationToken "$T/resp" || fail "unsigned request over TLS: $(cat "$T/resp")"
kill $SPID; wait $SPID 2>/dev/null || true

# multi-Region keys from the command line: two stores as two regions (--regions FILE)
mkdir -p "$T/mr"
$B kms init-store --store "$T/mr/a" --generate-root-key --region us-east-1 >/dev/null
$B kms init-store --store "$T/mr/b" --generate-root-key --region eu-west-1 >/dev/null
printf '{"regions": {"us-east-1": {"store": "%s"}, "eu-west-1": {"store": "%s"}}}\n' "$T/mr/a" "$T/mr/b" >"$T/mr/regions.json"
MRK=$($B kms --store "$T/mr/a" create-key --multi-region --query KeyMetadata.KeyId --output text)
case $MRK in mrk-????????????????????????????????) ;; *) fail "multi-region key id $MRK";; esac
$B kms replicate-key --store "$T/mr/a" --regions "$T/mr/regions.json" --key-id "$MRK" --replica-region eu-west-1 \
  --description copy --tags TagKey=site,TagValue=eu >"$T/mr/rep" || fail "kms replicate-key"
grep -q '"MultiRegionKeyType": "REPLICA"' "$T/mr/rep" || fail "replicate-key: $(cat "$T/mr/rep")"
MCT=$($B kms --store "$T/mr/a" encrypt --key-id "$MRK" --plaintext aGk= --query CiphertextBlob --output text)
[ "$($B kms --store "$T/mr/b" decrypt --ciphertext-blob "$MCT" --query Plaintext --output text)" = aGk= ] || fail "replica decrypt"
$B kms replicate-key --store "$T/mr/a" --regions "$T/mr/regions.json" --key-id "$MRK" --replica-region eu-west-1 2>"$T/mr/err" && fail "second replicate-key"
grep -q AlreadyExistsException "$T/mr/err" || fail "replicate-key twice: $(cat "$T/mr/err")"
$B kms update-primary-region --store "$T/mr/a" --regions "$T/mr/regions.json" --key-id "$MRK" --primary-region eu-west-1 >/dev/null \
  || fail "kms update-primary-region"
[ "$($B kms --store "$T/mr/b" describe-key --key-id "$MRK" --query KeyMetadata.MultiRegionConfiguration.MultiRegionKeyType --output text)" = PRIMARY ] \
  || fail "update-primary-region did not move the primary"

# `kms help` lists every operation of issue 2, and this script exercises every verb it lists
$B kms help >"$T/help"
for v in create-key describe-key list-keys create-alias update-alias delete-alias list-aliases generate-data-key \
         generate-data-key-without-plaintext encrypt decrypt re-encrypt generate-random enable-key disable-key \
         schedule-key-deletion cancel-key-deletion enable-key-rotation disable-key-rotation get-key-rotation-status \
         rotate-key-on-demand list-key-rotations update-key-description tag-resource untag-resource \
         list-resource-tags init-store; do
  grep -q "^  $v " "$T/help" || fail "help does not list $v"
done
for v in $(awk '/^  [a-z]/{print $1}' "$T/help"); do
  case $v in serve) continue;; esac  # the server has its own tests (tests/server)
  # (custom key stores need a SoftHSM2 token: tests/kms/kms_hsm_cli.sh runs those verbs through its q/expect_err)
  grep -q "kms $v " "$0" "$(dirname "$0")/cli_access.sh" ||
    grep -Eq "(q|expect_err [A-Za-z.]+) $v( |$)" "$(dirname "$0")/../kms/kms_hsm_cli.sh" ||
    fail "verb $v is not exercised by this test, cli_access.sh or kms_hsm_cli.sh"
done
echo "test_cli: all checks passed"
