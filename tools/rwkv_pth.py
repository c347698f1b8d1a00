"""Read and write PyTorch `.pth` checkpoints (the torch.save zip container) with numpy only.

What it is: the container of rwkv-model-spec.md §8, written byte for byte the way
torch.save (torch 1.13) writes an OrderedDict of contiguous CPU tensors, and read back with a
restricted unpickler. What it is not: a general pickle or torch replacement; it writes only
dicts of fp32/fp16/bf16 tensors and reads only the subset of pickle that torch emits for a
state dict (anything else raises). Invariant: every storage record starts at a multiple of
64 bytes from the start of the file.
"""

import collections
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np

__all__ = ["write_pth", "read_pth", "to_bf16_bits", "bf16_bits_to_f32", "quantize"]

# dtype_str -> (torch storage class name, numpy dtype of the stored bits, item size)
_WRITE_DTYPES = {
    "fp32": ("FloatStorage", np.dtype("<f4"), 4),
    "fp16": ("HalfStorage", np.dtype("<f2"), 2),
    "bf16": ("BFloat16Storage", np.dtype("<u2"), 2),
}

# storage class name -> numpy dtype used to view the record ("bf16" is special-cased)
_READ_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": "bf16",
    "DoubleStorage": np.dtype("<f8"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}

_ALIGN = 64
_U32_MAX = 0xFFFFFFFF


# --------------------------------------------------------------------------------------
# dtype helpers


def to_bf16_bits(a):
    """fp32 values -> bf16 bit patterns (uint16), round to nearest even; NaN -> quiet NaN."""
    f = np.asarray(a, dtype=np.float32, order="C")
    u = f.view(np.uint32)
    rounded = (u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)
    out = rounded.astype(np.uint16)
    nan = np.isnan(f)
    if nan.any():
        out[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return out


def bf16_bits_to_f32(bits):
    """bf16 bit patterns (uint16) -> fp32 values (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def quantize(a, dtype_str):
    """The values `a` takes once stored as dtype_str (first rounded to fp32), as float64."""
    with np.errstate(over="ignore"):
        f = np.asarray(a, dtype=np.float32)
        if dtype_str == "fp16":
            return f.astype(np.float16).astype(np.float64)
    if dtype_str == "fp32":
        return f.astype(np.float64)
    if dtype_str == "bf16":
        return bf16_bits_to_f32(to_bf16_bits(f)).astype(np.float64)
    raise ValueError("unknown dtype %r" % (dtype_str,))


def _stored_bytes(arr, dtype_str):
    """Contiguous little-endian array holding the record bytes of `arr` stored as dtype_str."""
    if dtype_str not in _WRITE_DTYPES:
        raise ValueError("dtype must be one of fp32, fp16, bf16, not %r" % (dtype_str,))
    a = np.asarray(arr)
    if a.dtype.kind not in "fiu":
        raise TypeError("tensor values must be numeric, not %s" % (a.dtype,))
    if a.dtype == np.float16 and dtype_str == "fp16":  # exact either way; skip the fp32 copy
        return np.asarray(a, dtype="<f2", order="C")
    with np.errstate(over="ignore"):  # out-of-range values become inf, as in torch
        f = a if a.dtype == np.float32 else a.astype(np.float32)
        if dtype_str == "fp32":
            out = f
        elif dtype_str == "fp16":
            out = f.astype(np.float16)
        else:
            out = to_bf16_bits(f)
    return np.asarray(out.astype(_WRITE_DTYPES[dtype_str][1], copy=False), order="C")


# --------------------------------------------------------------------------------------
# pickle writer (protocol 2, the opcode sequence torch.save produces)


class _PickleOut:
    """Emits pickle opcodes one by one and keeps pickle's memo numbering."""

    def __init__(self):
        self.buf = bytearray()
        self.n_memo = 0
        self.memo = {}  # key -> memo index, for objects pickle would see as identical

    def op(self, b):
        self.buf += b

    def put(self):
        idx = self.n_memo
        self.n_memo += 1
        if idx < 256:
            self.op(b"q" + bytes([idx]))
        else:
            self.op(b"r" + struct.pack("<I", idx))
        return idx

    def get(self, idx):
        if idx < 256:
            self.op(b"h" + bytes([idx]))
        else:
            self.op(b"j" + struct.pack("<I", idx))

    def memoized(self, key, emit):
        """Emit the object once (then BINPUT); later occurrences become BINGET."""
        if key in self.memo:
            self.get(self.memo[key])
        else:
            emit()
            self.memo[key] = self.put()

    def global_(self, module, name):
        self.memoized(("global", module, name),
                      lambda: self.op(b"c" + module.encode() + b"\n" + name.encode() + b"\n"))

    def unicode(self, s):
        """A fresh string object: BINUNICODE + BINPUT."""
        b = s.encode("utf-8")
        self.op(b"X" + struct.pack("<I", len(b)) + b)
        self.put()

    def shared_unicode(self, s):
        """A string constant torch reuses (same object every time): memoized by value."""
        b = s.encode("utf-8")
        self.memoized(("str", s), lambda: self.op(b"X" + struct.pack("<I", len(b)) + b))

    def int_(self, n):
        if 0 <= n <= 0xFF:
            self.op(b"K" + bytes([n]))
        elif 0 <= n <= 0xFFFF:
            self.op(b"M" + struct.pack("<H", n))
        elif -0x80000000 <= n <= 0x7FFFFFFF:
            self.op(b"J" + struct.pack("<i", n))
        else:
            nbytes = (n.bit_length() + 8) // 8  # room for the sign bit
            enc = n.to_bytes(nbytes, "little", signed=True)
            # pickle trims a redundant 0xff sign byte for negative numbers
            if n < 0 and nbytes > 1 and enc[-1] == 0xFF and (enc[-2] & 0x80):
                enc = enc[:-1]
            self.op(b"\x8a" + bytes([len(enc)]) + enc)

    def int_tuple(self, items):
        """A tuple of ints as pickle saves it: () unmemoized, 1..3 via TUPLEn, else MARK..TUPLE."""
        if not items:
            self.op(b")")
            return
        if len(items) <= 3:
            for v in items:
                self.int_(v)
            self.op({1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(items)])
        else:
            self.op(b"(")
            for v in items:
                self.int_(v)
            self.op(b"t")
        self.put()


def _contiguous_strides(shape):
    strides = []
    acc = 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(strides))


