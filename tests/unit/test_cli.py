#!/usr/bin/env python3
"""test_cli — the rwkv-run command-line contract.

Usage: test_cli.py RWKV_RUN GOLDEN_CKPT GOLDEN_F32 TOKENS BYTE_MODEL
  * --tokens ... --dump-logits OUT writes T x V little-endian float32 rows that match the
    float64 reference fixture within 1e-4 (max |diff|);
  * generation with a seed is reproducible, temperature 0 is greedy and seed-independent;
  * bad arguments exit 2 and name the option, a missing model exits 1 and names the path;
  * --backend list prints one line per backend (cpu available), exit 0; a backend that
    cannot run here exits 1 with the reason its probe gave.
"""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

run, ckpt, golden, tokens, byte_model = sys.argv[1:6]
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print('FAIL:', what)
    else:
        print('ok:', what)


def rr(*args):
    return subprocess.run([run, *args], capture_output=True, timeout=120)


with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'logits.f32')
    p = rr('--model', ckpt, '--tokens', tokens, '--dump-logits', out, '--threads', '2')
    check(p.returncode == 0, 'dump-logits exits 0: ' + p.stderr.decode(errors='replace'))
    want = np.fromfile(golden, dtype='<f4')
    got = np.fromfile(out, dtype='<f4') if os.path.exists(out) else np.zeros(0, dtype='<f4')
    T = len(tokens.split(','))
    check(got.size == want.size and got.size % T == 0, f'{got.size} logits = T x V ({want.size})')
    if got.size == want.size:
        d = float(np.max(np.abs(got.astype(np.float64) - want)))
        check(d <= 1e-4, f'dump matches the float64 reference: max |diff| {d:.3g}')

    gen = ['--model', byte_model, '--prompt', 'hello', '--generate', '40', '--threads', '1']
    a = rr(*gen, '--seed', '5', '--temperature', '1', '--top-p', '0.9')
    b = rr(*gen, '--seed', '5', '--temperature', '1', '--top-p', '0.9')
    c = rr(*gen, '--seed', '6', '--temperature', '1', '--top-p', '0.9')
    check(a.returncode == 0 and a.stdout == b.stdout and len(a.stdout) > 0, 'same seed, same text')
    check(a.stdout != c.stdout, 'another seed, other text')
    g1 = rr(*gen, '--seed', '1', '--temperature', '0')
    g2 = rr(*gen, '--seed', '2', '--temperature', '0')
    check(g1.returncode == 0 and g1.stdout == g2.stdout, 'temperature 0 is greedy (seed-independent)')

    bad = rr('--model', ckpt, '--tokens', '1,x')
    check(bad.returncode == 2 and b'--tokens' in bad.stderr, 'bad --tokens exits 2 naming the option')
    bad = rr('--model', ckpt, '--tokens', '1', '--top-p', '7')
    check(bad.returncode == 2 and b'--top-p' in bad.stderr, 'out-of-range --top-p exits 2')
    bad = rr('--model', ckpt, '--tokens', '99999999')
    check(bad.returncode == 1 and b'out of range' in bad.stderr, 'token id beyond n_vocab is refused')
    missing = os.path.join(tmp, 'nope.pth')
    bad = rr('--model', missing, '--tokens', '1')
    check(bad.returncode == 1 and missing.encode() in bad.stderr, 'missing model names the path')
    bad = rr('--model', ckpt, '--prompt', 'hi')
    check(bad.returncode == 1 and b'--vocab' in bad.stderr, 'non-byte model without --vocab asks for one')
    bad = rr('--model', ckpt, '--tokens', '1', '--backend', 'tpu')
    check(bad.returncode == 1 and b'tpu' in bad.stderr, 'unknown backend is named')

    p = rr('--backend', 'list')
    lines = [ln.split(None, 2) for ln in p.stdout.decode().splitlines()]
    names = [ln[0] for ln in lines if ln]
    check(p.returncode == 0 and names[:1] == ['cpu'] and 'cuda' in names and 'cuda-emu' in names,
          '--backend list names cpu, cuda, cuda-emu: ' + p.stdout.decode(errors='replace'))
    check(all(len(ln) == 3 and ln[1] in ('available', 'unavailable') for ln in lines),
          'each line: name, available|unavailable, the probe message')
    check(any(ln[:2] == ['cpu', 'available'] for ln in lines), 'cpu is available')
    # any backend that is unavailable here: refused before the model loads, with the reason
    for ln in lines:
        if len(ln) == 3 and ln[1] == 'unavailable':
            bad = rr('--model', ckpt, '--tokens', '1', '--backend', ln[0])
            err = bad.stderr.decode(errors='replace')
            check(bad.returncode == 1 and ln[0] in err and ('unavailable' in err or 'not built' in err)
                  and ln[2].strip() in err, f'--backend {ln[0]} (unavailable) exits 1 with the reason: {err.strip()}')
    auto = rr('--model', ckpt, '--tokens', tokens, '--backend', 'auto', '--verbose', '--threads', '2')
    check(auto.returncode == 0 and b'backend auto' in auto.stderr, '--backend auto runs and says what it chose')
    check(re.search(rb'loaded .*: RWKV-7 L2 C64 H1 N64 V65536 ', auto.stderr) is not None,
          '--verbose names the generation and shape: ' + auto.stderr.decode(errors='replace'))

print(f'test_cli: {failures} failed')
sys.exit(1 if failures else 0)
