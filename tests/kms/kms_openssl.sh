#!/usr/bin/env bash
# kms_openssl.sh — interop of asymmetric keys with the `openssl` command line, through `envelopefs kms`:
# the public key from get-public-key verifies what sign made (RSA PSS and PKCS#1 v1.5, ECDSA on every
# curve; RAW and DIGEST), `openssl pkeyutl` encrypts with it what decrypt opens (OAEP SHA-1 and SHA-256),
# and the other way round:
# the private key of generate-data-key-pair (PKCS#8 DER) signs with `openssl`, and the signature verifies
# with the pair's public key; its wrapped copy decrypts to the same key. Imported key material wrapped with
# `openssl enc -id-aes256-wrap-pad` / `openssl pkeyutl` under the wrapping key from get-parameters-for-import.
set -euo pipefail
B=${ENVELOPEFS_BIN:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
export ENVELOPEFS_STORE=$T/store
fail() { echo "FAIL: $*" >&2; exit 1; }
q() { "$B" kms "$@" --output text; }
$B kms init-store --generate-root-key >/dev/null
head -c 3000 /dev/urandom >"$T/msg"

# sign_case SPEC ALG DGST [openssl -sigopt ...]: RAW and DIGEST signatures verify with openssl
sign_case() {
  local spec=$1 alg=$2 dg=$3; shift 3
  local k; k=$(q create-key --key-spec "$spec" --key-usage SIGN_VERIFY --query KeyMetadata.KeyId)
  q get-public-key --key-id "$k" --query PublicKey | base64 -d >"$T/pub.der"
  openssl pkey -pubin -inform DER -in "$T/pub.der" -noout 2>/dev/null || fail "$spec: public key is not DER SPKI"
  q sign --key-id "$k" --message "fileb://$T/msg" --message-type RAW --signing-algorithm "$alg" --query Signature \
    | base64 -d >"$T/sig"
  openssl dgst "-$dg" "$@" -keyform DER -verify "$T/pub.der" -signature "$T/sig" "$T/msg" >/dev/null \
    || fail "$spec $alg: openssl does not verify a RAW signature"
  openssl dgst "-$dg" -binary "$T/msg" >"$T/digest"
  q sign --key-id "$k" --message "fileb://$T/digest" --message-type DIGEST --signing-algorithm "$alg" \
    --query Signature | base64 -d >"$T/sig2"
  openssl dgst "-$dg" "$@" -keyform DER -verify "$T/pub.der" -signature "$T/sig2" "$T/msg" >/dev/null \
    || fail "$spec $alg: openssl does not verify a DIGEST signature"
  # and the service verifies its signature of the digest as RAW over the message
  [ "$(q verify --key-id "$k" --message "fileb://$T/msg" --signature "fileb://$T/sig2" --signing-algorithm "$alg" \
       --query SignatureValid)" = True ] || fail "$spec $alg: verify"
  # a signature over another message is refused
  printf x >>"$T/msg.other"; cat "$T/msg" >>"$T/msg.other"
  set +e; "$B" kms verify --key-id "$k" --message "fileb://$T/msg.other" --signature "fileb://$T/sig" \
    --signing-algorithm "$alg" >/dev/null 2>"$T/err"; rc=$?; set -e
  [ $rc -eq 254 ] && grep -q KMSInvalidSignatureException "$T/err" || fail "$spec $alg: a bad signature verified"
  rm -f "$T/msg.other"
}
sign_case RSA_2048 RSASSA_PSS_SHA_256 sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest
sign_case RSA_3072 RSASSA_PSS_SHA_384 sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest
sign_case RSA_2048 RSASSA_PSS_SHA_512 sha512 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest
sign_case RSA_2048 RSASSA_PKCS1_V1_5_SHA_256 sha256
sign_case RSA_2048 RSASSA_PKCS1_V1_5_SHA_512 sha512
sign_case ECC_NIST_P256 ECDSA_SHA_256 sha256
sign_case ECC_NIST_P384 ECDSA_SHA_384 sha384
sign_case ECC_NIST_P521 ECDSA_SHA_512 sha512
sign_case ECC_SECG_P256K1 ECDSA_SHA_256 sha256

# openssl pkeyutl encrypts with the downloaded public key; decrypt opens it
for alg in RSAES_OAEP_SHA_1:sha1 RSAES_OAEP_SHA_256:sha256; do
  a=${alg%%:*} md=${alg##*:}
  k=$(q create-key --key-spec RSA_3072 --key-usage ENCRYPT_DECRYPT --query KeyMetadata.KeyId)
  q get-public-key --key-id "$k" --query PublicKey | base64 -d >"$T/pub.der"
  head -c 200 /dev/urandom >"$T/pt"
  openssl pkeyutl -encrypt -pubin -keyform DER -inkey "$T/pub.der" -pkeyopt rsa_padding_mode:oaep \
    -pkeyopt "rsa_oaep_md:$md" -pkeyopt "rsa_mgf1_md:$md" -in "$T/pt" -out "$T/ct"
  q decrypt --key-id "$k" --ciphertext-blob "fileb://$T/ct" --encryption-algorithm "$a" --query Plaintext \
    | base64 -d >"$T/pt2"
  cmp -s "$T/pt" "$T/pt2" || fail "$a: decrypt did not open what openssl encrypted"
done

# the other way round: a data key pair's private key (PKCS#8 DER) works in openssl
W=$(q create-key --query KeyMetadata.KeyId)
for spec in RSA_2048 ECC_NIST_P256; do
  $B kms generate-data-key-pair --key-id "$W" --key-pair-spec "$spec" --encryption-context app=interop >"$T/pair.json"
  python3 -c 'import json,sys,base64; d=json.load(open(sys.argv[1]))
open(sys.argv[2],"wb").write(base64.b64decode(d["PrivateKeyPlaintext"]))
open(sys.argv[3],"wb").write(base64.b64decode(d["PublicKey"]))
open(sys.argv[4],"wb").write(base64.b64decode(d["PrivateKeyCiphertextBlob"]))' "$T/pair.json" "$T/priv.der" "$T/pub.der" "$T/wrapped"
  openssl dgst -sha256 -keyform DER -sign "$T/priv.der" -out "$T/sig" "$T/msg"
  openssl dgst -sha256 -keyform DER -verify "$T/pub.der" -signature "$T/sig" "$T/msg" >/dev/null \
    || fail "$spec: the data key pair's halves do not match"
  q decrypt --ciphertext-blob "fileb://$T/wrapped" --encryption-context app=interop --query Plaintext \
    | base64 -d | cmp -s - "$T/priv.der" || fail "$spec: the wrapped private key does not decrypt to the private key"
  if [ "$spec" = RSA_2048 ]; then  # encrypt with openssl under the pair's public key, decrypt with its private key
    openssl pkeyutl -encrypt -pubin -keyform DER -inkey "$T/pub.der" -pkeyopt rsa_padding_mode:oaep -in "$T/msg" \
      -out /dev/null 2>/dev/null && fail "openssl encrypted 3000 bytes with RSA-OAEP"
    head -c 100 "$T/msg" >"$T/short"
    openssl pkeyutl -encrypt -pubin -keyform DER -inkey "$T/pub.der" -pkeyopt rsa_padding_mode:oaep -in "$T/short" -out "$T/ct"
    openssl pkeyutl -decrypt -keyform DER -inkey "$T/priv.der" -pkeyopt rsa_padding_mode:oaep -in "$T/ct" | cmp -s - "$T/short" \
      || fail "RSA data key pair: decrypt with the private key"
  fi
done
# without plaintext: no private key in the response
$B kms generate-data-key-pair-without-plaintext --key-id "$W" --key-pair-spec ECC_NIST_P384 >"$T/pair.json"
grep -q PrivateKeyPlaintext "$T/pair.json" && fail "without-plaintext returned the private key"

# HMAC keys from the CLI: generate-mac / verify-mac, and the MAC is HMAC-SHA-256 (length 32)
H=$(q create-key --key-spec HMAC_256 --key-usage GENERATE_VERIFY_MAC --query KeyMetadata.KeyId)
q generate-mac --key-id "$H" --message "fileb://$T/msg" --mac-algorithm HMAC_SHA_256 --query Mac | base64 -d >"$T/mac"
[ "$(stat -c %s "$T/mac")" = 32 ] || fail "HMAC_SHA_256 MAC is not 32 bytes"
[ "$(q verify-mac --key-id "$H" --message "fileb://$T/msg" --mac "fileb://$T/mac" --mac-algorithm HMAC_SHA_256 \
     --query MacValid)" = True ] || fail "verify-mac"
set +e; "$B" kms verify-mac --key-id "$H" --message "fileb://$T/digest" --mac "fileb://$T/mac" --mac-algorithm HMAC_SHA_256 \
  >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 254 ] && grep -q KMSInvalidMacException "$T/err" || fail "verify-mac accepted a MAC of another message"
# Imported key material wrapped by openssl under the downloaded wrapping key (RSA_AES_KEY_WRAP_SHA_256: an
# OAEP-wrapped AES-256 key, then AES key wrap with padding, as AWS documents it; and RSAES_OAEP_SHA_1 on
# RSA_4096); ciphertext made before the material was deleted decrypts again after the reimport
X=$(q create-key --origin EXTERNAL --description imported --query KeyMetadata.KeyId)
$B kms get-parameters-for-import --key-id "$X" --wrapping-algorithm RSA_AES_KEY_WRAP_SHA_256 --wrapping-key-spec RSA_3072 \
  >"$T/params.json"
python3 -c 'import json,sys,base64; d=json.load(open(sys.argv[1]))
open(sys.argv[2],"wb").write(base64.b64decode(d["PublicKey"])); open(sys.argv[3],"wb").write(base64.b64decode(d["ImportToken"]))' \
  "$T/params.json" "$T/wrap.der" "$T/token"
head -c 32 /dev/urandom >"$T/material"; head -c 32 /dev/urandom >"$T/aes"
openssl enc -id-aes256-wrap-pad -K "$(od -An -tx1 -v "$T/aes" | tr -d ' \n')" -iv A65959A6 -in "$T/material" -out "$T/material.kwp"
openssl pkeyutl -encrypt -pubin -keyform DER -inkey "$T/wrap.der" -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \
  -pkeyopt rsa_mgf1_md:sha256 -in "$T/aes" -out "$T/aes.enc"
cat "$T/aes.enc" "$T/material.kwp" >"$T/material.enc"
$B kms import-key-material --key-id "$X" --import-token "fileb://$T/token" --encrypted-key-material "fileb://$T/material.enc" \
  --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE >/dev/null
CT=$(q encrypt --key-id "$X" --plaintext "fileb://$T/short" --query CiphertextBlob)
$B kms delete-imported-key-material --key-id "$X" >/dev/null
[ "$(q describe-key --key-id "$X" --query KeyMetadata.KeyState)" = PendingImport ] || fail "deleted material: not PendingImport"
# reimport the same material with another token and algorithm
$B kms get-parameters-for-import --key-id "$X" --wrapping-algorithm RSAES_OAEP_SHA_1 --wrapping-key-spec RSA_4096 >"$T/params.json"
python3 -c 'import json,sys,base64; d=json.load(open(sys.argv[1]))
open(sys.argv[2],"wb").write(base64.b64decode(d["PublicKey"])); open(sys.argv[3],"wb").write(base64.b64decode(d["ImportToken"]))' \
  "$T/params.json" "$T/wrap.der" "$T/token"
openssl pkeyutl -encrypt -pubin -keyform DER -inkey "$T/wrap.der" -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 \
  -pkeyopt rsa_mgf1_md:sha1 -in "$T/material" -out "$T/material.enc"
$B kms import-key-material --key-id "$X" --import-token "fileb://$T/token" --encrypted-key-material "fileb://$T/material.enc" \
  --expiration-model KEY_MATERIAL_EXPIRES --valid-to "$(($(date +%s) + 86400))" >/dev/null
q decrypt --ciphertext-blob "$CT" --query Plaintext | base64 -d | cmp -s - "$T/short" || fail "decrypt after reimport"
# other material is refused
head -c 32 /dev/urandom >"$T/other"
openssl pkeyutl -encrypt -pubin -keyform DER -inkey "$T/wrap.der" -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 \
  -pkeyopt rsa_mgf1_md:sha1 -in "$T/other" -out "$T/other.enc"
set +e; "$B" kms import-key-material --key-id "$X" --import-token "fileb://$T/token" --encrypted-key-material "fileb://$T/other.enc" \
  --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -eq 254 ] && grep -q IncorrectKeyMaterialException "$T/err" || fail "other material was imported"
echo "kms_openssl: all checks passed"