def _pickle_state_dict(entries):
    """entries: list of (name, shape, storage class name, key, numel) -> data.pkl bytes."""
    p = _PickleOut()
    p.op(b"\x80\x02")
    p.global_("collections", "OrderedDict")
    od_idx = p.memo[("global", "collections", "OrderedDict")]
    p.op(b")R")
    p.put()
    for start in range(0, len(entries), 1000):  # pickle's _batch_setitems batch size
        batch = entries[start:start + 1000]
        if len(batch) > 1:
            p.op(b"(")
        for name, shape, cls, key, numel in batch:
            p.unicode(name)
            p.global_("torch._utils", "_rebuild_tensor_v2")
            p.op(b"(")  # args of _rebuild_tensor_v2
            p.op(b"(")  # persistent id tuple
            p.shared_unicode("storage")
            p.global_("torch", cls)
            p.unicode(key)
            p.shared_unicode("cpu")
            p.int_(numel)
            p.op(b"t")
            p.put()
            p.op(b"Q")
            p.int_(0)  # storage offset
            p.int_tuple(tuple(shape))
            p.int_tuple(_contiguous_strides(shape))
            p.op(b"\x89")  # requires_grad = False
            p.get(od_idx)  # backward_hooks = OrderedDict()
            p.op(b")R")
            p.put()
            p.op(b"t")
            p.put()
            p.op(b"R")
            p.put()
        p.op(b"u" if len(batch) > 1 else b"s")
    p.op(b".")
    return bytes(p.buf)


# --------------------------------------------------------------------------------------
# zip writer (stored entries, 'FB' padding extra, data descriptors, zip64 end records)


class _ZipOut:
    def __init__(self, f):
        self.f = f
        self.pos = 0
        self.central = []  # (name bytes, crc, size, local header offset)

    def _write(self, b):
        self.f.write(b)
        self.pos += len(b)

    def add(self, name, data):
        """Append one stored record; `data` is bytes or a contiguous numpy array."""
        nb = name.encode("utf-8")
        mv = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else memoryview(data)
        size = mv.nbytes
        offset = self.pos
        big_size = size >= _U32_MAX
        big_off = offset >= _U32_MAX
        z64 = b""
        if big_size or big_off:
            body = b""
            if big_size:
                body += struct.pack("<QQ", size, size)
            if big_off:
                body += struct.pack("<Q", offset)
            z64 = struct.pack("<HH", 0x0001, len(body)) + body
        start = offset + 30 + len(nb) + len(z64) + 4
        pad = (-start) % _ALIGN
        extra = z64 + b"FB" + struct.pack("<H", pad) + b"Z" * pad
        lsize = _U32_MAX if big_size else 0
        self._write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, 0x0808, 0, 0, 0, 0, lsize, lsize,
                                len(nb), len(extra)) + nb + extra)
        assert self.pos % _ALIGN == 0
        crc = 0
        step = 1 << 26
        for i in range(0, size, step):
            chunk = mv[i:i + step]
            crc = zlib.crc32(chunk, crc)
            self._write(chunk)
        if big_size:
            self._write(struct.pack("<IIQQ", 0x08074B50, crc, size, size))
        else:
            self._write(struct.pack("<IIII", 0x08074B50, crc, size, size))
        self.central.append((nb, crc, size, offset))

    def finish(self):
        cd_start = self.pos
        for nb, crc, size, offset in self.central:
            body = b""
            csize = size
            coff = offset
            if size >= _U32_MAX:
                body += struct.pack("<QQ", size, size)
                csize = _U32_MAX
            if offset >= _U32_MAX:
                body += struct.pack("<Q", offset)
                coff = _U32_MAX
            extra = struct.pack("<HH", 0x0001, len(body)) + body if body else b""
            need = 45 if body else 0
            self._write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, need, 0x0808, 0, 0, 0,
                                    crc, csize, csize, len(nb), len(extra), 0, 0, 0, 0, coff)
                        + nb + extra)
        cd_size = self.pos - cd_start
        n = len(self.central)
        z64_eocd = self.pos
        self._write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 45, 0, 0, n, n,
                                cd_size, cd_start))
        self._write(struct.pack("<IIQI", 0x07064B50, 0, z64_eocd, 1))
        self._write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF),
                                min(cd_size, _U32_MAX), min(cd_start, _U32_MAX), 0))


