#!/usr/bin/env bash
# make-golden.sh VERSION — write tests/kms/golden/VERSION: a key store of the current keystore format holding
# one key of each kind (RSA_2048 SIGN_VERIFY, RSA_3072 ENCRYPT_DECRYPT, ECC_NIST_P256, HMAC_256, an imported
# SYMMETRIC_DEFAULT key, a SYMMETRIC_DEFAULT key; from v3 a multi-Region key rotated once; from v4 a custom key
# store (feature custom_key_stores, rows only: DISCONNECTED, its cluster named in a clusters file that is not
# kept, no key in it, so no PKCS#11 token is needed to read it)) and expected.json: public keys, signatures, a MAC,
# ciphertexts and their plaintexts made with them, which kms_golden_store.sh checks a later build still
# reads. Run once when the keystore format changes; the tree is then checked in and never regenerated.
set -euo pipefail
B=${ENVELOPEFS_BIN:?ENVELOPEFS_BIN must point at the envelopefs binary}
G=$(cd "$(dirname "$0")" && pwd)/${1:?usage: make-golden.sh VERSION}
[ -e "$G" ] && { echo "$G exists: golden stores are never regenerated" >&2; exit 1; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mkdir -p "$G"
export ENVELOPEFS_STORE=$G/store
q() { "$B" kms "$@" --output text; }
"$B" kms init-store --generate-root-key >/dev/null
RS=$(q create-key --key-spec RSA_2048 --key-usage SIGN_VERIFY --description golden-rsa-sign --query KeyMetadata.KeyId)
RE=$(q create-key --key-spec RSA_3072 --key-usage ENCRYPT_DECRYPT --description golden-rsa-enc --query KeyMetadata.KeyId)
EC=$(q create-key --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY --description golden-ecc --query KeyMetadata.KeyId)
HM=$(q create-key --key-spec HMAC_256 --key-usage GENERATE_VERIFY_MAC --description golden-hmac --query KeyMetadata.KeyId)
SY=$(q create-key --description golden-symmetric --query KeyMetadata.KeyId)
MR=$(q create-key --multi-region --description golden-multi-region --query KeyMetadata.KeyId)
"$B" kms rotate-key-on-demand --key-id "$MR" >/dev/null
CKS=""
if [ "${G##*/v}" -ge 4 ] 2>/dev/null; then
  printf '# cluster id, PKCS#11 module, token label (for create-custom-key-store only)\ncluster-goldenstorecks /nonexistent/libgolden-pkcs11.so golden-token\n' >"$T/hsm-clusters"
  CKS=$(ENVELOPEFS_HSM_CLUSTERS=$T/hsm-clusters q create-custom-key-store --custom-key-store-name golden-cks \
          --cloud-hsm-cluster-id cluster-goldenstorecks --trust-anchor-certificate golden-trust-anchor \
          --key-store-password golden-pin-1234 --query CustomKeyStoreId)
fi
XT=$(q create-key --origin EXTERNAL --description golden-imported --query KeyMetadata.KeyId)
"$B" kms get-parameters-for-import --key-id "$XT" --wrapping-algorithm RSAES_OAEP_SHA_256 --wrapping-key-spec RSA_2048 >"$T/p"
python3 -c 'import json,sys,base64; d=json.load(open(sys.argv[1]))
open(sys.argv[2],"wb").write(base64.b64decode(d["PublicKey"])); open(sys.argv[3],"wb").write(base64.b64decode(d["ImportToken"]))' \
  "$T/p" "$T/wrap.der" "$T/token"
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(32)))' >"$T/material"
openssl pkeyutl -encrypt -pubin -keyform DER -inkey "$T/wrap.der" -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \
  -pkeyopt rsa_mgf1_md:sha256 -in "$T/material" -out "$T/material.enc"
"$B" kms import-key-material --key-id "$XT" --import-token "fileb://$T/token" --encrypted-key-material "fileb://$T/material.enc" \
  --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE >/dev/null
MSG=$(printf 'envelopefs golden message' | base64)
python3 - "$G/expected.json" "$MSG" "$RS" "$RE" "$EC" "$HM" "$SY" "$XT" "$B" "$MR" "$CKS" <<'PY'
import json, subprocess, sys
out, msg, rs, re_, ec, hm, sy, xt, b, mr, cks = sys.argv[1:12]
def kms(*a):
    return json.loads(subprocess.check_output([b, "kms", *a]))
exp = {"message": msg, "keys": {"rsa_sign": rs, "rsa_encrypt": re_, "ecc": ec, "hmac": hm, "symmetric": sy, "imported": xt}}
exp["public_keys"] = {n: kms("get-public-key", "--key-id", k)["PublicKey"] for n, k in (("rsa_sign", rs), ("rsa_encrypt", re_), ("ecc", ec))}
exp["signatures"] = {alg: kms("sign", "--key-id", k, "--message", msg, "--signing-algorithm", alg)["Signature"]
                     for alg, k in (("RSASSA_PSS_SHA_256", rs), ("RSASSA_PKCS1_V1_5_SHA_512", rs), ("ECDSA_SHA_256", ec))}
exp["mac"] = kms("generate-mac", "--key-id", hm, "--message", msg, "--mac-algorithm", "HMAC_SHA_256")["Mac"]
exp["rsa_ciphertext"] = kms("encrypt", "--key-id", re_, "--plaintext", msg, "--encryption-algorithm", "RSAES_OAEP_SHA_256")["CiphertextBlob"]
exp["symmetric_ciphertext"] = kms("encrypt", "--key-id", sy, "--plaintext", msg, "--encryption-context", "golden=v2")["CiphertextBlob"]
exp["imported_ciphertext"] = kms("encrypt", "--key-id", xt, "--plaintext", msg)["CiphertextBlob"]
exp["keys"]["multi_region"] = mr
exp["multi_region_ciphertext"] = kms("encrypt", "--key-id", mr, "--plaintext", msg)["CiphertextBlob"]  # version 2
if cks:  # v4 on: the custom key store as DescribeCustomKeyStores showed it
    exp["custom_key_stores"] = kms("describe-custom-key-stores")["CustomKeyStores"]
    assert [s["CustomKeyStoreId"] for s in exp["custom_key_stores"]] == [cks], exp["custom_key_stores"]
json.dump(exp, open(out, "w"), indent=2)
PY
echo "wrote $G"
