#!/usr/bin/env python3
"""server_mrk.py — multi-Region keys with boto3 against two servers, one per region (server_mrk.sh): CreateKey
MultiRegion for symmetric, RSA, ECC and HMAC specs, ReplicateKey (the replica's own description, policy and tags;
same id and material), encrypt in one region and decrypt in the other, rotation of the primary reaching the replica,
UpdatePrimaryRegion, and the errors (AlreadyExists, UnsupportedOperation for single-Region keys and replicas,
Disabled, KMSInvalidState for deleting a primary with replicas, NotFound).
Usage: server_mrk.py URL_A AK_A SK_A URL_B AK_B SK_B"""
import sys
import boto3, botocore
from botocore.config import Config

ua, aka, ska, ub, akb, skb = sys.argv[1:7]
cfg = Config(retries={"max_attempts": 1})
A = boto3.client("kms", endpoint_url=ua, region_name="us-east-1", aws_access_key_id=aka, aws_secret_access_key=ska, config=cfg)
B = boto3.client("kms", endpoint_url=ub, region_name="eu-west-1", aws_access_key_id=akb, aws_secret_access_key=skb, config=cfg)

def err(fn, **kw):
    try:
        fn(**kw)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError(f"{fn.__name__} succeeded")

k = A.create_key(MultiRegion=True, Description="primary")["KeyMetadata"]
kid = k["KeyId"]
assert kid.startswith("mrk-") and len(kid) == 36 and all(c in "0123456789abcdef" for c in kid[4:]), kid
assert k["MultiRegion"] is True
mc = k["MultiRegionConfiguration"]
assert mc["MultiRegionKeyType"] == "PRIMARY" and mc["PrimaryKey"]["Region"] == "us-east-1" and mc["ReplicaKeys"] == []
single = A.create_key()["KeyMetadata"]
assert single["MultiRegion"] is False and "MultiRegionConfiguration" not in single

# errors before a replica exists
assert err(A.replicate_key, KeyId=single["KeyId"], ReplicaRegion="eu-west-1") == "UnsupportedOperationException"
assert err(A.replicate_key, KeyId=kid, ReplicaRegion="ap-south-9") == "UnsupportedOperationException"
assert err(A.replicate_key, KeyId="mrk-00000000000000000000000000000000", ReplicaRegion="eu-west-1") == "NotFoundException"
assert err(B.describe_key, KeyId=kid) == "NotFoundException"

r = A.replicate_key(KeyId=kid, ReplicaRegion="eu-west-1", Description="replica",
                    Tags=[{"TagKey": "site", "TagValue": "eu"}])
rm = r["ReplicaKeyMetadata"]
assert rm["KeyId"] == kid and rm["Arn"] == f"arn:aws:kms:eu-west-1:{k['AWSAccountId']}:key/{kid}", rm
assert rm["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA" and r["ReplicaTags"] == [{"TagKey": "site", "TagValue": "eu"}]
assert err(A.replicate_key, KeyId=kid, ReplicaRegion="eu-west-1") == "AlreadyExistsException"
assert err(B.replicate_key, KeyId=kid, ReplicaRegion="us-east-1") == "UnsupportedOperationException"  # a replica

d = B.describe_key(KeyId=kid)["KeyMetadata"]
assert d["Description"] == "replica" and d["MultiRegionConfiguration"]["PrimaryKey"]["Region"] == "us-east-1"
assert A.describe_key(KeyId=kid)["KeyMetadata"]["MultiRegionConfiguration"]["ReplicaKeys"] == [
    {"Arn": rm["Arn"], "Region": "eu-west-1"}]
assert B.list_resource_tags(KeyId=kid)["Tags"] == [{"TagKey": "site", "TagValue": "eu"}]
assert A.list_resource_tags(KeyId=kid)["Tags"] == []
# its own aliases
B.create_alias(AliasName="alias/eu-only", TargetKeyId=kid)
assert err(A.describe_key, KeyId="alias/eu-only") == "NotFoundException"

# ciphertext crosses regions with no call between them; both directions
ct = A.encrypt(KeyId=kid, Plaintext=b"from us", EncryptionContext={"r": "1"})["CiphertextBlob"]
out = B.decrypt(CiphertextBlob=ct, EncryptionContext={"r": "1"})
assert out["Plaintext"] == b"from us" and out["KeyId"] == rm["Arn"]
assert B.decrypt(CiphertextBlob=ct, KeyId=kid, EncryptionContext={"r": "1"})["Plaintext"] == b"from us"
assert err(B.decrypt, CiphertextBlob=ct, KeyId=single["KeyId"], EncryptionContext={"r": "1"}) == "NotFoundException"
ct2 = B.encrypt(KeyId="alias/eu-only", Plaintext=b"from eu")["CiphertextBlob"]
assert A.decrypt(CiphertextBlob=ct2)["Plaintext"] == b"from eu"
dk = B.generate_data_key(KeyId=kid, KeySpec="AES_256")
assert A.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]

