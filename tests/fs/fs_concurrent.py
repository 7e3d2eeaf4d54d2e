#!/usr/bin/env python3
"""fs_concurrent.py — concurrent writes to one file, in shuffled order, from several threads: the daemon
encrypts whole blocks outside the inode lock and lets a WRITE past the end wait for an earlier one in
flight (fs/content.c, efs_content_write); then files created, rewritten and deleted by several threads while the
directory is listed. Every file must read back exactly as written, here and after a remount.
Usage: fs_concurrent.py MNT REMOUNT_CMD [SEED]"""
import mmap, os, random, subprocess, sys, threading

mnt, remount = sys.argv[1], sys.argv[2]
seed = int(sys.argv[3]) if len(sys.argv) > 3 else random.randrange(1 << 30)
rng = random.Random(seed)
THREADS = 8

def fail(msg):
    sys.exit(f"FAIL: {msg} (seed {seed})")

def run_threads(jobs, fn):
    """Run fn(job) for every job on THREADS threads (pwrite releases the GIL: real concurrency)."""
    errors, it, lock = [], iter(jobs), threading.Lock()
    def worker():
        while True:
            with lock:
                job = next(it, None)
            if job is None:
                return
            try:
                fn(job)
            except OSError as e:
                errors.append(e)
    ts = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in ts: t.start()
    for t in ts: t.join()
    if errors:
        fail(f"write failed: {errors[0]}")

def chunks(total, sizes):
    """Cut [0, total) into consecutive (off, len) pieces with lengths drawn from sizes()."""
    out, off = [], 0
    while off < total:
        n = min(sizes(), total - off)
        out.append((off, n))
        off += n
    return out

def pwrite_aligned(fd, data, off):
    """pwrite from a page-aligned buffer, as O_DIRECT wants."""
    buf = mmap.mmap(-1, len(data))
    buf.write(data)
    os.pwrite(fd, buf, off)
    buf.close()

files = {}

# 1. O_DIRECT: every WRITE reaches the daemon as sent (no page cache), 64 KiB-aligned pieces, shuffled:
#    WRITEs past the end arrive before the ones that precede them.
data = rng.randbytes(24 << 20)
path = os.path.join(mnt, "direct")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
pieces = chunks(len(data), lambda: rng.choice([64, 128, 256, 512, 1024]) << 10)
rng.shuffle(pieces)
run_threads(pieces, lambda p: pwrite_aligned(fd, data[p[0]:p[0] + p[1]], p[0]))
os.close(fd)
files["direct"] = data

# 2. Buffered, unaligned pieces (partial blocks at both ends of most WRITEs), shuffled, then fsync.
data = rng.randbytes(16 << 20)
path = os.path.join(mnt, "unaligned")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
pieces = chunks(len(data), lambda: rng.randrange(1, 300_000))
rng.shuffle(pieces)
run_threads(pieces, lambda p: os.pwrite(fd, data[p[0]:p[0] + p[1]], p[0]))
os.fsync(fd)
os.close(fd)
files["unaligned"] = data

# 3. Sparse: only the upper half is written (O_DIRECT, shuffled); the lower half is a real hole that
#    nothing in flight fills, so it must read as zeros; a lone block far past the end leaves another.
half = 8 << 20
upper = rng.randbytes(half)
tail = rng.randbytes(4096)
path = os.path.join(mnt, "sparse")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
pieces = [(half + off, n) for off, n in chunks(half, lambda: 256 << 10)]
rng.shuffle(pieces)
run_threads(pieces, lambda p: pwrite_aligned(fd, upper[p[0] - half:p[0] - half + p[1]], p[0]))
pwrite_aligned(fd, tail, 20 << 20)
os.close(fd)
files["sparse"] = bytes(half) + upper + bytes((20 << 20) - 2 * half) + tail

# 4. Churn in one directory: each thread creates, rewrites and deletes its own files (up to 4 MiB, so that
#    freeing one is real work for the backing filesystem), while another thread keeps listing the directory
#    with attributes (READDIRPLUS: entries the daemon knows are answered from their inodes, and inodes of
#    deleted files are freed meanwhile) — under the sanitizer builds this is the concurrency check of that
#    path. A listed size may not exceed the largest the file was written with (the kernel keeps the size of
#    a file it caches, so this catches only gross errors); what survives must read back exactly, here and
#    after the remount.
churn = os.path.join(mnt, "churn")
os.mkdir(churn)
expected, history, hist_lock = {}, {}, threading.Lock()
done = threading.Event()
listing_errors = []

def churner(tid):
    r = random.Random(seed * 31 + tid)
    names = [f"t{tid}-{i}" for i in range(6)]
    for _ in range(30):
        name = r.choice(names)
        path = os.path.join(churn, name)
        if name in expected and r.random() < 0.5:
            del expected[name]
            os.unlink(path)
            continue
        body = r.randbytes(r.choice([0, 1, 4095, 4096, 70_000, 1 << 20, 4 << 20]))
        with hist_lock:
            history.setdefault(name, set()).add(len(body))
        with open(path, "wb") as f:
            f.write(body)
        expected[name] = body

def lister():
    while not done.is_set():
        try:
            for e in os.scandir(churn):
                try:
                    size = e.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue  # deleted after the listing saw it
                with hist_lock:  # (a write in progress shows any size up to the one it is writing)
                    ok = size <= max(history.get(e.name, {0}))
                if not ok:
                    listing_errors.append(f"{e.name}: listed with size {size}, larger than ever written")
        except OSError as ex:
            listing_errors.append(f"listing: {ex}")

lt = threading.Thread(target=lister)
lt.start()
run_threads(range(THREADS), churner)
done.set()
lt.join()
if listing_errors:
    fail(listing_errors[0])
if sorted(os.listdir(churn)) != sorted(expected):
    fail(f"churn: directory holds {sorted(os.listdir(churn))}, expected {sorted(expected)}")
for name, body in expected.items():
    files[os.path.join("churn", name)] = body

def check(when):
    for name, want in files.items():
        with open(os.path.join(mnt, name), "rb") as f:
            got = f.read()
        if got != want:
            first = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))
            fail(f"{name} {when}: {len(got)} bytes read, {len(want)} written; first difference at byte {first}")

check("before remount")
subprocess.run(remount, shell=True, check=True)
check("after remount")
print(f"ok (seed {seed})")
