#!/usr/bin/env bash
# kms_golden_store.sh — golden key stores (tests/kms/golden/vN, made by make-golden.sh vN, never regenerated):
# a copy of each still opens and its keys still do what they did when it was written: the same public keys,
# the recorded signatures verify (here and with openssl), the HMAC key gives the recorded MAC byte for byte,
# and the recorded RSA, symmetric and imported-key ciphertexts decrypt to the message; from v4 the custom key
# store shows in DescribeCustomKeyStores as recorded (DISCONNECTED). A format change adds
# vN+1 and keeps the earlier ones passing.
set -euo pipefail
B=${ENVELOPEFS_BIN:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
G=$(cd "$(dirname "$0")" && pwd)/golden
for v in "$G"/v*/; do
  v=${v%/}; name=$(basename "$v")
  rm -rf "$T/store"; cp -a "$v/store" "$T/store"; chmod 700 "$T/store"; chmod 600 "$T/store/root.key"  # git keeps no modes
  export ENVELOPEFS_STORE=$T/store
  python3 - "$v/expected.json" "$B" "$T" "$name" <<'PY' || fail "$name"
import base64, json, subprocess, sys
exp, b, t, name = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
def kms(*a):
    r = subprocess.run([b, "kms", *a], capture_output=True, text=True)
    assert r.returncode == 0, (a, r.stderr)
    return json.loads(r.stdout)
k, msg = exp["keys"], exp["message"]
for n, pub in exp["public_keys"].items():
    assert kms("get-public-key", "--key-id", k[n])["PublicKey"] == pub, (name, n, "public key changed")
for alg, sig in exp["signatures"].items():
    key = k["ecc"] if alg.startswith("ECDSA") else k["rsa_sign"]
    assert kms("verify", "--key-id", key, "--message", msg, "--signature", sig, "--signing-algorithm", alg)["SignatureValid"]
    # and outside the service, with the recorded public key
    pub = exp["public_keys"]["ecc" if alg.startswith("ECDSA") else "rsa_sign"]
    open(f"{t}/pub.der", "wb").write(base64.b64decode(pub)); open(f"{t}/sig", "wb").write(base64.b64decode(sig))
    open(f"{t}/msg", "wb").write(base64.b64decode(msg))
    opts = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"] if "PSS" in alg else []
    subprocess.run(["openssl", "dgst", "-" + ("sha512" if alg.endswith("512") else "sha256"), *opts, "-keyform", "DER",
                    "-verify", f"{t}/pub.der", "-signature", f"{t}/sig", f"{t}/msg"], check=True, capture_output=True)
assert kms("generate-mac", "--key-id", k["hmac"], "--message", msg, "--mac-algorithm", "HMAC_SHA_256")["Mac"] == exp["mac"]
assert kms("decrypt", "--key-id", k["rsa_encrypt"], "--ciphertext-blob", exp["rsa_ciphertext"],
           "--encryption-algorithm", "RSAES_OAEP_SHA_256")["Plaintext"] == msg
assert kms("decrypt", "--ciphertext-blob", exp["symmetric_ciphertext"], "--encryption-context", "golden=v2")["Plaintext"] == msg
assert kms("decrypt", "--ciphertext-blob", exp["imported_ciphertext"])["Plaintext"] == msg
md = kms("describe-key", "--key-id", k["imported"])["KeyMetadata"]
assert md["Origin"] == "EXTERNAL" and md["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE", md
if "multi_region" in k:  # v3 on: a multi-Region key (feature multi_region), its second version's ciphertext
    assert kms("decrypt", "--ciphertext-blob", exp["multi_region_ciphertext"])["Plaintext"] == msg
    md = kms("describe-key", "--key-id", k["multi_region"])["KeyMetadata"]
    assert md["MultiRegion"] and md["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY", md
if "custom_key_stores" in exp:  # v4 on: a custom key store's rows (feature custom_key_stores), no token needed
    got = kms("describe-custom-key-stores")["CustomKeyStores"]
    want = exp["custom_key_stores"]  # every recorded field as recorded (a later build may add fields)
    assert len(got) == len(want) and all(g.get(f) == v for g, w in zip(got, want) for f, v in w.items()), (got, want)
    assert [s["ConnectionState"] for s in got] == ["DISCONNECTED"], got
    one = kms("describe-custom-key-stores", "--custom-key-store-name", got[0]["CustomKeyStoreName"])["CustomKeyStores"]
    assert [s["CustomKeyStoreId"] for s in one] == [got[0]["CustomKeyStoreId"]], one
print(f"{name}: ok")
PY
done
echo "kms_golden_store: all checks passed"