# each region its own state
B.disable_key(KeyId=kid)
assert err(B.decrypt, CiphertextBlob=ct, EncryptionContext={"r": "1"}) == "DisabledException"
assert A.decrypt(CiphertextBlob=ct, EncryptionContext={"r": "1"})["Plaintext"] == b"from us"
B.enable_key(KeyId=kid)

# rotation: on the primary only; its new material reaches the replica
assert err(B.rotate_key_on_demand, KeyId=kid) == "UnsupportedOperationException"
A.rotate_key_on_demand(KeyId=kid)
ct3 = A.encrypt(KeyId=kid, Plaintext=b"v2")["CiphertextBlob"]
assert B.decrypt(CiphertextBlob=ct3)["Plaintext"] == b"v2"
assert B.decrypt(CiphertextBlob=ct, EncryptionContext={"r": "1"})["Plaintext"] == b"from us"  # version 1 still
assert len(B.list_key_rotations(KeyId=kid)["Rotations"]) == len(A.list_key_rotations(KeyId=kid)["Rotations"]) == 1

# deletion of a primary with replicas waits for them (PendingReplicaDeletion, no date); cancelled: Disabled
r = A.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
assert r["KeyState"] == "PendingReplicaDeletion" and "DeletionDate" not in r, r
m = A.describe_key(KeyId=kid)["KeyMetadata"]
assert m["KeyState"] == "PendingReplicaDeletion" and m["PendingDeletionWindowInDays"] == 7 and "DeletionDate" not in m, m
assert err(A.encrypt, KeyId=kid, Plaintext=b"x") == "KMSInvalidStateException"
assert err(A.update_primary_region, KeyId=kid, PrimaryRegion="eu-west-1") == "KMSInvalidStateException"
assert B.decrypt(CiphertextBlob=ct3)["Plaintext"] == b"v2"  # the replica is untouched
A.cancel_key_deletion(KeyId=kid)
assert A.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Disabled"
A.enable_key(KeyId=kid)

# UpdatePrimaryRegion
assert err(A.update_primary_region, KeyId=single["KeyId"], PrimaryRegion="eu-west-1") == "UnsupportedOperationException"
assert err(A.update_primary_region, KeyId=kid, PrimaryRegion="ap-south-9") == "NotFoundException"
assert err(B.update_primary_region, KeyId=kid, PrimaryRegion="eu-west-1") == "UnsupportedOperationException"
A.disable_key(KeyId=kid)
assert err(A.update_primary_region, KeyId=kid, PrimaryRegion="eu-west-1") == "DisabledException"
assert err(A.replicate_key, KeyId=kid, ReplicaRegion="eu-west-1") == "DisabledException"
A.enable_key(KeyId=kid)
A.update_primary_region(KeyId=kid, PrimaryRegion="eu-west-1")
assert B.describe_key(KeyId=kid)["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"
assert A.describe_key(KeyId=kid)["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
B.rotate_key_on_demand(KeyId=kid)  # the new primary rotates; the old one receives
ct4 = B.encrypt(KeyId=kid, Plaintext=b"v3")["CiphertextBlob"]
assert A.decrypt(CiphertextBlob=ct4)["Plaintext"] == b"v3"
assert err(A.rotate_key_on_demand, KeyId=kid) == "UnsupportedOperationException"
# the old primary, now a replica, may be deleted; then the primary may be
A.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)

# asymmetric and HMAC multi-Region keys: same key material in both regions
for spec, usage in (("RSA_2048", "SIGN_VERIFY"), ("ECC_NIST_P256", "SIGN_VERIFY"), ("HMAC_256", "GENERATE_VERIFY_MAC")):
    m = A.create_key(MultiRegion=True, KeySpec=spec, KeyUsage=usage)["KeyMetadata"]
    assert m["KeyId"].startswith("mrk-") and m["MultiRegion"]
    A.replicate_key(KeyId=m["KeyId"], ReplicaRegion="eu-west-1")
    if usage == "SIGN_VERIFY":
        assert A.get_public_key(KeyId=m["KeyId"])["PublicKey"] == B.get_public_key(KeyId=m["KeyId"])["PublicKey"]
        alg = "ECDSA_SHA_256" if spec.startswith("ECC") else "RSASSA_PSS_SHA_256"
        sig = A.sign(KeyId=m["KeyId"], Message=b"m", SigningAlgorithm=alg)["Signature"]
        assert B.verify(KeyId=m["KeyId"], Message=b"m", Signature=sig, SigningAlgorithm=alg)["SignatureValid"]
    else:
        mac = A.generate_mac(KeyId=m["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
        assert B.generate_mac(KeyId=m["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"] == mac
print("server_mrk.py: ok")
