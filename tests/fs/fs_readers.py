#!/usr/bin/env python3
"""fs_readers.py — concurrent random readers of one file while another thread rewrites and truncates its
upper half: every small READ is served by the request loop's leader in nowait mode (fs/nowait.h) and
hands leadership off only when it would block (the inode locked by a SETATTR or WRITE, the stored blocks
not in the backing page cache), so this runs both ways of serving a READ against a moving file. The
lower half, never written after setup, must read back exactly, every time; the upper half as the pattern
or zeros (a truncation followed by a rewrite); the whole file exactly once the writer has finished, and
after a remount. Usage: fs_readers.py MNT CIPHER REMOUNT_CMD [SEED]"""
import hashlib, json, os, random, subprocess, sys, threading

mnt, cipher, remount = sys.argv[1], sys.argv[2], sys.argv[3]
seed = int(sys.argv[4]) if len(sys.argv) > 4 else random.randrange(1 << 30)
SIZE, LOW, BLK = 8 << 20, 4 << 20, 4096
READERS, READS = 6, 1500
path = os.path.join(mnt, "f")

def fail(msg):
    sys.exit(f"FAIL: {msg} (seed {seed})")

def block(i):
    return (hashlib.blake2b(f"{seed}:{i}".encode()).digest() * (BLK // 64))

def pattern(off, n):
    out = bytearray()
    b = off // BLK
    while len(out) < n:
        out += block(b)
        b += 1
    skip = off % BLK
    return bytes(out[skip:skip + n]) if skip + n <= len(out) else bytes((out + block(b))[skip:skip + n])

def stats():
    return json.loads(os.getxattr(mnt, "user.envelopefs.stats"))

def drop_caches():
    """The mount's page cache of the file (READs reach the daemon) and the backing files' (the daemon's
    reads would block)."""
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    for name in os.listdir(cipher):
        p = os.path.join(cipher, name)
        if os.path.isfile(p) and os.access(p, os.R_OK):
            fd = os.open(p, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)

def backing_honours_nowait():
    """Does the backing filesystem fail an uncached RWF_NOWAIT read with EAGAIN (tmpfs never does)?"""
    p = os.path.join(os.path.dirname(os.path.abspath(cipher)), "nowait-probe")  # same filesystem
    with open(p, "wb") as f:
        f.write(b"x" * (1 << 20))
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(p, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    try:
        os.preadv(fd, [bytearray(BLK)], 512 << 10, os.RWF_NOWAIT)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        os.unlink(p)

honours = backing_honours_nowait()
with open(path, "wb") as f:
    for off in range(0, SIZE, 1 << 20):
        f.write(pattern(off, 1 << 20))
    f.flush()
    os.fsync(f.fileno())
drop_caches()
s0 = stats()

# One deterministic READ that must block: both caches dropped, readahead off (one 4 KiB READ).
fd = os.open(path, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
if os.pread(fd, BLK, 3 * BLK) != pattern(3 * BLK, BLK):
    fail("first read after dropping the caches")
os.close(fd)
s1 = stats()
uring = s1["uring_requests"] > s0["uring_requests"]
if uring:  # served over io_uring (scripts/test's second pass): that transport never enters nowait mode
    if s1["loop_nowait_reads"] != s0["loop_nowait_reads"]:
        fail(f"a READ over io_uring was served in nowait mode: {s0} -> {s1}")
elif s1["loop_nowait_reads"] - s0["loop_nowait_reads"] < 1:
    fail(f"the 4 KiB READ was not served in nowait mode: {s0} -> {s1}")
elif honours and s1["loop_nowait_blocked"] - s0["loop_nowait_blocked"] < 1:
    fail(f"an uncached READ did not count as blocking: {s0} -> {s1}")

stop = threading.Event()
errors = []

def reader(k):
    rng = random.Random(seed * 31 + k)
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    try:
        for i in range(READS):
            if i % 64 == 0:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            n = rng.choice((BLK, BLK, 512, 3000, 2 * BLK))
            off = rng.randrange(0, SIZE - n)
            if rng.random() < 0.8:
                off -= off % BLK
            got = os.pread(fd, n, off)
            want = pattern(off, n)
            if off + n <= LOW:
                if got != want:
                    errors.append(f"reader {k}: [{off}, +{n}) in the untouched half differs ({len(got)} bytes)")
                    return
            else:
                for j, c in enumerate(got):
                    if c != want[j] and (c != 0 or off + j < LOW):
                        errors.append(f"reader {k}: byte {off + j} is {c}, want {want[j]} or 0 (upper half)")
                        return
    except OSError as e:
        errors.append(f"reader {k}: {e}")
    finally:
        os.close(fd)

def writer():
    rng = random.Random(seed * 7)
    fd = os.open(path, os.O_WRONLY)
    try:
        passes = 0
        while not stop.is_set() or passes < 3:
            cut = rng.randrange(LOW, SIZE)
            os.ftruncate(fd, cut)
            off = cut
            while off < SIZE:
                n = min(rng.choice((BLK, 3 * BLK, 10000, 64 << 10)), SIZE - off)
                os.pwrite(fd, pattern(off, n), off)
                off += n
            if rng.random() < 0.3:
                os.fsync(fd)
                drop_caches()
            passes += 1
        os.fsync(fd)
    except OSError as e:
        errors.append(f"writer: {e}")
    finally:
        os.close(fd)

w = threading.Thread(target=writer)
rs = [threading.Thread(target=reader, args=(k,)) for k in range(READERS)]
w.start()
for t in rs: t.start()
for t in rs: t.join()
stop.set()
w.join()
if errors:
    fail(errors[0])

def check_whole(when):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) != SIZE:
        fail(f"{when}: size {len(data)}, want {SIZE}")
    for off in range(0, SIZE, 1 << 20):
        if data[off:off + (1 << 20)] != pattern(off, 1 << 20):
            fail(f"{when}: MiB at {off} differs")

check_whole("after the run")
s2 = stats()
print(f"fs_readers: nowait READs {s2['loop_nowait_reads'] - s0['loop_nowait_reads']}, "
      f"would block {s2['loop_nowait_blocked'] - s0['loop_nowait_blocked']}, passed {s2['loop_passed'] - s0['loop_passed']}, "
      f"released {s2['loop_released'] - s0['loop_released']} (backing honours RWF_NOWAIT: {honours}; io_uring: {uring})")
subprocess.run(remount, shell=True, check=True)
check_whole("after a remount")
print("fs_readers.py: ok")
