#!/usr/bin/env python3
"""server_mrk_endpoint.py — multi-Region keys between two servers over the replication protocol, with boto3 as the
client (server_mrk_endpoint.sh starts and stops the servers between phases; state passes through a JSON file).
Usage: server_mrk_endpoint.py PHASE STATE URL_A AK_A SK_A URL_B AK_B SK_B
Phases: replicate, bad-credentials, loose-credentials, rotate, primary-down, missed-push, catch-up, update-primary,
dead-peer (PEER_PID, PEER_PORT: us-east-1's server), protocol, replica-scheduled, replica-deleted."""
import base64, json, os, sys
import boto3, botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
import urllib.request, urllib.error

phase, state_file, ua, aka, ska, ub, akb, skb = sys.argv[1:9]
cfg = Config(retries={"max_attempts": 1}, read_timeout=120)
A = boto3.client("kms", endpoint_url=ua, region_name="us-east-1", aws_access_key_id=aka, aws_secret_access_key=ska, config=cfg)
B = boto3.client("kms", endpoint_url=ub, region_name="us-west-2", aws_access_key_id=akb, aws_secret_access_key=skb, config=cfg)
st = json.load(open(state_file)) if os.path.exists(state_file) else {}

def err(fn, **kw):
    try:
        fn(**kw)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"], e.response["Error"].get("Message", "")
    raise AssertionError(f"{fn.__name__} succeeded")

def b64(b):
    return base64.b64encode(b).decode()

def ct_load(name):
    return base64.b64decode(st[name])