def _archive_root(path):
    base = os.path.basename(os.fspath(path))
    root = os.path.splitext(base)[0]
    return root or "archive"


def write_pth(path, tensors):
    """Write `tensors` (dict name -> (ndarray, dtype_str)) as a torch.save checkpoint.

    dtype_str is fp32, fp16 or bf16; values are first rounded to fp32, then to the storage
    type (fp16: IEEE round to nearest even; bf16: round to nearest even of the fp32 bits).
    Insertion order of the dict is the pickled order and the storage key order ("0", "1", ...).
    The archive root folder is the file's base name without extension, as torch does.
    Raises OSError/ValueError/TypeError; a partial file is removed on failure.
    """
    root = _archive_root(path)
    entries = []
    records = []
    for i, (name, spec) in enumerate(tensors.items()):
        arr, dtype_str = spec
        data = _stored_bytes(arr, dtype_str)
        key = str(i)
        entries.append((name, tuple(int(s) for s in data.shape), _WRITE_DTYPES[dtype_str][0],
                        key, int(data.size)))
        records.append((key, data))
    pkl = _pickle_state_dict(entries)
    records.sort(key=lambda r: r[0])  # torch writes storage records in lexicographic key order
    try:
        with open(path, "wb") as f:
            z = _ZipOut(f)
            z.add(root + "/data.pkl", pkl)
            for key, data in records:
                z.add(root + "/data/" + key, data.reshape(-1))
            z.add(root + "/version", b"3\n")
            z.finish()
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------------------
# reader


class _StorageType:
    def __init__(self, name):
        self.name = name


class _Storage:
    def __init__(self, array):
        self.array = array  # 1-D numpy array of the storage elements


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("tensor without a storage")
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    off = int(storage_offset)
    if len(size) != len(stride) or off < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError("bad tensor geometry size=%r stride=%r offset=%r"
                                     % (size, stride, off))
    base = storage.array
    if 0 in size:
        return np.zeros(size, dtype=np.float64)
    last = off + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= base.size:
        raise pickle.UnpicklingError("tensor view exceeds its storage (%d >= %d)" % (last, base.size))
    item = base.itemsize
    view = np.lib.stride_tricks.as_strided(base[off:], shape=size,
                                           strides=tuple(s * item for s in stride), writeable=False)
    return np.array(view, dtype=np.float64)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, fileobj, load_storage):
        super().__init__(fileobj)
        self._load_storage = load_storage

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _READ_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError("global %s.%s is not allowed in a checkpoint" % (module, name))

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError("unexpected persistent id %r" % (pid,))
        return self._load_storage(pid[1].name, str(pid[2]), int(pid[4]))


def read_pth(path):
    """Read a torch.save checkpoint holding a dict of tensors -> dict name -> float64 ndarray.

    Honors storage offsets and strides (views and transposes); bf16/fp16/fp32 and the other
    standard storage types are converted exactly to float64. Entries that are not tensors
    (e.g. nested dicts) are skipped. Raises pickle.UnpicklingError, zipfile.BadZipFile or
    ValueError on anything outside the torch state-dict subset.
    """
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkl:
            raise ValueError("%s: no <root>/data.pkl record (not a torch zip checkpoint)" % (path,))
        root = pkl[0][:-len("/data.pkl")]
        cache = {}

        def load_storage(cls, key, numel):
            if key in cache:
                return cache[key]
            raw = zf.read(root + "/data/" + key)
            dt = _READ_DTYPES[cls]
            itemsize = 2 if dt == "bf16" else dt.itemsize
            if len(raw) != numel * itemsize:
                raise ValueError("%s: record data/%s has %d bytes, expected %d x %d"
                                 % (path, key, len(raw), numel, itemsize))
            if dt == "bf16":
                arr = bf16_bits_to_f32(np.frombuffer(raw, dtype="<u2"))
            else:
                arr = np.frombuffer(raw, dtype=dt)
            cache[key] = _Storage(arr)
            return cache[key]

        with zf.open(pkl[0]) as f:
            obj = _Unpickler(f, load_storage).load()
    if not isinstance(obj, dict):
        raise ValueError("%s: top-level object is %s, not a dict" % (path, type(obj).__name__))
    return {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
