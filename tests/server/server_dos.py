#!/usr/bin/env python3
"""server_dos.py — unauthenticated clients cannot lock signed ones out of `envelopefs kms serve`.

Usage: server_dos.py PHASE URL AK SK, PHASE one of:
  idle      1,100 connections that never send a byte (from 11 loopback source addresses), and 300
            more from one address (over the per-address cap)
  slow      1,100 connections that send a request line and then one header byte every second (the
            server's inactivity timeout never fires; only the whole-request deadline ends them)
  evict     150 idle keep-alive connections (each finished one request), then fresh idle connections
            until the server nears its limit: the keep-alive ones are closed first, no fresh one
  length    absurd Content-Length values get exactly one status line each
Throughout, a boto3 client signed with AK/SK keeps calling GenerateDataKey: every call must succeed
(within its own generous timeouts), and calls must be answered while the attack holds its connections
(at least one: a count, not a rate, since the machine may be loaded). The attacks' connections must all be closed by the server.
Everything is bounded: at most ~1,500 sockets and a deadline of DEADLINE seconds per phase."""
import selectors, socket, sys, threading, time
import boto3
from botocore.config import Config

phase, url, ak, sk = sys.argv[1:5]
host, port = url.split("//")[1].split(":")
port = int(port)
DEADLINE = 90  # seconds: the phase fails if the server has not closed the attack by then


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


class Signed(threading.Thread):
    """A signed client calling GenerateDataKey in a loop until stopped; records every outcome."""

    def __init__(self):
        super().__init__(daemon=True)
        self.kms = boto3.client("kms", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ak,
                                aws_secret_access_key=sk,
                                config=Config(retries={"max_attempts": 3, "mode": "standard"},
                                              connect_timeout=20, read_timeout=20))
        self.key = self.kms.create_key(Description="dos")["KeyMetadata"]["KeyId"]
        self.ok, self.marked, self.errors, self.stop = 0, 0, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                r = self.kms.generate_data_key(KeyId=self.key, KeySpec="AES_256")
                assert len(r["Plaintext"]) == 32
                self.ok += 1
            except Exception as e:  # noqa: BLE001 - any failure is the test's failure
                self.errors.append(repr(e))
            time.sleep(0.1)

    def mark(self):
        """The attack holds its connections from now on: calls answered from here count."""
        self.marked = self.ok

    def wait_served(self, n, deadline=60):
        """While the attack holds its connections: wait (up to deadline s) until n calls were answered."""
        t0 = time.monotonic()
        while self.ok - self.marked < n and not self.errors and time.monotonic() - t0 < deadline:
            time.sleep(0.1)

    def finish(self, during):
        """during: calls answered between mark() and the attack's end. Liveness, not a rate: the attack
        lasts as long as the server's deadlines let it (3 s here), and a loaded machine (another test
        beside this one on two cores) answers fewer calls in that time; none at all is the failure."""
        self.stop.set()
        self.join(60)
        if self.errors:
            fail(f"{phase}: signed calls failed: {self.errors[:3]}")
        if during < 1:
            fail(f"{phase}: no signed call answered while the attack held its connections")
        print(f"{phase}: {during} signed calls answered during the attack ({self.ok} in all)")


def connect(src):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(10)
    s.connect((host, port))
    s.setblocking(False)
    return s


def wait_closed(socks, what, deadline=DEADLINE, keepalive=None):
    """Wait until the server has closed every socket (EOF or reset), calling keepalive(sock) each
    second for those still open. Returns the seconds it took."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    open_ = set(socks)
    t0 = last = time.monotonic()
    while open_ and time.monotonic() - t0 < deadline:
        for key, _ in sel.select(0.2):
            s = key.fileobj
            try:
                if s.recv(65536):
                    continue  # an error reply: the close follows
            except BlockingIOError:
                continue
            except OSError:
                pass
            sel.unregister(s)
            open_.discard(s)
            s.close()
        if keepalive and time.monotonic() - last >= 1:
            last = time.monotonic()
            for s in list(open_):
                try:
                    keepalive(s)
                except OSError:
                    pass
    if open_:
        fail(f"{what}: {len(open_)} of {len(socks)} connections still open after {deadline} s")
    return time.monotonic() - t0


def sources(n):
    return [f"127.0.0.{2 + i}" for i in range(n)]


signed = Signed()

if phase == "idle":
    signed.start()
    socks = [connect(src) for src in sources(11) for _ in range(100)]
    over = []
    for _ in range(300):  # one address over its cap: refused at once (accepted and closed)
        try:
            over.append(connect("127.0.0.20"))
        except OSError:
            pass
    signed.mark()
    t = wait_closed(socks + over, "idle connections")
    during = signed.ok - signed.marked
    print(f"idle: {len(socks) + len(over)} idle connections closed by the server after {t:.1f} s")
    signed.finish(during)

elif phase == "slow":
    signed.start()
    socks = []
    for src in sources(11):
        for _ in range(100):
            s = connect(src)
            s.send(b"POST / HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
    signed.mark()
    t = wait_closed(socks, "slow requests", keepalive=lambda s: s.send(b"X"))
    during = signed.ok - signed.marked
    print(f"slow: 1100 trickling requests closed by the server after {t:.1f} s")
    signed.finish(during)

elif phase == "evict":
    # argv[5]: the server's --max-connections
    limit = int(sys.argv[5])
    req = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    keep = []
    for _ in range(150):
        s = connect("127.0.0.30")
        s.setblocking(True)
        s.send(req)
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            data += s.recv(4096)
        assert b"__type" in data and b"connection: close" not in data.lower(), data
        s.setblocking(False)
        keep.append(s)
    fresh = []
    for i in range(limit - 150 - 8):  # the signed client needs a few too
        fresh.append(connect(f"127.0.0.{31 + i // 200}"))
    # The server is now above its high-water mark: it must close keep-alive connections, not fresh ones.
    closed = set()
    t0 = time.monotonic()
    sel = selectors.DefaultSelector()
    for s in keep + fresh:
        sel.register(s, selectors.EVENT_READ)
    while len(closed) < 8 and time.monotonic() - t0 < DEADLINE:
        for key, _ in sel.select(0.2):
            try:
                if key.fileobj.recv(4096):
                    continue
            except BlockingIOError:
                continue
            except OSError:
                pass
            sel.unregister(key.fileobj)
            closed.add(key.fileobj)
    n_keep = sum(s in closed for s in keep)
    n_fresh = sum(s in closed for s in fresh)
    print(f"evict: {n_keep} idle keep-alive and {n_fresh} fresh connections closed near the limit")
    if n_keep < 8 or n_fresh:
        fail("near its limit the server must close idle keep-alive connections first")
    signed.start()
    signed.wait_served(3)  # the connections stay held until the calls are answered (or 60 s)
    signed.finish(signed.ok - signed.marked)
    for s in keep + fresh:
        s.close()

elif phase == "length":
    for cl in [b"99999999999999999999999999", b"18446744073709551616", b"18446744073709551615", b"abc",
               b"1x", b"100000"]:
        s = socket.create_connection((host, port), 10)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + cl + b"\r\n\r\n{}")
        data = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        n = data.count(b"HTTP/1.1 ")
        if n != 1 or not (data.startswith(b"HTTP/1.1 4")) or b"__type" not in data:
            fail(f"Content-Length {cl!r}: {n} status lines in {data!r}")
        status = data.split(b"\r\n")[0].decode()
        print(f"length: Content-Length {cl.decode()} -> {status}")
else:
    fail(f"unknown phase {phase}")
