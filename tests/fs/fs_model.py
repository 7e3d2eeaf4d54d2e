#!/usr/bin/env python3
"""fs_model.py — model-based random-operation test: the same seeded random operations go to the
mount and to a plain reference directory; every result (data or errno) must match, then the whole
trees must match, also after a remount.  Usage: fs_model.py MNT REF REMOUNT_CMD [SEED] [OPS]"""
import errno, os, random, stat, subprocess, sys

mnt, ref, remount = sys.argv[1], sys.argv[2], sys.argv[3]
seed = int(sys.argv[4]) if len(sys.argv) > 4 else random.randrange(1 << 30)
nops = int(sys.argv[5]) if len(sys.argv) > 5 else 3000
rng = random.Random(seed)
BS = 4096
NAMES = ["a", "b", "c", "d", "sub/e", "sub/f", "sub/deeper/g", "h"]
DIRS = ["sub", "sub/deeper", "other"]

def attempt(root, fn):
    try:
        return ("ok", fn(root))
    except OSError as e:
        return ("err", e.errno)

def op_write(path, off, data):
    def f(root):
        fd = os.open(os.path.join(root, path), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            return os.pwrite(fd, data, off)
        finally:
            os.close(fd)
    return f

def op_append(path, data):
    def f(root):
        fd = os.open(os.path.join(root, path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            return os.write(fd, data)
        finally:
            os.close(fd)
    return f

def op_read(path, off, n):
    def f(root):
        fd = os.open(os.path.join(root, path), os.O_RDONLY)
        try:
            return os.pread(fd, n, off)
        finally:
            os.close(fd)
    return f

def op_truncate(path, size):
    return lambda root: os.truncate(os.path.join(root, path), size)

def op_rename(a, b):
    return lambda root: os.rename(os.path.join(root, a), os.path.join(root, b))

def op_link(a, b):
    return lambda root: os.link(os.path.join(root, a), os.path.join(root, b))

def op_unlink(a):
    return lambda root: os.unlink(os.path.join(root, a))

def op_mkdir(d):
    return lambda root: os.mkdir(os.path.join(root, d))

def op_rmdir(d):
    return lambda root: os.rmdir(os.path.join(root, d))

def op_symlink(target, a):
    return lambda root: os.symlink(target, os.path.join(root, a))

def op_readlink(a):
    return lambda root: os.readlink(os.path.join(root, a))

def op_chmod(a, mode):
    return lambda root: os.chmod(os.path.join(root, a), mode)

def op_stat(a):
    def f(root):
        st = os.lstat(os.path.join(root, a))
        return (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777, st.st_size if not stat.S_ISDIR(st.st_mode) else 0, st.st_nlink if not stat.S_ISDIR(st.st_mode) else 0)
    return f

def random_off():
    r = rng.random()
    if r < 0.3:
        return rng.randrange(0, 3 * BS)
    if r < 0.6:
        return rng.choice([BS - 1, BS, BS + 1, 2 * BS - 3, 5 * BS]) + rng.randrange(-2, 3) % 7
    return rng.randrange(0, 40 * BS)

def random_op():
    k = rng.random()
    p = rng.choice(NAMES)
    if k < 0.30:
        n = rng.choice([1, 7, 100, BS, BS + 5, 3 * BS, rng.randrange(1, 20000)])
        return ("write", p), op_write(p, random_off(), rng.randbytes(n))
    if k < 0.40:
        return ("append", p), op_append(p, rng.randbytes(rng.randrange(1, 6000)))
    if k < 0.60:
        return ("read", p), op_read(p, random_off(), rng.choice([1, 100, BS, 2 * BS + 7, 70000]))
    if k < 0.68:
        return ("truncate", p), op_truncate(p, rng.choice([0, 1, BS - 1, BS, BS + 1, random_off()]))
    if k < 0.74:
        return ("rename", p), op_rename(p, rng.choice(NAMES))
    if k < 0.77:
        return ("link", p), op_link(p, rng.choice(NAMES))
    if k < 0.81:
        return ("unlink", p), op_unlink(p)
    if k < 0.84:
        return ("mkdir",), op_mkdir(rng.choice(DIRS))
    if k < 0.86:
        return ("rmdir",), op_rmdir(rng.choice(DIRS))
    if k < 0.89:
        return ("symlink", p), op_symlink(rng.choice(["a", "../x", "sub/e", "t" * 200]), p)
    if k < 0.91:
        return ("readlink", p), op_readlink(p)
    if k < 0.94:
        return ("chmod", p), op_chmod(p, rng.choice([0o600, 0o644, 0o755, 0o400]))
    return ("stat", p), op_stat(p)

def tree(root):
    out = {}
    for dp, dn, fn in os.walk(root):
        for name in dn + fn:
            full = os.path.join(dp, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", st.st_mode & 0o7777)
            else:
                with open(full, "rb") as f:
                    data = f.read()
                out[rel] = ("f", st.st_mode & 0o7777, st.st_nlink, len(data), hash(data), st.st_size)
    return out

def compare_trees(when):
    a, b = tree(mnt), tree(ref)
    if a != b:
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                print(f"MISMATCH {when} {k}: mount={a.get(k)} ref={b.get(k)}")
        print(f"FAIL seed={seed}")
        sys.exit(1)

for d in ("sub", "sub/deeper"):
    os.makedirs(os.path.join(mnt, d), exist_ok=True)
    os.makedirs(os.path.join(ref, d), exist_ok=True)
for i in range(nops):
    desc, fn = random_op()
    got, want = attempt(mnt, fn), attempt(ref, fn)
    if got != want:
        g = got if got[0] == "err" or not isinstance(got[1], bytes) else ("ok", len(got[1]))
        w = want if want[0] == "err" or not isinstance(want[1], bytes) else ("ok", len(want[1]))
        print(f"op {i} {desc}: mount={g} ref={w}")
        print(f"FAIL seed={seed}")
        sys.exit(1)
    if i % 500 == 499:
        compare_trees(f"after op {i}")
compare_trees("at end")
subprocess.check_call(remount, shell=True)
compare_trees("after remount")
print(f"fs_model: {nops} operations matched the reference (seed {seed})")
