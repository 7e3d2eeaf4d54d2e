#!/usr/bin/env python3
"""server_boto3.py — boto3 and raw HTTP against `envelopefs kms serve`: operations, error names,
the wire format (x-amzn-RequestId, __type/message bodies), SigV4 rejections (missing, malformed,
wrong, expired), unknown operations, malformed JSON; asymmetric and HMAC keys and data key pairs (Sign, Verify,
GetPublicKey checked with the cryptography package, RSA-OAEP both ways, GenerateMac, VerifyMac) with their errors;
imported key material (GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial).
Usage: server_boto3.py URL AK SK"""
import base64, datetime, http.client, json, sys, urllib.parse
import boto3, botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

url, ak, sk = sys.argv[1:4]
kms = boto3.client("kms", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ak,
                   aws_secret_access_key=sk, config=Config(retries={"max_attempts": 1}))

def err(fn, **kw):
    try:
        fn(**kw)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError(f"{fn.__name__} succeeded")

k = kms.create_key(Description="boto3", Tags=[{"TagKey": "a", "TagValue": "b"}])["KeyMetadata"]
assert k["KeyState"] == "Enabled" and k["Arn"].endswith(k["KeyId"])
kms.create_alias(AliasName="alias/boto", TargetKeyId=k["KeyId"])
dk = kms.generate_data_key(KeyId="alias/boto", KeySpec="AES_256", EncryptionContext={"purpose": "boto3"})
assert len(dk["Plaintext"]) == 32 and dk["KeyId"] == k["Arn"]
pt = kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"purpose": "boto3"})["Plaintext"]
assert pt == dk["Plaintext"]
assert err(kms.decrypt, CiphertextBlob=dk["CiphertextBlob"]) == "InvalidCiphertextException"
assert err(kms.decrypt, CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"Purpose": "boto3"}) == "InvalidCiphertextException"
ct = kms.encrypt(KeyId=k["Arn"], Plaintext=b"x" * 4096)["CiphertextBlob"]
assert kms.decrypt(CiphertextBlob=ct)["Plaintext"] == b"x" * 4096
assert err(kms.encrypt, KeyId=k["KeyId"], Plaintext=b"x" * 4097) == "ValidationException"
assert err(kms.generate_data_key, KeyId=k["KeyId"]) == "ValidationException"
assert err(kms.describe_key, KeyId="alias/missing") == "NotFoundException"
kms.enable_key_rotation(KeyId=k["KeyId"])
kms.rotate_key_on_demand(KeyId=k["KeyId"])
assert kms.decrypt(CiphertextBlob=ct)["Plaintext"] == b"x" * 4096
ct2 = kms.re_encrypt(CiphertextBlob=ct, DestinationKeyId="alias/boto")["CiphertextBlob"]
assert ct2[18:22] == b"\0\0\0\2", "ReEncrypt moves the blob to the newest key version"
page = kms.list_keys(Limit=1)
assert len(page["Keys"]) == 1
paginator = kms.get_paginator("list_aliases")
assert any(a["AliasName"] == "alias/boto" for p in paginator.paginate() for a in p["Aliases"])
kms.disable_key(KeyId=k["KeyId"])
assert err(kms.decrypt, CiphertextBlob=ct) == "DisabledException"
kms.enable_key(KeyId=k["KeyId"])

