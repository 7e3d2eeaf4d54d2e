#!/usr/bin/env bash
# kms_hsm_cli.sh — a custom key store over a SoftHSM2 token through `envelopefs kms` (every call its own process,
# so each logs in to the token lazily from the store's sealed PIN): create-custom-key-store, connect, describe,
# create-key --custom-key-store-id, encrypt/decrypt and generate-data-key round trips, the token's object count,
# disconnect → CustomKeyStoreInvalidStateException / KMSInvalidStateException, delete refused while a key exists.
set -euo pipefail
B=${ENVELOPEFS_BIN:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/hsm_token.sh"
export ENVELOPEFS_STORE=$T/store
fail() { echo "FAIL: $*" >&2; exit 1; }
q() { "$B" kms "$@" --output text; }
# expect_err NAME CMD...: the call fails with AWS's error NAME (exit 254)
expect_err() {
  local want=$1 rc; shift
  set +e; "$B" kms "$@" >/dev/null 2>"$T/err"; rc=$?; set -e
  [ $rc -eq 254 ] && grep -q "$want" "$T/err" || fail "$* gave rc $rc, not $want: $(cat "$T/err")"
}
$B kms init-store --generate-root-key >/dev/null

CKS=$(q create-custom-key-store --custom-key-store-name cli-hsm --cloud-hsm-cluster-id "$HSM_CLUSTER" \
        --trust-anchor-certificate "$(printf 'not checked here\n')" --key-store-password "$HSM_PIN" --query CustomKeyStoreId)
[[ $CKS == cks-* ]] || fail "create-custom-key-store: $CKS"
expect_err CustomKeyStoreNameInUseException create-custom-key-store --custom-key-store-name cli-hsm \
  --cloud-hsm-cluster-id cluster-bbbbbbbbbbb --trust-anchor-certificate x --key-store-password "$HSM_PIN"
expect_err CloudHsmClusterNotFoundException create-custom-key-store --custom-key-store-name other \
  --cloud-hsm-cluster-id cluster-bbbbbbbbbbb --trust-anchor-certificate x --key-store-password "$HSM_PIN"
[ "$(q describe-custom-key-stores --custom-key-store-id "$CKS" --query 'CustomKeyStores[0].ConnectionState')" = DISCONNECTED ] \
  || fail "a new store is not DISCONNECTED"
expect_err CustomKeyStoreInvalidStateException create-key --custom-key-store-id "$CKS" --origin AWS_CLOUDHSM
q connect-custom-key-store --custom-key-store-id "$CKS" >/dev/null
[ "$(q describe-custom-key-stores --custom-key-store-name cli-hsm --query 'CustomKeyStores[0].ConnectionState')" = CONNECTED ] \
  || fail "connect-custom-key-store did not connect"

shown=$(softhsm2-util --show-slots | grep -c "Label:.*$HSM_LABEL" || true)
[ "$shown" -ge 1 ] || fail "softhsm2-util does not show the token"
K=$(q create-key --custom-key-store-id "$CKS" --origin AWS_CLOUDHSM --description hsm --query KeyMetadata.KeyId)
[ "$(q describe-key --key-id "$K" --query KeyMetadata.Origin)" = AWS_CLOUDHSM ] || fail "origin"
[ "$(q describe-key --key-id "$K" --query KeyMetadata.CustomKeyStoreId)" = "$CKS" ] || fail "CustomKeyStoreId"
[ "$(q describe-key --key-id "$K" --query KeyMetadata.CloudHsmClusterId)" = "$HSM_CLUSTER" ] || fail "CloudHsmClusterId"
q create-alias --alias-name alias/hsm --target-key-id "$K" >/dev/null

# round trips, each call in its own process
printf 'secret in the token' >"$T/pt"
q encrypt --key-id alias/hsm --plaintext "fileb://$T/pt" --encryption-context app=cli --query CiphertextBlob | base64 -d >"$T/ct"
q decrypt --ciphertext-blob "fileb://$T/ct" --encryption-context app=cli --query Plaintext | base64 -d >"$T/pt2"
cmp -s "$T/pt" "$T/pt2" || fail "decrypt did not give the plaintext back"
expect_err InvalidCiphertextException decrypt --ciphertext-blob "fileb://$T/ct" --encryption-context app=other
"$B" kms generate-data-key --key-id "$K" --key-spec AES_256 >"$T/dk.json"
python3 - "$T/dk.json" "$T" <<'PY'
import base64, json, sys
d = json.load(open(sys.argv[1]))
open(sys.argv[2] + "/dk.ct", "wb").write(base64.b64decode(d["CiphertextBlob"]))
open(sys.argv[2] + "/dk.pt", "wb").write(base64.b64decode(d["Plaintext"]))
assert len(base64.b64decode(d["Plaintext"])) == 32
PY
q decrypt --ciphertext-blob "fileb://$T/dk.ct" --query Plaintext | base64 -d >"$T/dk.pt2"
cmp -s "$T/dk.pt" "$T/dk.pt2" || fail "the data key does not decrypt to its plaintext"
expect_err UnsupportedOperationException enable-key-rotation --key-id "$K"
# the key material is nowhere in the store: no key_versions row for the key
[ "$(sqlite3 "$ENVELOPEFS_STORE/keystore.db" "SELECT count(*) FROM key_versions WHERE key_id='$K'")" = 0 ] \
  || fail "the store holds material of a custom key store's key"
! grep -qa "$HSM_PIN" "$ENVELOPEFS_STORE"/keystore.db* || fail "the PIN is in the store in the clear"

# disconnected: the key is Unavailable and cannot be used; the store cannot be deleted while it holds the key
q disconnect-custom-key-store --custom-key-store-id "$CKS" >/dev/null
[ "$(q describe-key --key-id "$K" --query KeyMetadata.KeyState)" = Unavailable ] || fail "not Unavailable"
expect_err KMSInvalidStateException encrypt --key-id "$K" --plaintext "fileb://$T/pt"
expect_err KMSInvalidStateException decrypt --ciphertext-blob "fileb://$T/ct" --encryption-context app=cli
expect_err CustomKeyStoreInvalidStateException create-key --custom-key-store-id "$CKS" --origin AWS_CLOUDHSM
expect_err CustomKeyStoreHasCMKsException delete-custom-key-store --custom-key-store-id "$CKS"
q update-custom-key-store --custom-key-store-id "$CKS" --new-custom-key-store-name renamed >/dev/null
[ "$(q describe-custom-key-stores --custom-key-store-id "$CKS" --query 'CustomKeyStores[0].CustomKeyStoreName')" = renamed ] \
  || fail "update-custom-key-store did not rename"
q connect-custom-key-store --custom-key-store-id "$CKS" >/dev/null
expect_err CustomKeyStoreInvalidStateException delete-custom-key-store --custom-key-store-id "$CKS"
q decrypt --ciphertext-blob "fileb://$T/ct" --encryption-context app=cli --query Plaintext | base64 -d | cmp -s - "$T/pt" \
  || fail "decrypt after reconnecting"
echo "kms_hsm_cli: all checks passed"
