#!/usr/bin/env python3
"""server_hsm.py — a custom key store (AWS_CLOUDHSM over a SoftHSM2 token) with boto3 against our server
(server_hsm.sh): CreateCustomKeyStore and its errors, ConnectCustomKeyStore, DescribeCustomKeyStores (paging),
CreateKey in the store (Origin AWS_CLOUDHSM, CustomKeyStoreId, CloudHsmClusterId), Encrypt/Decrypt with an
encryption context, GenerateDataKey and GenerateDataKeyWithoutPlaintext, ReEncrypt to and from an ordinary key,
rotation refused, DisconnectCustomKeyStore (Unavailable, KMSInvalidStateException,
CustomKeyStoreInvalidStateException), DeleteCustomKeyStore refused (CustomKeyStoreHasCMKsException while a key
exists, CustomKeyStoreInvalidStateException while connected), UpdateCustomKeyStore, and a wrong password (FAILED,
INVALID_CREDENTIALS). Prints "store ID" and "key ID" (connected) for server_hsm.sh.
Usage: server_hsm.py URL AK SK CLUSTER PIN CLUSTER2 (CLUSTER2: a cluster naming no token)"""
import sys
import boto3, botocore
from botocore.config import Config

url, ak, sk, cluster, pin, cluster2 = sys.argv[1:7]
kms = boto3.client("kms", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ak, aws_secret_access_key=sk,
                   config=Config(retries={"max_attempts": 1}))

def err(fn, **kw):
    try:
        fn(**kw)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError(f"{fn.__name__} succeeded")

def state(cks):
    s = kms.describe_custom_key_stores(CustomKeyStoreId=cks)["CustomKeyStores"]
    assert len(s) == 1, s
    return s[0]["ConnectionState"], s[0].get("ConnectionErrorCode")

anchor = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
assert err(kms.create_custom_key_store, CustomKeyStoreName="s", CloudHsmClusterId="cluster-zzzzzzzzzzz",
           TrustAnchorCertificate=anchor, KeyStorePassword=pin) == "CloudHsmClusterNotFoundException"
cks = kms.create_custom_key_store(CustomKeyStoreName="boto3-hsm", CloudHsmClusterId=cluster,
                                  TrustAnchorCertificate=anchor, KeyStorePassword=pin,
                                  CustomKeyStoreType="AWS_CLOUDHSM")["CustomKeyStoreId"]
assert cks.startswith("cks-") and len(cks) == 21, cks
assert err(kms.create_custom_key_store, CustomKeyStoreName="boto3-hsm", CloudHsmClusterId="cluster-bbbbbbbbbbb",
           TrustAnchorCertificate=anchor, KeyStorePassword=pin) == "CustomKeyStoreNameInUseException"
assert err(kms.create_custom_key_store, CustomKeyStoreName="another", CloudHsmClusterId=cluster,
           TrustAnchorCertificate=anchor, KeyStorePassword=pin) == "CloudHsmClusterInUseException"
assert err(kms.describe_custom_key_stores, CustomKeyStoreId="cks-00000000000000000") == "CustomKeyStoreNotFoundException"
s = kms.describe_custom_key_stores()["CustomKeyStores"][0]
assert s["CustomKeyStoreName"] == "boto3-hsm" and s["CloudHsmClusterId"] == cluster and s["TrustAnchorCertificate"] == anchor
assert s["ConnectionState"] == "DISCONNECTED" and s["CustomKeyStoreType"] == "AWS_CLOUDHSM" and "CreationDate" in s
assert err(kms.create_key, CustomKeyStoreId=cks, Origin="AWS_CLOUDHSM") == "CustomKeyStoreInvalidStateException"
assert err(kms.create_key, CustomKeyStoreId="cks-00000000000000000", Origin="AWS_CLOUDHSM") == "CustomKeyStoreNotFoundException"

# a wrong password: Connect answers, the store is FAILED (INVALID_CREDENTIALS) until disconnected
kms.update_custom_key_store(CustomKeyStoreId=cks, KeyStorePassword="not-the-pin")
kms.connect_custom_key_store(CustomKeyStoreId=cks)
assert state(cks) == ("FAILED", "INVALID_CREDENTIALS"), state(cks)
assert err(kms.connect_custom_key_store, CustomKeyStoreId=cks) == "CustomKeyStoreInvalidStateException"
kms.disconnect_custom_key_store(CustomKeyStoreId=cks)
kms.update_custom_key_store(CustomKeyStoreId=cks, KeyStorePassword=pin)
kms.connect_custom_key_store(CustomKeyStoreId=cks)
assert state(cks) == ("CONNECTED", None), state(cks)
assert err(kms.update_custom_key_store, CustomKeyStoreId=cks, NewCustomKeyStoreName="x") == "CustomKeyStoreInvalidStateException"

