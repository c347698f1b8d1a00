#!/usr/bin/env python3
"""Write a random RWKV checkpoint with the official tensor names and shapes: RWKV-7 (x070)
by default, or with --arch 4 | 5.0 | 5.1 | 5.2 | 6 one of the older generations.

What it is: the fixture generator for golden tests, benchmarks and the default model. The
weights are a pure function of (--seed, tensor name, element index) through a counter-based
splitmix64 hash evaluated with numpy uint64 arithmetic, and are turned into values with
+ - * / and sqrt only (correctly rounded IEEE operations), so a given command line produces
the same file on every machine and numpy version, forever. What it is not: a trained model;
the magnitudes only resemble one (spec §1.1 names, §1.4 ranks) and are chosen so that
swapping two vectors or a sign visibly changes the logits.

Value distributions (s = --scale, applied to every matrix):
  emb N(0,1)s; ln*.weight U(0.7,1.3); ln*.bias U(-0.3,0.3); att.x_* and ffn.x_k U(0,1), one
  stream per branch; w0 U(-6,-0.5); a0, v0 U(-1,1); k_k U(0.3,1.5); k_a U(0.2,1.5);
  r_k +-U(0.2,1.2); Linear [out][in] N(0,1/in)s (value 0.1x, so GroupNorm eps matters);
  LoRA first factors N(0,1/C)s, second factors N(0,1/D)s (g2 2x); head N(0,9/C)s.
  "N" is the Irwin-Hall sum of four 16-bit uniforms, rescaled to unit variance (|z| < 3.47),
  so no value can overflow fp16 at s = 1.
Older generations (legacy_plan): time_mix_* / time_maa_* U(0,1); time_decay U(-3,1) (v4: keys
  are --key-scale times larger, so exp(k) overflows float32 without the max trick, and the
  decay U(-2,1.5)); the bonus U(-1,1.5) (5.0: time_first U(-1,0.5), the others time_faaaa;
  5.0/5.1 per head, 5.2/6 per channel); v6 token-shift LoRA (C, 5*D_mix) N(0,2/C)s and
  (5, D_mix, C) N(0,1/D_mix)s, decay LoRA N(0,1/C)s / N(0,1/D_decay)s; gate, FFN receptance
  like the other Linear layers.
--ffn-sparse P (default 0: none of this) makes the FFN activations mostly zero, as in trained
  models: ln2.bias U(1.5,2.5) (so the key input leans positive) and a row-hash-chosen share
  P of ffn.key rows get -3s/C added to every weight, which drives their key product negative
  (a zero after the ReLU) for almost every token; the other rows stay about half active.
"""

import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv_pth  # noqa: E402

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_CHUNK = 1 << 21  # elements per vectorised hashing pass (bounded temporaries)
_DTYPES = ("fp32", "fp16", "bf16")


def _mix64(z):
    """splitmix64 finalizer on a Python int."""
    z &= _M64
    z = ((z ^ (z >> 30)) * _C1) & _M64
    z = ((z ^ (z >> 27)) * _C2) & _M64
    return z ^ (z >> 31)


def _fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & _M64
    return h


def _stream_key(seed, name):
    return _mix64(_fnv1a64(name) ^ _mix64((seed & _M64) * _GOLDEN + _GOLDEN))


