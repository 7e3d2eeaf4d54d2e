#!/usr/bin/env bash
# server_awscli.sh — the AWS CLI against `envelopefs kms serve`: every operation of the key service,
# AWS error names, encryption context, rotation, aliases by name and ARN; authentication failures.
. "$(dirname "$0")/lib.sh"
command -v aws >/dev/null || fail "aws CLI not found"
start_server
export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=
A() { aws --endpoint-url "$URL" kms "$@"; }
expect() { local name=$1; shift; if "$@" >"$T/out" 2>"$T/err"; then fail "$* succeeded, expected $name"; fi
           grep -q "($name)" "$T/err" || fail "$*: expected $name, got $(cat "$T/err")"; }

KID=$(A create-key --description via-awscli --query KeyMetadata.KeyId --output text)
[ "$(A describe-key --key-id "$KID" --query KeyMetadata.KeyState --output text)" = Enabled ] || fail describe
A create-alias --alias-name alias/cli --target-key-id "$KID"
ARN=$(A describe-key --key-id alias/cli --query KeyMetadata.Arn --output text)
[ "$(A describe-key --key-id "arn:aws:kms:us-east-1:111122223333:alias/cli" --query KeyMetadata.KeyId --output text)" = "$KID" ] || fail "alias ARN"
A list-keys --query 'Keys[].KeyId' --output text | grep -q "$KID" || fail list-keys
A list-aliases --query 'Aliases[].AliasName' --output text | grep -q alias/cli || fail list-aliases
A update-key-description --key-id "$KID" --description renamed
A tag-resource --key-id "$KID" --tags TagKey=t,TagValue=v
A list-resource-tags --key-id "$KID" --query 'Tags[0].TagValue' --output text | grep -q v || fail tags