if phase == "replicate":
    k = A.create_key(MultiRegion=True, Description="primary in us-east-1")["KeyMetadata"]
    kid = k["KeyId"]
    assert kid.startswith("mrk-") and k["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"
    assert err(B.describe_key, KeyId=kid)[0] == "NotFoundException"
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{k['AWSAccountId']}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "no-bob", "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{k['AWSAccountId']}:user/bob"},
         "Action": "kms:Decrypt", "Resource": "*"}]})
    r = A.replicate_key(KeyId=kid, ReplicaRegion="us-west-2", Description="replica in us-west-2", Policy=policy,
                        Tags=[{"TagKey": "site", "TagValue": "west"}])
    rm = r["ReplicaKeyMetadata"]
    assert rm["KeyId"] == kid and rm["Arn"] == f"arn:aws:kms:us-west-2:{k['AWSAccountId']}:key/{kid}", rm
    assert rm["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA", rm
    assert json.loads(r["ReplicaPolicy"])["Statement"][1]["Sid"] == "no-bob"
    assert r["ReplicaTags"] == [{"TagKey": "site", "TagValue": "west"}]
    # us-west-2 holds it under the same id: its own description, policy, tags, aliases
    d = B.describe_key(KeyId=kid)["KeyMetadata"]
    mc = d["MultiRegionConfiguration"]
    assert d["Description"] == "replica in us-west-2" and d["KeyState"] == "Enabled", d
    assert mc["MultiRegionKeyType"] == "REPLICA" and mc["PrimaryKey"] == {"Arn": k["Arn"], "Region": "us-east-1"}, mc
    assert mc["ReplicaKeys"] == [{"Arn": rm["Arn"], "Region": "us-west-2"}], mc
    assert json.loads(B.get_key_policy(KeyId=kid, PolicyName="default")["Policy"])["Statement"][1]["Sid"] == "no-bob"
    assert "no-bob" not in A.get_key_policy(KeyId=kid, PolicyName="default")["Policy"]
    assert B.list_resource_tags(KeyId=kid)["Tags"] == [{"TagKey": "site", "TagValue": "west"}]
    assert A.list_resource_tags(KeyId=kid)["Tags"] == []
    assert A.describe_key(KeyId=kid)["KeyMetadata"]["Description"] == "primary in us-east-1"
    assert A.describe_key(KeyId=kid)["KeyMetadata"]["MultiRegionConfiguration"]["ReplicaKeys"] == [
        {"Arn": rm["Arn"], "Region": "us-west-2"}]
    B.create_alias(AliasName="alias/west", TargetKeyId=kid)
    assert err(A.describe_key, KeyId="alias/west")[0] == "NotFoundException"
    # the same key material: either side opens the other's ciphertext, with no call between them
    ct = A.encrypt(KeyId=kid, Plaintext=b"made in us-east-1", EncryptionContext={"app": "t"})["CiphertextBlob"]
    assert B.decrypt(CiphertextBlob=ct, EncryptionContext={"app": "t"})["Plaintext"] == b"made in us-east-1"
    ct_w = B.encrypt(KeyId="alias/west", Plaintext=b"made in us-west-2")["CiphertextBlob"]
    assert A.decrypt(CiphertextBlob=ct_w)["Plaintext"] == b"made in us-west-2"
    # its own state
    B.disable_key(KeyId=kid)
    assert err(B.decrypt, CiphertextBlob=ct, EncryptionContext={"app": "t"})[0] == "DisabledException"
    assert A.decrypt(CiphertextBlob=ct, EncryptionContext={"app": "t"})["Plaintext"] == b"made in us-east-1"
    B.enable_key(KeyId=kid)
    # errors: the replica exists; an unreachable region (nothing recorded); a single-Region key
    code, msg = err(A.replicate_key, KeyId=kid, ReplicaRegion="us-west-2")
    assert code == "AlreadyExistsException" and "us-west-2" in msg, (code, msg)
    code, msg = err(A.replicate_key, KeyId=kid, ReplicaRegion="eu-central-1")
    assert code == "DependencyTimeoutException" and "eu-central-1" in msg and "reached" in msg, (code, msg)
    assert A.describe_key(KeyId=kid)["KeyMetadata"]["MultiRegionConfiguration"]["ReplicaKeys"] == [
        {"Arn": rm["Arn"], "Region": "us-west-2"}], "the unreachable region was listed"
    single = A.create_key()["KeyMetadata"]["KeyId"]
    assert err(A.replicate_key, KeyId=single, ReplicaRegion="us-west-2")[0] == "UnsupportedOperationException"
    assert err(B.replicate_key, KeyId=kid, ReplicaRegion="us-east-1")[0] == "UnsupportedOperationException"  # a replica
    # another spec: an ECC signing key's private key crosses too (and verifies on the other side)
    e = A.create_key(MultiRegion=True, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    A.replicate_key(KeyId=e, ReplicaRegion="us-west-2")
    assert A.get_public_key(KeyId=e)["PublicKey"] == B.get_public_key(KeyId=e)["PublicKey"]
    sig = B.sign(KeyId=e, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    assert A.verify(KeyId=e, Message=b"m", Signature=sig, SigningAlgorithm="ECDSA_SHA_256")["SignatureValid"]
    st.update(kid=kid, ct=b64(ct), ct_w=b64(ct_w))

elif phase == "bad-credentials":
    # us-east-1 signs with a wrong secret for us-west-2: refused there, and nothing is made anywhere
    k2 = A.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    code, msg = err(A.replicate_key, KeyId=k2, ReplicaRegion="us-west-2")
    assert code == "AccessDeniedException" and "credentials" in msg, (code, msg)
    assert err(B.describe_key, KeyId=k2)[0] == "NotFoundException"
    assert A.describe_key(KeyId=k2)["KeyMetadata"]["MultiRegionConfiguration"]["ReplicaKeys"] == []
    st["k2"] = k2

elif phase == "loose-credentials":
    # a credentials file others may read is not used
    code, msg = err(A.replicate_key, KeyId=st["k2"], ReplicaRegion="us-west-2")
    assert code == "KMSInternalException" and "0600" in msg, (code, msg)
    assert err(B.describe_key, KeyId=st["k2"])[0] == "NotFoundException"

elif phase == "rotate":
    kid = st["kid"]
    assert err(B.rotate_key_on_demand, KeyId=kid)[0] == "UnsupportedOperationException"
    A.rotate_key_on_demand(KeyId=kid)  # pushed to us-west-2 before the call returns
    assert len(B.list_key_rotations(KeyId=kid)["Rotations"]) == 1
    ct2 = A.encrypt(KeyId=kid, Plaintext=b"after rotation")["CiphertextBlob"]
    st["ct2"] = b64(ct2)

elif phase == "primary-down":
    kid = st["kid"]
    try:
        A.list_keys()
        raise AssertionError("us-east-1 still answers")
    except botocore.exceptions.EndpointConnectionError:
        pass
    assert B.decrypt(CiphertextBlob=ct_load("ct"), EncryptionContext={"app": "t"})["Plaintext"] == b"made in us-east-1"
    assert B.decrypt(CiphertextBlob=ct_load("ct2"))["Plaintext"] == b"after rotation"
    assert B.decrypt(CiphertextBlob=ct_load("ct_w"))["Plaintext"] == b"made in us-west-2"
    assert B.generate_data_key(KeyId="alias/west", KeySpec="AES_256")["KeyId"].endswith(kid)

elif phase == "missed-push":
    # us-west-2 is down while the primary rotates: the rotation succeeds, the push is lost
    kid = st["kid"]
    A.rotate_key_on_demand(KeyId=kid)
    st["ct_missed"] = b64(A.encrypt(KeyId=kid, Plaintext=b"while us-west-2 was down")["CiphertextBlob"])

elif phase == "catch-up":
    # back up: it lacks that version until the primary's next push; ReplicateKey again is one (AlreadyExists)
    kid = st["kid"]
    assert err(B.decrypt, CiphertextBlob=ct_load("ct_missed"))[0] == "InvalidCiphertextException"
    assert len(B.list_key_rotations(KeyId=kid)["Rotations"]) == 1
    assert err(A.replicate_key, KeyId=kid, ReplicaRegion="us-west-2")[0] == "AlreadyExistsException"
    assert B.decrypt(CiphertextBlob=ct_load("ct_missed"))["Plaintext"] == b"while us-west-2 was down"
    assert len(B.list_key_rotations(KeyId=kid)["Rotations"]) == 2

elif phase == "update-primary":
    kid = st["kid"]
    assert err(B.update_primary_region, KeyId=kid, PrimaryRegion="us-west-2")[0] == "UnsupportedOperationException"
    assert err(A.update_primary_region, KeyId=kid, PrimaryRegion="eu-central-1")[0] == "NotFoundException"
    B.disable_key(KeyId=kid)
    assert err(A.update_primary_region, KeyId=kid, PrimaryRegion="us-west-2")[0] == "DisabledException"
    B.enable_key(KeyId=kid)
    A.enable_key_rotation(KeyId=kid, RotationPeriodInDays=200)
    A.update_primary_region(KeyId=kid, PrimaryRegion="us-west-2")
    db = B.describe_key(KeyId=kid)["KeyMetadata"]["MultiRegionConfiguration"]
    da = A.describe_key(KeyId=kid)["KeyMetadata"]["MultiRegionConfiguration"]
    assert db["MultiRegionKeyType"] == "PRIMARY" and db["PrimaryKey"]["Region"] == "us-west-2", db
    assert da["MultiRegionKeyType"] == "REPLICA" and da["PrimaryKey"]["Region"] == "us-west-2", da
    acct = A.describe_key(KeyId=kid)["KeyMetadata"]["AWSAccountId"]
    assert db["ReplicaKeys"] == [{"Arn": f"arn:aws:kms:us-east-1:{acct}:key/{kid}", "Region": "us-east-1"}], db
    rs = B.get_key_rotation_status(KeyId=kid)
    assert rs["KeyRotationEnabled"] and rs["RotationPeriodInDays"] == 200, rs  # the schedule moved with the role
    assert not A.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"]
    assert err(A.rotate_key_on_demand, KeyId=kid)[0] == "UnsupportedOperationException"
    # the new primary rotates; its push reaches us-east-1 over the other regions file
    B.rotate_key_on_demand(KeyId=kid)
    ct3 = B.encrypt(KeyId=kid, Plaintext=b"v3 from us-west-2")["CiphertextBlob"]
    assert A.decrypt(CiphertextBlob=ct3)["Plaintext"] == b"v3 from us-west-2"
    assert A.decrypt(CiphertextBlob=ct_load("ct2"))["Plaintext"] == b"after rotation"
    assert len(A.list_key_rotations(KeyId=kid)["Rotations"]) == 3
    # a primary with a replica on another server (asked over the protocol) is scheduled as AWS does it:
    # PendingReplicaDeletion, no deletion date until its last replica is deleted; cancelled, it is Disabled
    r = B.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    assert r["KeyState"] == "PendingReplicaDeletion" and "DeletionDate" not in r and r["PendingWindowInDays"] == 7, r
    m = B.describe_key(KeyId=kid)["KeyMetadata"]
    assert m["KeyState"] == "PendingReplicaDeletion" and m["PendingDeletionWindowInDays"] == 7, m
    assert "DeletionDate" not in m and not m["Enabled"], m
    assert err(B.encrypt, KeyId=kid, Plaintext=b"x")[0] == "KMSInvalidStateException"
    assert err(B.replicate_key, KeyId=kid, ReplicaRegion="us-east-1")[0] == "KMSInvalidStateException"
    assert A.decrypt(CiphertextBlob=ct3)["Plaintext"] == b"v3 from us-west-2"  # the replica is its own key
    B.cancel_key_deletion(KeyId=kid)
    assert B.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Disabled"
    B.enable_key(KeyId=kid)

elif phase == "dead-peer":
    # us-west-2 (the primary) asks us-east-1 (its replica's server) whether the replica still exists before it
    # schedules the deletion; with us-east-1 stopped (SIGSTOP: it accepts the connection and never answers;
    # the servers run without the status question's timeout) that question hangs, and must hang that call
    # only: an unrelated call of us-west-2 completes while it is still in flight
    import signal, threading
    kid = st["kid"]
    peer_pid, peer_port = int(os.environ["PEER_PID"]), int(os.environ["PEER_PORT"])
    other = B.create_key(Description="unrelated")["KeyMetadata"]["KeyId"]
    def peer_connections():  # established TCP connections into the stopped peer's port (its backlog)
        n = 0
        for line in open("/proc/net/tcp").read().splitlines()[1:]:
            f = line.split()
            n += int(f[1].split(":")[1], 16) == peer_port and f[3] == "01"
        return n
    assert peer_connections() == 0
    B2 = boto3.client("kms", endpoint_url=ub, region_name="us-west-2", aws_access_key_id=akb, aws_secret_access_key=skb,
                      config=Config(retries={"max_attempts": 1}, read_timeout=600))
    events, result = [], {}
    def schedule():
        try:
            B2.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
            result["code"] = "ok"
        except botocore.exceptions.ClientError as e:
            result["code"] = e.response["Error"]["Code"]
        events.append("schedule answered")
    os.kill(peer_pid, signal.SIGSTOP)
    try:
        t = threading.Thread(target=schedule)
        t.start()
        for _ in range(3000):  # until us-west-2's status question is in the peer's backlog (not a time limit)
            if peer_connections() or not t.is_alive():
                break
            t.join(0.01)
        assert peer_connections() and t.is_alive(), "the status question did not reach the stopped peer"
        # unrelated calls: the core lock is not held across the question. On a new connection: the server's
        # worker thread that runs the hanging call serves only the connections it already has (libmicrohttpd's
        # thread pool; docs/DESIGN.md), and B's kept-alive one may be among them
        B3 = boto3.client("kms", endpoint_url=ub, region_name="us-west-2", aws_access_key_id=akb,
                          aws_secret_access_key=skb, config=cfg)
        assert other in [k["KeyId"] for k in B3.list_keys(Limit=1000)["Keys"]]
        ct = B3.encrypt(KeyId=other, Plaintext=b"while a peer hangs")["CiphertextBlob"]
        assert B3.decrypt(CiphertextBlob=ct)["Plaintext"] == b"while a peer hangs"
        events.append("unrelated calls answered")
        assert t.is_alive() and not result, "ScheduleKeyDeletion finished although its peer never answered"
    finally:
        os.kill(peer_pid, signal.SIGCONT)
    t.join()
    assert events == ["unrelated calls answered", "schedule answered"], events
    # once the peer answers: its replica exists, so the primary waits for it
    assert result["code"] == "ok", result
    assert B.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "PendingReplicaDeletion"

elif phase == "replica-scheduled":
    # the replica (us-east-1) is scheduled; the primary keeps waiting while it exists
    kid = st["kid"]
    m = A.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    assert m["KeyState"] == "PendingDeletion" and m["DeletionDate"], m
    assert B.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "PendingReplicaDeletion"

elif phase == "replica-deleted":
    # us-east-1 runs 8 days ahead (ENVELOPEFS_TEST_CLOCK_OFFSET_S): its replica is deleted; us-west-2, restarted
    # (its next look at its replicas is at its first call), asks it, finds none, and its 7 days begin now
    import time
    kid = st["kid"]
    assert err(A.describe_key, KeyId=kid)[0] == "NotFoundException"
    m = B.describe_key(KeyId=kid)["KeyMetadata"]
    assert m["KeyState"] == "PendingDeletion" and "PendingDeletionWindowInDays" not in m, m
    when = m["DeletionDate"].timestamp()
    assert abs(when - (time.time() + 7 * 86400)) < 600, (when, time.time())
    assert m["MultiRegionConfiguration"]["ReplicaKeys"] == [], m
    B.cancel_key_deletion(KeyId=kid)
    assert B.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Disabled"

elif phase == "protocol":
    kid = st["kid"]
    # the protocol's operations are no AWS operations: not through TrentService, not for another account,
    # not unsigned
    def post(url, target, body, region, ak=None, sk=None):
        data = json.dumps(body).encode()
        req = AWSRequest(method="POST", url=url + "/", data=data,
                         headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target})
        if ak:
            SigV4Auth(Credentials(ak, sk), "kms", region).add_auth(req)
        r = urllib.request.Request(url + "/", data=data, headers=dict(req.headers), method="POST")
        try:
            with urllib.request.urlopen(r, timeout=60) as resp:
                return resp.status, json.loads(resp.read()), resp.headers
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read()), e.headers
    acct = A.describe_key(KeyId=kid)["KeyMetadata"]["AWSAccountId"]
    rak, rsk = os.environ["REPL_B_AK"], os.environ["REPL_B_SK"]  # the key us-east-1 replicates with
    body = {"KeyId": kid, "AWSAccountId": acct, "StatusOnly": True}
    s, o, _ = post(ub, "TrentService.GetReplicationParameters", body, "us-west-2", akb, skb)
    assert s == 400 and o["__type"] == "UnknownOperationException", (s, o)
    s, o, _ = post(ub, "TrentService.PutReplica", {"KeyId": kid}, "us-west-2", akb, skb)
    assert s == 400 and o["__type"] == "UnknownOperationException", (s, o)
    s, o, _ = post(ub, "EnvelopefsReplication.GetReplicationParameters", body, "us-west-2")
    assert s == 400 and o["__type"] == "MissingAuthenticationTokenException", (s, o)
    # alice is of the account, but us-west-2 takes the protocol from its replication key only
    s, o, _ = post(ub, "EnvelopefsReplication.GetReplicationParameters", body, "us-west-2", akb, skb)
    assert s == 400 and o["__type"] == "AccessDeniedException" and "--replication-keys" in o["message"], (s, o)
    s, o, _ = post(ub, "EnvelopefsReplication.Nothing", body, "us-west-2", rak, rsk)
    assert s == 400 and o["__type"] == "UnknownOperationException", (s, o)
    s, o, h = post(ub, "EnvelopefsReplication.GetReplicationParameters", body, "us-west-2", rak, rsk)
    assert s == 200 and o["Replica"]["Exists"] and o["Replica"]["PrimaryRegion"] == "us-west-2", (s, o)
    assert len(h["X-Envelopefs-Response-Mac"]) == 64 and "PublicKey" not in o
    other = dict(body, AWSAccountId="444455556666")
    s, o, _ = post(ub, "EnvelopefsReplication.GetReplicationParameters", other, "us-west-2", rak, rsk)
    assert s == 400 and o["__type"] == "AccessDeniedException", (s, o)
    # a PutReplica with a forged token makes nothing
    forged = {"KeyId": "mrk-" + "ab" * 16, "AWSAccountId": acct, "Create": True, "PrimaryRegion": "us-east-1",
              "Regions": ["us-east-1", "us-west-2"], "KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "ENCRYPT_DECRYPT",
              "Origin": "AWS_KMS", "ReplicationToken": b64(b"EFIT" + bytes(100)), "WrappedKey": b64(bytes(384)),
              "Versions": [{"Version": 1, "CreationDate": 1, "Automatic": False, "Material": b64(bytes(40))}]}
    s, o, _ = post(ub, "EnvelopefsReplication.PutReplica", forged, "us-west-2", rak, rsk)
    assert s == 400 and o["__type"] == "InvalidImportTokenException", (s, o)
    assert err(B.describe_key, KeyId=forged["KeyId"])[0] == "NotFoundException"
    # Whoever holds the replication key may make a key in us-west-2 through the protocol (CreateKey there), even
    # one that calls itself a replica of a real us-east-1 key, with material of their own: the real primary tells
    # it by its MaterialCheck, never adopts it nor sends it a version.
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
    fk = A.create_key(MultiRegion=True, Description="real")["KeyMetadata"]["KeyId"]
    s, p, _ = post(ub, "EnvelopefsReplication.GetReplicationParameters", {"KeyId": fk, "AWSAccountId": acct},
                   "us-west-2", rak, rsk)
    assert s == 200 and not p["Replica"]["Exists"] and p["WrappingAlgorithm"] == "RSA_AES_KEY_WRAP_SHA_256", (s, p)
    pub = serialization.load_der_public_key(base64.b64decode(p["PublicKey"]))
    assert pub.key_size == 3072
    kek = os.urandom(32)
    wk = pub.encrypt(kek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    planted = {"KeyId": fk, "AWSAccountId": acct, "Create": True, "PrimaryRegion": "us-east-1",
               "Regions": ["us-east-1", "us-west-2"], "KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "ENCRYPT_DECRYPT",
               "Origin": "AWS_KMS", "ReplicationToken": p["ReplicationToken"], "WrappedKey": b64(wk),
               "Versions": [{"Version": 1, "CreationDate": 1, "Automatic": False,
                             "Material": b64(aes_key_wrap_with_padding(kek, b"\x01" * 32))}]}
    s, o, _ = post(ub, "EnvelopefsReplication.PutReplica", planted, "us-west-2", rak, rsk)
    assert s == 200 and o["ReplicaKeyMetadata"]["KeyId"] == fk, (s, o)
    s, o, _ = post(ub, "EnvelopefsReplication.PutReplica", planted, "us-west-2", rak, rsk)
    assert s == 400 and o["__type"] == "AlreadyExistsException", (s, o)
    code, msg = err(A.replicate_key, KeyId=fk, ReplicaRegion="us-west-2")
    assert code == "AlreadyExistsException", (code, msg)
    assert A.describe_key(KeyId=fk)["KeyMetadata"]["MultiRegionConfiguration"]["ReplicaKeys"] == []  # not adopted
    assert B.list_key_rotations(KeyId=fk)["Rotations"] == []
    ct = A.encrypt(KeyId=fk, Plaintext=b"x")["CiphertextBlob"]
    assert err(B.decrypt, CiphertextBlob=ct)[0] == "InvalidCiphertextException"
    # the CLI's list of operations does not have them
    import subprocess
    out = subprocess.run([os.environ["ENVELOPEFS_BIN"], "kms", "help"], capture_output=True, text=True).stdout
    assert "replicate-key" in out and "put-replica" not in out.lower() and "replication-parameters" not in out.lower()
else:
    raise SystemExit(f"unknown phase {phase}")

json.dump(st, open(state_file, "w"))
print(f"server_mrk_endpoint.py {phase}: ok")
