#!/usr/bin/env bash
# client_moto.sh — our client against a third-party KMS (moto_server): create key, GenerateDataKey,
# Decrypt, ReEncrypt round trips through `envelopefs kms --endpoint-url`, credentials from a profile
# file, then a directory mounted with --kms pointing at moto.
. "$(dirname "$0")/lib.sh"
[ -e /dev/fuse ] || { echo "SKIP: /dev/fuse absent"; exit 77; }
start_moto
mkdir -p "$T/aws"
printf '[moto]\naws_access_key_id = testing\naws_secret_access_key = testing\n' >"$T/aws/credentials"
printf '[profile moto]\nregion = eu-west-1\n' >"$T/aws/config"
export AWS_SHARED_CREDENTIALS_FILE=$T/aws/credentials AWS_CONFIG_FILE=$T/aws/config AWS_PROFILE=moto
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_DEFAULT_REGION
K() { "$B" kms --endpoint-url "$MOTO_URL" "$@"; }
KID=$(K create-key --description moto | jget KeyMetadata.KeyId)
ARN=$(K describe-key --key-id "$KID" | jget KeyMetadata.Arn)
[[ $ARN == arn:aws:kms:eu-west-1:* ]] || fail "region from the profile's config: $ARN"
K generate-data-key --key-id "$KID" --key-spec AES_256 --encryption-context app=moto >"$T/dk.json"
jget CiphertextBlob <"$T/dk.json" | base64 -d >"$T/blob"
[ "$(K decrypt --ciphertext-blob "fileb://$T/blob" --encryption-context app=moto --query Plaintext --output text)" = "$(jget Plaintext <"$T/dk.json")" ] || fail "moto decrypt"
K2=$(K create-key | jget KeyMetadata.KeyId)
K re-encrypt --ciphertext-blob "fileb://$T/blob" --source-encryption-context app=moto --destination-key-id "$K2" \
  --destination-encryption-context app=moto2 --query CiphertextBlob --output text | base64 -d >"$T/blob2"
[ "$(K decrypt --ciphertext-blob "fileb://$T/blob2" --encryption-context app=moto2 --query Plaintext --output text)" = "$(jget Plaintext <"$T/dk.json")" ] || fail "moto re-encrypt"
set +e; K describe-key --key-id 00000000-0000-0000-0000-000000000000 2>"$T/err"; rc=$?; set -e
[ $rc -eq 254 ] && grep -q NotFoundException "$T/err" || fail "moto error name: $(cat "$T/err")"

# a mount whose data keys come from moto
mkdir -p "$T/cipher" "$T/mnt1"
"$B" init "$T/cipher" --kms "$MOTO_URL" --kms-key-id "$KID" >/dev/null
"$B" mount "$T/cipher" "$T/mnt1"
head -c 100000 /dev/urandom >"$T/data"
cp "$T/data" "$T/mnt1/data"; echo hello >"$T/mnt1/hello"
"$B" unmount "$T/mnt1"
"$B" mount "$T/cipher" "$T/mnt1"
cmp "$T/data" "$T/mnt1/data" || fail "data through moto"
[ "$(cat "$T/mnt1/hello")" = hello ] || fail "hello through moto"
"$B" unmount "$T/mnt1"
echo "client_moto: all checks passed"