# Asymmetric and HMAC keys, data key pairs (issue 17), with boto3's own shapes and error names
import hashlib
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
sgn = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
assert sgn["KeySpec"] == "ECC_NIST_P256" and sgn["SigningAlgorithms"] == ["ECDSA_SHA_256"], sgn
pub = kms.get_public_key(KeyId=sgn["KeyId"])
assert pub["KeyUsage"] == "SIGN_VERIFY" and pub["SigningAlgorithms"] == ["ECDSA_SHA_256"]
pk = serialization.load_der_public_key(pub["PublicKey"])
sig = kms.sign(KeyId=sgn["KeyId"], Message=b"boto3 message", MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
pk.verify(sig, b"boto3 message", ec.ECDSA(hashes.SHA256()))
dsig = kms.sign(KeyId=sgn["KeyId"], Message=hashlib.sha256(b"boto3 message").digest(), MessageType="DIGEST",
                SigningAlgorithm="ECDSA_SHA_256")["Signature"]
pk.verify(dsig, b"boto3 message", ec.ECDSA(hashes.SHA256()))
assert kms.verify(KeyId=sgn["KeyId"], Message=b"boto3 message", Signature=dsig, SigningAlgorithm="ECDSA_SHA_256")["SignatureValid"]
assert err(kms.verify, KeyId=sgn["KeyId"], Message=b"other", Signature=sig, SigningAlgorithm="ECDSA_SHA_256") == "KMSInvalidSignatureException"
assert err(kms.sign, KeyId=sgn["KeyId"], Message=b"x" * 31, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256") == "ValidationException"
assert err(kms.sign, KeyId=sgn["KeyId"], Message=b"x", SigningAlgorithm="RSASSA_PSS_SHA_256") == "InvalidKeyUsageException"
assert err(kms.sign, KeyId=k["KeyId"], Message=b"x", SigningAlgorithm="ECDSA_SHA_256") == "InvalidKeyUsageException"
assert err(kms.get_public_key, KeyId=k["KeyId"]) == "UnsupportedOperationException"
assert err(kms.enable_key_rotation, KeyId=sgn["KeyId"]) == "UnsupportedOperationException"
ek = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
assert ek["EncryptionAlgorithms"] == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"], ek
epk = serialization.load_der_public_key(kms.get_public_key(KeyId=ek["Arn"])["PublicKey"])
ct = epk.encrypt(b"r" * 190, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
d = kms.decrypt(KeyId=ek["KeyId"], CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
assert d["Plaintext"] == b"r" * 190 and d["EncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
ct = kms.encrypt(KeyId=ek["KeyId"], Plaintext=b"s" * 214, EncryptionAlgorithm="RSAES_OAEP_SHA_1")["CiphertextBlob"]
assert kms.decrypt(KeyId=ek["KeyId"], CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_1")["Plaintext"] == b"s" * 214
assert err(kms.encrypt, KeyId=ek["KeyId"], Plaintext=b"s" * 215, EncryptionAlgorithm="RSAES_OAEP_SHA_1") == "ValidationException"
assert err(kms.encrypt, KeyId=ek["KeyId"], Plaintext=b"s") == "InvalidKeyUsageException"
assert err(kms.encrypt, KeyId=ek["KeyId"], Plaintext=b"s", EncryptionAlgorithm="RSAES_OAEP_SHA_256",
           EncryptionContext={"a": "b"}) == "ValidationException"
hk = kms.create_key(KeySpec="HMAC_512", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
assert hk["MacAlgorithms"] == ["HMAC_SHA_512"], hk
mac = kms.generate_mac(KeyId=hk["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_512")["Mac"]
assert len(mac) == 64
assert kms.verify_mac(KeyId=hk["KeyId"], Message=b"m", Mac=mac, MacAlgorithm="HMAC_SHA_512")["MacValid"]
assert err(kms.verify_mac, KeyId=hk["KeyId"], Message=b"n", Mac=mac, MacAlgorithm="HMAC_SHA_512") == "KMSInvalidMacException"
assert err(kms.generate_mac, KeyId=hk["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256") == "InvalidKeyUsageException"
pair = kms.generate_data_key_pair(KeyId="alias/boto", KeyPairSpec="RSA_2048", EncryptionContext={"p": "q"})
priv = serialization.load_der_private_key(pair["PrivateKeyPlaintext"], password=None)
assert priv.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == pair["PublicKey"]
assert kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext={"p": "q"})["Plaintext"] == pair["PrivateKeyPlaintext"]
npair = kms.generate_data_key_pair_without_plaintext(KeyId=k["KeyId"], KeyPairSpec="ECC_NIST_P384")
assert "PrivateKeyPlaintext" not in npair and npair["KeyPairSpec"] == "ECC_NIST_P384"
assert err(kms.generate_data_key_pair, KeyId=sgn["KeyId"], KeyPairSpec="RSA_2048") == "InvalidKeyUsageException"
assert err(kms.create_key, KeySpec="ECC_NIST_P256", KeyUsage="ENCRYPT_DECRYPT") == "ValidationException"

# Imported key material over the server: the wrapping key from GetParametersForImport, material wrapped with
# the cryptography package (RSA-OAEP SHA-256), expiry model, reimport after DeleteImportedKeyMaterial
import datetime as _dt, os as _os
xk = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]
assert xk["KeyState"] == "PendingImport" and xk["Origin"] == "EXTERNAL"
params = kms.get_parameters_for_import(KeyId=xk["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
wrap = serialization.load_der_public_key(params["PublicKey"])
material = _os.urandom(32)
ekm = wrap.encrypt(material, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
assert err(kms.import_key_material, KeyId=xk["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=ekm) == "ValidationException"
kms.import_key_material(KeyId=xk["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=ekm,
                        ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=_dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=30))
md = kms.describe_key(KeyId=xk["KeyId"])["KeyMetadata"]
assert md["KeyState"] == "Enabled" and md["ExpirationModel"] == "KEY_MATERIAL_EXPIRES" and "ValidTo" in md, md
xct = kms.encrypt(KeyId=xk["KeyId"], Plaintext=b"byok")["CiphertextBlob"]
kms.delete_imported_key_material(KeyId=xk["KeyId"])
assert err(kms.decrypt, CiphertextBlob=xct) == "KMSInvalidStateException"
kms.import_key_material(KeyId=xk["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=ekm,
                        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
assert kms.decrypt(CiphertextBlob=xct)["Plaintext"] == b"byok"
bad = wrap.encrypt(_os.urandom(32), padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
assert err(kms.import_key_material, KeyId=xk["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=bad,
           ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE") == "IncorrectKeyMaterialException"
assert err(kms.import_key_material, KeyId=xk["KeyId"], ImportToken=b"EFIT" + b"\0" * 100, EncryptedKeyMaterial=ekm,
           ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE") == "InvalidImportTokenException"
assert err(kms.enable_key_rotation, KeyId=xk["KeyId"]) == "UnsupportedOperationException"
assert err(kms.get_parameters_for_import, KeyId=k["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_1",
           WrappingKeySpec="RSA_2048") == "UnsupportedOperationException"

# Raw protocol checks
u = urllib.parse.urlparse(url)

def raw(op, body, sign=True, date=None, secret=sk, extra=None, amz_date=None):
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"TrentService.{op}",
               "Host": u.netloc}
    if sign:
        req = AWSRequest(method="POST", url=url + "/", data=body, headers=headers)
        auth = SigV4Auth(Credentials(ak, secret), "kms", "us-east-1")
        ts = amz_date or (date or datetime.datetime.utcnow()).strftime("%Y%m%dT%H%M%SZ")
        req.context["timestamp"] = ts
        auth._modify_request_before_signing(req)
        canonical = auth.canonical_request(req)
        sts = auth.string_to_sign(req, canonical)
        sig = auth.signature(sts, req)
        auth._inject_signature_to_request(req, sig)
        headers = dict(req.headers.items())
    headers.update(extra or {})
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    c.request("POST", "/", body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    rid = r.getheader("x-amzn-RequestId")
    c.close()
    return r.status, json.loads(data), rid

st, body, rid = raw("ListKeys", b"{}")
assert st == 200 and "Keys" in body and rid and len(rid) == 36, (st, body, rid)
st, body, rid = raw("ListKeys", b"{}", sign=False)
assert st == 400 and body["__type"] == "MissingAuthenticationTokenException" and rid, body
st, body, _ = raw("ListKeys", b"{}", secret="wrong")
assert body["__type"] == "InvalidSignatureException", body
st, body, _ = raw("ListKeys", b"{}", date=datetime.datetime.utcnow() - datetime.timedelta(minutes=6))
assert body["__type"] == "InvalidSignatureException" and "expired" in body["message"].lower(), body
# A date with a field out of range, signed as sent: second 60 of the previous minute would normalise to
# a time within the allowed skew, but X-Amz-Date must be a real date.
st, body, _ = raw("ListKeys", b"{}", amz_date=(datetime.datetime.utcnow() - datetime.timedelta(minutes=1)).strftime("%Y%m%dT%H%M60Z"))
assert st == 400 and body["__type"] == "IncompleteSignatureException", body
st, body, _ = raw("ListKeys", b"{}", extra={"Authorization": "AWS4-HMAC-SHA256 garbage"})
assert body["__type"] == "IncompleteSignatureException", body
st, body, _ = raw("NoSuchThing", b"{}")
assert body["__type"] == "UnknownOperationException", body
st, body, _ = raw("ListKeys", b"{not json")
assert body["__type"] == "SerializationException", body
st, body, _ = raw("Decrypt", json.dumps({"CiphertextBlob": base64.b64encode(b"\1" * 60).decode()}).encode())
assert st == 400 and body["__type"] == "InvalidCiphertextException", body

# AWS semantics the model and the service enforce (issue 16's "smaller gaps")
t = kms.create_key(Description="tags")["KeyMetadata"]["KeyId"]
assert err(kms.tag_resource, KeyId=t, Tags=[{"TagKey": "aws:owner", "TagValue": "x"}]) == "TagException"
assert err(kms.tag_resource, KeyId=t, Tags=[{"TagKey": "k" * 129, "TagValue": "x"}]) == "TagException"
assert err(kms.tag_resource, KeyId=t, Tags=[{"TagKey": "k", "TagValue": "v" * 257}]) == "TagException"
kms.tag_resource(KeyId=t, Tags=[{"TagKey": "k" * 128, "TagValue": "v" * 256}])
kms.tag_resource(KeyId=t, Tags=[{"TagKey": f"t{i:02d}", "TagValue": str(i)} for i in range(49)])
assert err(kms.tag_resource, KeyId=t, Tags=[{"TagKey": "one-too-many", "TagValue": "x"}]) == "LimitExceededException"
kms.tag_resource(KeyId=t, Tags=[{"TagKey": "t00", "TagValue": "replaced"}])  # not a new key: allowed at 50
assert err(kms.create_key, Tags=[{"TagKey": f"c{i}", "TagValue": "x"} for i in range(51)]) == "LimitExceededException"
assert err(kms.create_key, Tags=[{"TagKey": "AWS:x", "TagValue": "x"}]) == "TagException"
seen, marker = [], None
while True:
    page = kms.list_resource_tags(KeyId=t, Limit=7, **({"Marker": marker} if marker else {}))
    seen += [x["TagKey"] for x in page["Tags"]]
    assert len(page["Tags"]) <= 7
    if not page["Truncated"]:
        assert "NextMarker" not in page
        break
    marker = page["NextMarker"]
assert len(seen) == 50 == len(set(seen)) and seen == sorted(seen), seen
assert err(kms.list_resource_tags, KeyId=t, Limit=51) == "ValidationException"
assert err(kms.generate_data_key, KeyId=k["KeyId"], KeySpec="AES_256", GrantTokens=["g"] * 11) == "ValidationException"
# ten are allowed, but each must be a token of a grant the store holds (issue 16's grants)
assert err(kms.generate_data_key, KeyId=k["KeyId"], KeySpec="AES_256", GrantTokens=["g"] * 10) == "InvalidGrantTokenException"
assert err(kms.encrypt, KeyId=k["KeyId"], Plaintext=b"x", EncryptionAlgorithm="ROT13") == "ValidationException"
assert err(kms.encrypt, KeyId=k["KeyId"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256") == "InvalidKeyUsageException"
assert err(kms.encrypt, KeyId="alias/none", Plaintext=b"x", EncryptionAlgorithm="ROT13") == "ValidationException"  # before the key
assert err(kms.generate_data_key, KeyId=k["KeyId"], KeySpec="AES_512") == "ValidationException"
assert err(kms.create_key, KeySpec="RSA_1024") == "ValidationException"
assert err(kms.create_key, KeyUsage="ENCRYPT") == "ValidationException"
try:
    kms.generate_data_key(KeyId=k["KeyId"], KeySpec="AES_256", DryRun=True)
    raise AssertionError("DryRun succeeded")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "DryRunOperationException" and e.response["ResponseMetadata"]["HTTPStatusCode"] == 412, e.response
blob = kms.encrypt(KeyId=k["KeyId"], Plaintext=b"dry")["CiphertextBlob"]
for fn, kw in [(kms.encrypt, {"KeyId": k["KeyId"], "Plaintext": b"x"}), (kms.decrypt, {"CiphertextBlob": blob}),
               (kms.re_encrypt, {"CiphertextBlob": blob, "DestinationKeyId": t}),
               (kms.generate_data_key_without_plaintext, {"KeyId": k["KeyId"], "KeySpec": "AES_256"})]:
    assert err(fn, DryRun=True, **kw) == "DryRunOperationException", fn.__name__
    fn(DryRun=False, **kw)
ek = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
assert err(kms.sign, KeyId=ek, Message=b"m", SigningAlgorithm="ECDSA_SHA_256", DryRun=True) == "DryRunOperationException"
kms.sign(KeyId=ek, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
kms.disable_key(KeyId=t)  # a dry run is answered after the checks: a disabled key is still refused
assert err(kms.encrypt, KeyId=t, Plaintext=b"x", DryRun=True) == "DisabledException"
kms.enable_key(KeyId=t)
print("server_boto3: all checks passed")