# data keys with context; the CLI's own base64 handling
A generate-data-key --key-id alias/cli --key-spec AES_256 --encryption-context purpose=cli >"$T/dk.json"
python3 -c 'import json,base64,sys; d=json.load(open(sys.argv[1])); open(sys.argv[2],"wb").write(base64.b64decode(d["CiphertextBlob"]))' "$T/dk.json" "$T/blob"
want=$(jget Plaintext <"$T/dk.json")
[ "$(A decrypt --ciphertext-blob "fileb://$T/blob" --encryption-context purpose=cli --query Plaintext --output text)" = "$want" ] || fail decrypt
expect InvalidCiphertextException A decrypt --ciphertext-blob "fileb://$T/blob" --encryption-context purpose=other
A generate-data-key-without-plaintext --key-id "$ARN" --number-of-bytes 64 --query KeyId --output text | grep -q "$KID" || fail gdkwp
printf 'secret text' >"$T/pt"
A encrypt --key-id "$KID" --plaintext "fileb://$T/pt" --query CiphertextBlob --output text | base64 -d >"$T/ct"
[ "$(A decrypt --ciphertext-blob "fileb://$T/ct" --query Plaintext --output text | base64 -d)" = "secret text" ] || fail encrypt
K2=$(A create-key --query KeyMetadata.KeyId --output text)
A re-encrypt --ciphertext-blob "fileb://$T/ct" --destination-key-id "$K2" --query CiphertextBlob --output text | base64 -d >"$T/ct2"
[ "$(A decrypt --ciphertext-blob "fileb://$T/ct2" --query Plaintext --output text | base64 -d)" = "secret text" ] || fail re-encrypt
expect IncorrectKeyException A decrypt --key-id "$KID" --ciphertext-blob "fileb://$T/ct2"
A generate-random --number-of-bytes 16 --query Plaintext --output text | base64 -d | wc -c | grep -q 16 || fail random

# rotation
A enable-key-rotation --key-id "$KID" --rotation-period-in-days 90
[ "$(A get-key-rotation-status --key-id "$KID" --query KeyRotationEnabled --output text)" = True ] || fail rotation-status
A rotate-key-on-demand --key-id "$KID" >/dev/null
[ "$(A list-key-rotations --key-id "$KID" --query 'length(Rotations)' --output text)" = 1 ] || fail list-rotations
[ "$(A decrypt --ciphertext-blob "fileb://$T/ct" --query Plaintext --output text | base64 -d)" = "secret text" ] || fail "old blob after rotation"
A disable-key-rotation --key-id "$KID"

# states and errors
A disable-key --key-id "$KID"
expect DisabledException A encrypt --key-id "$KID" --plaintext "fileb://$T/pt"
A enable-key --key-id "$KID"
A schedule-key-deletion --key-id "$K2" --pending-window-in-days 7 >/dev/null
expect KMSInvalidStateException A decrypt --ciphertext-blob "fileb://$T/ct2"
A cancel-key-deletion --key-id "$K2" >/dev/null
[ "$(A describe-key --key-id "$K2" --query KeyMetadata.KeyState --output text)" = Disabled ] || fail cancel
expect NotFoundException A describe-key --key-id alias/nope
expect AlreadyExistsException A create-alias --alias-name alias/cli --target-key-id "$KID"
expect ValidationException A schedule-key-deletion --key-id "$KID" --pending-window-in-days 3
A update-alias --alias-name alias/cli --target-key-id "$K2"
A delete-alias --alias-name alias/cli

# asymmetric and HMAC keys with the AWS CLI's own argument handling (issue 17)
EK=$(A create-key --key-spec ECC_NIST_P384 --key-usage SIGN_VERIFY --query KeyMetadata.KeyId --output text)
A sign --key-id "$EK" --message "fileb://$T/pt" --message-type RAW --signing-algorithm ECDSA_SHA_384 \
  --query Signature --output text | base64 -d >"$T/sig"
[ "$(A verify --key-id "$EK" --message "fileb://$T/pt" --signature "fileb://$T/sig" --signing-algorithm ECDSA_SHA_384 \
     --query SignatureValid --output text)" = True ] || fail "aws kms verify"
A get-public-key --key-id "$EK" --query PublicKey --output text | base64 -d >"$T/pub.der"
openssl dgst -sha384 -keyform DER -verify "$T/pub.der" -signature "$T/sig" "$T/pt" >/dev/null || fail "openssl verify of aws kms sign"
expect KMSInvalidSignatureException A verify --key-id "$EK" --message "fileb://$T/pub.der" --signature "fileb://$T/sig" \
  --signing-algorithm ECDSA_SHA_384
HK=$(A create-key --key-spec HMAC_512 --key-usage GENERATE_VERIFY_MAC --query KeyMetadata.KeyId --output text)
A generate-mac --key-id "$HK" --message "fileb://$T/pt" --mac-algorithm HMAC_SHA_512 --query Mac --output text \
  | base64 -d >"$T/mac"
[ "$(stat -c %s "$T/mac")" = 64 ] || fail "aws kms generate-mac: not 64 bytes"
[ "$(A verify-mac --key-id "$HK" --message "fileb://$T/pt" --mac "fileb://$T/mac" --mac-algorithm HMAC_SHA_512 \
     --query MacValid --output text)" = True ] || fail "aws kms verify-mac"
[ "$(A generate-data-key-pair --key-id "$KID" --key-pair-spec ECC_NIST_P256 --query KeyPairSpec --output text)" = ECC_NIST_P256 ] \
  || fail "aws kms generate-data-key-pair"

# authentication
AWS_SECRET_ACCESS_KEY=wrong expect InvalidSignatureException A list-keys
AWS_ACCESS_KEY_ID=AKIAXXXXXXXXXXXXXXXX expect UnrecognizedClientException A list-keys

# A second server on the same port is refused (no SO_REUSEPORT: it would silently take half the
# connections, against another store), and the first one keeps serving.
if "$B" kms serve --listen "127.0.0.1:$PORT" --pid-file "$T/second.pid" 2>"$T/second.err"; then
  kill "$(cat "$T/second.pid")" 2>/dev/null; fail "a second server started on port $PORT"
fi
grep -q "cannot start the HTTP server on 127.0.0.1:$PORT" "$T/second.err" || fail "second server: $(cat "$T/second.err")"
A list-keys >/dev/null || fail "first server after the refused second one"

# The audit trail names each call's principal and source (flushed at the latest when the server stops).
stop_server
row=$(sqlite3 "$ENVELOPEFS_STORE/keystore.db" "SELECT account, user, source, key_id, result FROM audit WHERE operation='GenerateDataKey' ORDER BY seq LIMIT 1")
[ "$row" = "111122223333|alice|http:127.0.0.1|$KID|OK" ] || fail "audit record of GenerateDataKey: $row"
sqlite3 "$ENVELOPEFS_STORE/keystore.db" "SELECT result FROM audit WHERE operation='Decrypt'" | grep -qx InvalidCiphertextException || fail "audit of a refused Decrypt"
echo "server_awscli: all checks passed"
