#!/usr/bin/env python3
"""Write defective RWKV-7 checkpoints for the loader's bad-input tests (tests/unit/test_model.c).

Each file is the good checkpoint given on the command line with one defect. Uses only
tools/rwkv_pth.py (numpy), never torch. Usage: make-bad-checkpoints.py GOOD.pth OUTDIR
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tools'))
import numpy as np  # noqa: E402
import rwkv_pth  # noqa: E402


def main():
    good, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    base = rwkv_pth.read_pth(good)
    C = base['emb.weight'].shape[1]

    def write(name, tensors):
        rwkv_pth.write_pth(os.path.join(outdir, name), {k: (v, 'fp32') for k, v in tensors.items()})

    def variant(name, fn):
        t = dict(base)
        fn(t)
        write(name, t)

    variant('missing.pth', lambda t: t.pop('blocks.1.att.k_k'))
    variant('missing-head.pth', lambda t: t.pop('head.weight'))
    variant('shape.pth', lambda t: t.__setitem__('blocks.0.att.key.weight', np.zeros((C, C + 1))))
    variant('shape-lora.pth', lambda t: t.__setitem__('blocks.1.att.a2', np.zeros((7, C))))

    def nan(t):
        w = np.array(t['blocks.1.ffn.value.weight'])
        w[3, 5] = np.nan
        t['blocks.1.ffn.value.weight'] = w
    variant('nan.pth', nan)

    def inf(t):
        w = np.array(t['blocks.0.att.w0'])
        w.flat[2] = np.inf
        t['blocks.0.att.w0'] = w
    variant('inf.pth', inf)
    variant('x070a.pth', lambda t: t.__setitem__('blocks.0.ffn.s_emb.weight', np.zeros((4, 4))))
    variant('x070b.pth', lambda t: t.__setitem__('blocks.1.qkv.weight', np.zeros((4, 4))))
    variant('extra.pth', lambda t: t.__setitem__('blocks.0.att.bogus', np.zeros((1, 1, C))))

    def x060(t):
        for k in [k for k in t if k.endswith('att.r_k') or k.endswith('att.k_k')]:
            del t[k]
        t['blocks.0.att.time_maa_x'] = np.zeros((1, 1, C))
    variant('x060.pth', x060)

    def unknown_arch(t):
        for k in [k for k in t if k.endswith('att.r_k') or k.endswith('att.k_k')]:
            del t[k]
    variant('unknown-arch.pth', unknown_arch)
    variant('rk.pth', lambda t: t.__setitem__('blocks.0.att.r_k', np.zeros((3, 5))))
    variant('l0v-absent.pth', lambda t: [t.pop(k) for k in ('blocks.0.att.v0', 'blocks.0.att.v1', 'blocks.0.att.v2') if k in t])

    legacy_variants(outdir, write)


def legacy_variants(outdir, write):
    """Defective RWKV-4/5/6 checkpoints, from gen-checkpoint.py's legacy plan (L2 C64 N16)."""
    import importlib.util
    tools = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tools')
    spec = importlib.util.spec_from_file_location('gen_checkpoint', os.path.join(tools, 'gen-checkpoint.py'))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)

    def model(arch):
        plan = gen.legacy_plan(arch, 2, 64, 16, 128, 96, 16, 8, 1.0, 60.0)
        return {name: gen.gen_tensor(3, name, shape, dist) for name, shape, dist in plan}

    def variant(arch, name, fn):
        t = model(arch)
        fn(t)
        write(name, t)

    variant('6', 'v6-good.pth', lambda t: None)
    variant('6', 'v6-missing-maa-w2.pth', lambda t: t.pop('blocks.1.att.time_maa_w2'))
    variant('6', 'v6-maa-w2-shape.pth', lambda t: t.__setitem__('blocks.0.att.time_maa_w2', np.zeros((4, 8, 64))))
    variant('5.2', 'v5.2-decay-shape.pth', lambda t: t.__setitem__('blocks.1.att.time_decay', np.zeros((4, 17))))
    variant('5.1', 'v5.1-missing-gate.pth', lambda t: t.pop('blocks.1.att.gate.weight'))

    def v4_decay(t):
        w = np.array(t['blocks.1.att.time_decay'])
        w[3] = 100.0
        t['blocks.1.att.time_decay'] = w
    variant('4', 'v4-decay-range.pth', v4_decay)
    variant('4', 'v4-extra.pth', lambda t: t.__setitem__('blocks.0.att.gate.weight', np.zeros((64, 64))))


if __name__ == '__main__':
    main()