def _hash_block(key, start, n):
    """uint64 hashes of counters start+1 .. start+n of the stream `key`."""
    z = np.arange(start + 1, start + n + 1, dtype=np.uint64)
    z *= np.uint64(_GOLDEN)
    z += np.uint64(key)
    z ^= z >> np.uint64(30)
    z *= np.uint64(_C1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(_C2)
    z ^= z >> np.uint64(31)
    return z


def _unit_uniform(z):
    """(0,1) from the top 53 bits, exactly."""
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * (2.0 ** -53)


_IH_MEAN = 2.0 * 65535.0
_IH_INV_SD = 1.0 / math.sqrt(4.0 * (65536.0 ** 2 - 1.0) / 12.0)


def _unit_normalish(z):
    """Irwin-Hall(4) of the four 16-bit lanes, mean 0, variance 1."""
    m = np.uint64(0xFFFF)
    s = ((z & m) + ((z >> np.uint64(16)) & m) + ((z >> np.uint64(32)) & m)
         + (z >> np.uint64(48))).astype(np.float64)
    return (s - _IH_MEAN) * _IH_INV_SD


def gen_tensor(seed, name, shape, dist):
    """float32 array of `shape`; dist = ("normal", sd) | ("uniform", lo, hi) | ("signed", lo, hi)
    | ("normal_rowshift", sd, share, shift): normal, plus `shift` on a hash-chosen share of the rows."""
    n = int(np.prod(shape, dtype=np.int64))
    key = _stream_key(seed, name)
    out = np.empty(n, dtype=np.float32)
    if dist[0] == "normal_rowshift":
        rows_u = _unit_uniform(_hash_block(_stream_key(seed, name + "/rows"), 0, shape[0]))
        row_shift = np.where(rows_u < dist[2], dist[3], 0.0)
    for start in range(0, n, _CHUNK):
        m = min(_CHUNK, n - start)
        z = _hash_block(key, start, m)
        if dist[0] == "normal":
            v = _unit_normalish(z) * dist[1]
        elif dist[0] == "normal_rowshift":
            row = np.arange(start, start + m, dtype=np.int64) // shape[1]
            v = _unit_normalish(z) * dist[1] + row_shift[row]
        elif dist[0] == "uniform":
            v = dist[1] + (dist[2] - dist[1]) * _unit_uniform(z)
        elif dist[0] == "signed":
            mag = dist[1] + (dist[2] - dist[1]) * _unit_uniform(z)
            v = np.where((z & np.uint64(1)) == np.uint64(1), -mag, mag)
        else:
            raise ValueError(dist[0])
        out[start:start + m] = v
    return out.reshape(shape)


def trainer_ranks(C):
    """D_w, D_a, D_v, D_g of the RWKV-LM x070 trainer (spec §1.4)."""
    dw = max(32, int(round(1.8 * math.sqrt(C) / 32)) * 32)
    dv = max(32, int(round(1.3 * math.sqrt(C) / 32)) * 32)
    dg = max(32, int(round(0.6 * C ** 0.8 / 32)) * 32)
    return dw, dw, dv, dg


def tensor_plan(L, C, N, F, V, ranks, layer0_v, scale, ffn_sparse=0.0):
    """[(name, shape, dist)] in the RWKV-LM trainer's state_dict order."""
    dw, da, dv, dg = ranks
    H = C // N
    s = scale
    vec = (1, 1, C)
    ln_w = ("uniform", 0.7, 1.3)
    ln_b = ("uniform", -0.3, 0.3)

    def lin(n_out, n_in, k=1.0):
        return ((n_out, n_in), ("normal", k * s / math.sqrt(n_in)))

    plan = [("emb.weight", (V, C), ("normal", s))]
    for l in range(L):
        p = "blocks.%d." % l
        plan += [(p + "ln1.weight", (C,), ln_w), (p + "ln1.bias", (C,), ln_b),
                 (p + "ln2.weight", (C,), ln_w),
                 (p + "ln2.bias", (C,), ("uniform", 1.5, 2.5) if ffn_sparse > 0 else ln_b)]
        if l == 0:
            plan += [(p + "ln0.weight", (C,), ln_w), (p + "ln0.bias", (C,), ln_b)]
        a = p + "att."
        plan += [(a + "x_" + q, vec, ("uniform", 0.0, 1.0)) for q in "rwkvag"]
        plan += [(a + "w0", vec, ("uniform", -6.0, -0.5)),
                 (a + "w1", (C, dw), ("normal", s / math.sqrt(C))),
                 (a + "w2", (dw, C), ("normal", s / math.sqrt(dw))),
                 (a + "a0", vec, ("uniform", -1.0, 1.0)),
                 (a + "a1", (C, da), ("normal", s / math.sqrt(C))),
                 (a + "a2", (da, C), ("normal", s / math.sqrt(da)))]
        if l > 0 or layer0_v:
            plan += [(a + "v0", vec, ("uniform", -1.0, 1.0)),
                     (a + "v1", (C, dv), ("normal", s / math.sqrt(C))),
                     (a + "v2", (dv, C), ("normal", s / math.sqrt(dv)))]
        plan += [(a + "g1", (C, dg), ("normal", s / math.sqrt(C))),
                 (a + "g2", (dg, C), ("normal", 2.0 * s / math.sqrt(dg))),
                 (a + "k_k", vec, ("uniform", 0.3, 1.5)),
                 (a + "k_a", vec, ("uniform", 0.2, 1.5)),
                 (a + "r_k", (H, N), ("signed", 0.2, 1.2))]
        for m, k in (("receptance", 1.0), ("key", 1.0), ("value", 0.1), ("output", 1.0)):
            shape, dist = lin(C, C, k)
            plan.append((a + m + ".weight", shape, dist))
        plan += [(a + "ln_x.weight", (C,), ln_w), (a + "ln_x.bias", (C,), ln_b)]
        f = p + "ffn."
        plan.append((f + "x_k", vec, ("uniform", 0.0, 1.0)))
        shape, dist = lin(F, C)
        if ffn_sparse > 0:
            dist = ("normal_rowshift", dist[1], ffn_sparse, -3.0 * s / C)
        plan.append((f + "key.weight", shape, dist))
        shape, dist = lin(C, F)
        plan.append((f + "value.weight", shape, dist))
    plan += [("ln_out.weight", (C,), ln_w), ("ln_out.bias", (C,), ln_b),
             ("head.weight", (V, C), ("normal", 3.0 * s / math.sqrt(C)))]
    return plan


def legacy_plan(arch, L, C, N, F, V, d_decay, d_mix, scale, key_scale):
    """[(name, shape, dist)] of an RWKV-4/5/6 checkpoint (see the module docstring)."""
    H = C // N if arch != "4" else 0
    s = scale
    vec = (1, 1, C)
    ln_w = ("uniform", 0.7, 1.3)
    ln_b = ("uniform", -0.3, 0.3)

    def lin(n_out, n_in, k=1.0):
        return ((n_out, n_in), ("normal", k * s / math.sqrt(n_in)))

    plan = [("emb.weight", (V, C), ("normal", s))]
    for l in range(L):
        p = "blocks.%d." % l
        plan += [(p + "ln1.weight", (C,), ln_w), (p + "ln1.bias", (C,), ln_b),
                 (p + "ln2.weight", (C,), ln_w), (p + "ln2.bias", (C,), ln_b)]
        if l == 0:
            plan += [(p + "ln0.weight", (C,), ln_w), (p + "ln0.bias", (C,), ln_b)]
        a = p + "att."
        if arch == "6":
            plan += [(a + "time_maa_" + q, vec, ("uniform", 0.0, 1.0)) for q in "xwkvrg"]
            plan += [(a + "time_maa_w1", (C, 5 * d_mix), ("normal", 2.0 * s / math.sqrt(C))),
                     (a + "time_maa_w2", (5, d_mix, C), ("normal", s / math.sqrt(d_mix))),
                     (a + "time_decay", vec, ("uniform", -3.0, 1.0)),
                     (a + "time_decay_w1", (C, d_decay), ("normal", s / math.sqrt(C))),
                     (a + "time_decay_w2", (d_decay, C), ("normal", s / math.sqrt(d_decay))),
                     (a + "time_faaaa", (H, N), ("uniform", -1.0, 1.5))]
        else:
            plan += [(a + "time_mix_" + q, vec, ("uniform", 0.0, 1.0))
                     for q in ("kvr" if arch in ("4", "5.0") else "kvrg")]
            if arch == "4":
                plan += [(a + "time_decay", (C,), ("uniform", -2.0, 1.5)),
                         (a + "time_first", (C,), ("uniform", -1.0, 1.5))]
            elif arch == "5.0":
                plan += [(a + "time_decay", (H,), ("uniform", -3.0, 1.0)),
                         (a + "time_first", (H,), ("uniform", -1.0, 0.5))]
            elif arch == "5.1":
                plan += [(a + "time_decay", (H,), ("uniform", -3.0, 1.0)),
                         (a + "time_faaaa", (H,), ("uniform", -1.0, 1.5))]
            else:
                plan += [(a + "time_decay", (H, N), ("uniform", -3.0, 1.0)),
                         (a + "time_faaaa", (H, N), ("uniform", -1.0, 1.5))]
        for m, k in (("receptance", 1.0), ("key", key_scale if arch == "4" else 1.0), ("value", 0.1),
                     ("output", 1.0)):
            shape, dist = lin(C, C, k)
            plan.append((a + m + ".weight", shape, dist))
        if arch != "4":
            if arch != "5.0":
                shape, dist = lin(C, C)
                plan.append((a + "gate.weight", shape, dist))
            plan += [(a + "ln_x.weight", (C,), ln_w), (a + "ln_x.bias", (C,), ln_b)]
        f = p + "ffn."
        pre = "time_maa_" if arch == "6" else "time_mix_"
        plan += [(f + pre + "k", vec, ("uniform", 0.0, 1.0)), (f + pre + "r", vec, ("uniform", 0.0, 1.0))]
        for m, shape, dist in (("key",) + lin(F, C), ("value",) + lin(C, F), ("receptance",) + lin(C, C)):
            plan.append((f + m + ".weight", shape, dist))
    plan += [("ln_out.weight", (C,), ln_w), ("ln_out.bias", (C,), ln_b),
             ("head.weight", (V, C), ("normal", 3.0 * s / math.sqrt(C)))]
    return plan


def storage_dtypes(names, dtype, seed):
    """Per-tensor storage dtype; "mixed" is a hash choice, with the first three tensors
    forced to three different dtypes so that all of them occur."""
    if dtype != "mixed":
        return [dtype] * len(names)
    out = []
    for i, name in enumerate(names):
        if i < 3:
            out.append(_DTYPES[(i + seed) % 3])
        else:
            out.append(_DTYPES[_mix64(_fnv1a64(name) ^ (seed & _M64)) % 3])
    return out


def _positive(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError("must be >= 1, not %s" % s)
    return v


def _ranks(s):
    parts = s.split(",")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError("expected dw,da,dv,dg (four integers), not %r" % s)
    return tuple(_positive(p) for p in parts)


def _scale(s):
    v = float(s)
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError("must be a positive finite number, not %s" % s)
    return v


def _share(s):
    v = float(s)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError("must be a number in [0, 1], not %s" % s)
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(description="write a random RWKV checkpoint (.pth)")
    ap.add_argument("--out", required=True, help="output .pth path")
    ap.add_argument("--layers", type=_positive, default=2, help="L (default 2)")
    ap.add_argument("--embd", type=_positive, default=64, help="C (default 64)")
    ap.add_argument("--head-size", type=_positive, default=64, help="N (default 64)")
    ap.add_argument("--ffn", type=_positive, default=None, help="F (default 4*C)")
    ap.add_argument("--vocab", type=_positive, default=256, help="V (default 256)")
    ap.add_argument("--ranks", type=_ranks, default=None,
                    help="dw,da,dv,dg (default: the trainer formula of spec §1.4)")
    ap.add_argument("--dtype", choices=_DTYPES + ("mixed",), default="fp32",
                    help="storage dtype; mixed = deterministic per-tensor choice (default fp32)")
    ap.add_argument("--layer0-v", type=int, choices=(0, 1), default=1,
                    help="1: include blocks.0.att.v0/v1/v2 (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    ap.add_argument("--scale", type=_scale, default=1.0, help="matrix magnitude factor (default 1)")
    ap.add_argument("--ffn-sparse", type=_share, default=0.0,
                    help="share of FFN neurons made almost never active, 0..1 (default 0)")
    ap.add_argument("--arch", choices=("7", "6", "5.2", "5.1", "5.0", "4"), default="7",
                    help="generation (default 7); --head-size is ignored for 4")
    ap.add_argument("--decay-rank", type=_positive, default=64, help="RWKV-6 decay LoRA rank (default 64)")
    ap.add_argument("--mix-rank", type=_positive, default=32, help="RWKV-6 token-shift LoRA rank (default 32)")
    ap.add_argument("--key-scale", type=_scale, default=60.0,
                    help="RWKV-4 key matrix magnitude factor (default 60: keys beyond 88)")
    args = ap.parse_args(argv)

    L, C, N, V = args.layers, args.embd, args.head_size, args.vocab
    if C % N != 0 and args.arch != "4":
        ap.error("--embd %d is not a multiple of --head-size %d" % (C, N))
    F = args.ffn if args.ffn is not None else 4 * C
    ranks = args.ranks if args.ranks is not None else trainer_ranks(C)

    if args.arch == "7":
        plan = tensor_plan(L, C, N, F, V, ranks, args.layer0_v, args.scale, args.ffn_sparse)
    else:
        plan = legacy_plan(args.arch, L, C, N, F, V, args.decay_rank, args.mix_rank, args.scale, args.key_scale)
        ranks = (args.decay_rank, args.mix_rank) if args.arch == "6" else ()
    dtypes = storage_dtypes([p[0] for p in plan], args.dtype, args.seed)
    tensors = {}
    n_param = 0
    for (name, shape, dist), dt in zip(plan, dtypes):
        tensors[name] = (gen_tensor(args.seed, name, shape, dist), dt)
        n_param += int(np.prod(shape))
    rwkv_pth.write_pth(args.out, tensors)
    sys.stderr.write("gen-checkpoint: %s RWKV-%s L%d C%d N%d F%d V%d ranks %s %s seed %d: %d tensors, "
                     "%d params\n" % (args.out, args.arch, L, C, N, F, V, ",".join(map(str, ranks)),
                                      args.dtype, args.seed, len(tensors), n_param))
    return 0


if __name__ == "__main__":
    sys.exit(main())