m = kms.create_key(CustomKeyStoreId=cks, Origin="AWS_CLOUDHSM", Description="in SoftHSM2")["KeyMetadata"]
kid = m["KeyId"]
assert m["Origin"] == "AWS_CLOUDHSM" and m["CustomKeyStoreId"] == cks and m["CloudHsmClusterId"] == cluster, m
assert m["KeyState"] == "Enabled" and m["KeySpec"] == "SYMMETRIC_DEFAULT"
assert err(kms.create_key, CustomKeyStoreId=cks, Origin="AWS_CLOUDHSM", KeySpec="HMAC_256",
           KeyUsage="GENERATE_VERIFY_MAC") == "UnsupportedOperationException"
plain = kms.create_key()["KeyMetadata"]["KeyId"]

ctx = {"tenant": "t1", "purpose": "server_hsm"}
ct = kms.encrypt(KeyId=kid, Plaintext=b"hello from boto3", EncryptionContext=ctx)["CiphertextBlob"]
d = kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)
assert d["Plaintext"] == b"hello from boto3" and d["KeyId"].endswith(kid)
assert err(kms.decrypt, CiphertextBlob=ct, EncryptionContext={"tenant": "t2"}) == "InvalidCiphertextException"
assert err(kms.decrypt, CiphertextBlob=ct[:-1] + bytes([ct[-1] ^ 1]), EncryptionContext=ctx) == "InvalidCiphertextException"
g = kms.generate_data_key(KeyId=kid, KeySpec="AES_256", EncryptionContext=ctx)
assert len(g["Plaintext"]) == 32
assert kms.decrypt(CiphertextBlob=g["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == g["Plaintext"]
w = kms.generate_data_key_without_plaintext(KeyId=kid, NumberOfBytes=48)
assert "Plaintext" not in w and len(kms.decrypt(CiphertextBlob=w["CiphertextBlob"])["Plaintext"]) == 48
r = kms.re_encrypt(CiphertextBlob=ct, SourceEncryptionContext=ctx, DestinationKeyId=plain)
assert r["SourceKeyId"].endswith(kid) and r["KeyId"].endswith(plain)
back = kms.re_encrypt(CiphertextBlob=r["CiphertextBlob"], DestinationKeyId=kid, DestinationEncryptionContext=ctx)
assert kms.decrypt(CiphertextBlob=back["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == b"hello from boto3"
assert err(kms.enable_key_rotation, KeyId=kid) == "UnsupportedOperationException"
assert err(kms.rotate_key_on_demand, KeyId=kid) == "UnsupportedOperationException"

# disconnected
assert err(kms.delete_custom_key_store, CustomKeyStoreId=cks) == "CustomKeyStoreInvalidStateException"
kms.disconnect_custom_key_store(CustomKeyStoreId=cks)
assert state(cks) == ("DISCONNECTED", None)
assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Unavailable"
assert err(kms.encrypt, KeyId=kid, Plaintext=b"x") == "KMSInvalidStateException"
assert err(kms.decrypt, CiphertextBlob=ct, EncryptionContext=ctx) == "KMSInvalidStateException"
assert err(kms.generate_data_key, KeyId=kid, KeySpec="AES_128") == "KMSInvalidStateException"
assert err(kms.create_key, CustomKeyStoreId=cks, Origin="AWS_CLOUDHSM") == "CustomKeyStoreInvalidStateException"
assert err(kms.delete_custom_key_store, CustomKeyStoreId=cks) == "CustomKeyStoreHasCMKsException"
kms.update_custom_key_store(CustomKeyStoreId=cks, NewCustomKeyStoreName="boto3-hsm-renamed")
assert kms.describe_custom_key_stores(CustomKeyStoreName="boto3-hsm-renamed")["CustomKeyStores"][0]["CustomKeyStoreId"] == cks

# a second, empty store: paging, then it is deleted
cks2 = kms.create_custom_key_store(CustomKeyStoreName="empty", CloudHsmClusterId=cluster2,
                                   TrustAnchorCertificate=anchor, KeyStorePassword=pin)["CustomKeyStoreId"]
p1 = kms.describe_custom_key_stores(Limit=1)
assert len(p1["CustomKeyStores"]) == 1 and p1["Truncated"] is True and p1["CustomKeyStores"][0]["CustomKeyStoreId"] == cks
p2 = kms.describe_custom_key_stores(Limit=1, Marker=p1["NextMarker"])
assert [x["CustomKeyStoreId"] for x in p2["CustomKeyStores"]] == [cks2] and p2["Truncated"] is False
assert err(kms.describe_custom_key_stores, Limit=1001) == "ValidationException"
kms.connect_custom_key_store(CustomKeyStoreId=cks2)  # its token does not exist
assert state(cks2) == ("FAILED", "CLUSTER_NOT_FOUND"), state(cks2)
kms.disconnect_custom_key_store(CustomKeyStoreId=cks2)
kms.delete_custom_key_store(CustomKeyStoreId=cks2)
assert err(kms.describe_custom_key_stores, CustomKeyStoreId=cks2) == "CustomKeyStoreNotFoundException"

kms.connect_custom_key_store(CustomKeyStoreId=cks)
assert kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)["Plaintext"] == b"hello from boto3"
print("store", cks)
print("key", kid)
